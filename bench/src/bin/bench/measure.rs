//! One setup measured: Prosody started with its config, warm-up, the phases, the samples.

use crate::*;

pub(crate) fn self_cpu_ticks() -> u64 {
    procstat::snapshot(std::process::id()).map(|s| s.proc_ticks).unwrap_or(0)
}

pub(crate) struct Ctx<'a> {
    pub(crate) opts: &'a Opts,
    pub(crate) webhook: &'a mut Webhook,
    pub(crate) ticks: f64,
}

/// Run one phase with /proc and webhook bookkeeping around it.
pub(crate) fn measured_phase(
    ctx: &mut Ctx,
    client: &mut Client,
    pid: u32,
    label: &str,
    window: usize,
    messages: usize,
    perf_out: Option<&Path>,
) -> PhaseRecord {
    let popts = PhaseOptions {
        window,
        messages,
        stall_timeout: Duration::from_secs(ctx.opts.stall_timeout_s),
        deadline: Duration::from_secs(ctx.opts.phase_timeout_s),
        settle: Duration::from_millis(250),
        per_session: false,
    };
    let mut perf = perf_out.and_then(|out| {
        die_with_parent(
            Command::new("perf")
                .args(["record", "-F", "1999", "-p", &pid.to_string(), "-o"])
                .arg(out)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .spawn()
        .ok()
    });
    if perf.is_some() {
        std::thread::sleep(Duration::from_millis(300));
    }
    let wh0 = ctx.webhook.stats();
    let whcpu0 = procstat::snapshot(ctx.webhook.pid()).map(|s| s.proc_ticks).unwrap_or(0);
    let me0 = self_cpu_ticks();
    let s0 = procstat::snapshot(pid).unwrap_or_default();
    let (busy0, steal0) = procstat::machine_ticks();
    let sampler = RssSampler::start(pid, Duration::from_millis(100));
    let t0 = Instant::now();
    let result = client.run_phase(&popts, &STOP);
    let wall_s = t0.elapsed().as_secs_f64();
    let s1: Snapshot = procstat::snapshot(pid).unwrap_or_default();
    let me1 = self_cpu_ticks();
    let whcpu1 = procstat::snapshot(ctx.webhook.pid()).map(|s| s.proc_ticks).unwrap_or(0);
    let (busy1, steal1) = procstat::machine_ticks();
    let ours = s1.proc_ticks.saturating_sub(s0.proc_ticks) + me1.saturating_sub(me0) + whcpu1.saturating_sub(whcpu0);
    let foreign_ticks = busy1.saturating_sub(busy0).saturating_sub(ours);
    let wh1 = ctx.webhook.stats();
    let samples = sampler.finish();
    if let Some(p) = perf.as_mut() {
        // SIGINT lets perf write its file.
        unsafe {
            libc::kill(p.id() as libc::pid_t, libc::SIGINT);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = p.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = p.kill();
        let _ = p.wait();
    }

    let n = result.replied.max(1) as f64;
    let tick_us = 1e6 / ctx.ticks;
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 * tick_us / n;
    let cpu = CpuRecord {
        proc_cpu_s: s1.proc_ticks.saturating_sub(s0.proc_ticks) as f64 / ctx.ticks,
        main_cpu_s: s1.main_ticks.saturating_sub(s0.main_ticks) as f64 / ctx.ticks,
        proc_us_per_msg: per(s0.proc_ticks, s1.proc_ticks),
        main_us_per_msg: per(s0.main_ticks, s1.main_ticks),
        main_sched_us_per_msg: s1.main_sched_ns.saturating_sub(s0.main_sched_ns) as f64 / 1000.0 / n,
        webhook_us_per_msg: per(whcpu0, whcpu1),
        loadgen_us_per_msg: per(me0, me1),
        foreign_cores: foreign_ticks as f64 / ctx.ticks / wall_s.max(1e-9),
        steal_cores: steal1.saturating_sub(steal0) as f64 / ctx.ticks / wall_s.max(1e-9),
        wall_s,
    };
    let dur = samples.last().map(|s| s.0).unwrap_or(0.0);
    let rss = RssRecord {
        start_kb: s0.vm_rss_kb,
        end_kb: s1.vm_rss_kb,
        max_kb: samples.iter().map(|s| s.1).chain([s0.vm_rss_kb, s1.vm_rss_kb]).max().unwrap_or(0),
        at_10pct_kb: samples.iter().find(|s| s.0 >= dur * 0.1).map(|s| s.1).unwrap_or(s0.vm_rss_kb),
        vm_hwm_end_kb: s1.vm_hwm_kb,
        // Keep the JSON small: at most ~100 points per phase.
        samples: samples.iter().step_by(samples.len().div_ceil(100).max(1)).copied().collect(),
    };
    PhaseRecord {
        label: label.to_string(),
        result,
        cpu,
        rss,
        threads: s1.threads,
        webhook_connections: wh1.accepted.saturating_sub(wh0.accepted),
        webhook_requests: wh1.requests.saturating_sub(wh0.requests),
        webhook_active_after: wh1.active,
    }
}

pub(crate) fn scan_log(path: &Path, rec: &mut SetupRecord) {
    let s = fs::read_to_string(path).unwrap_or_default();
    for line in s.lines() {
        let level = line.split_whitespace().nth(4).unwrap_or("");
        let is_err = level == "error";
        let is_warn = level == "warn";
        if is_err {
            rec.log_errors += 1;
        }
        if is_warn {
            rec.log_warnings += 1;
        }
        // Our own shutdown, not a finding.
        if is_warn && line.contains("Received SIGTERM") {
            rec.log_warnings -= 1;
            continue;
        }
        if (is_err || is_warn) && rec.log_excerpt.len() < 12 {
            let msg: String = line.split_whitespace().skip(3).collect::<Vec<_>>().join(" ");
            if !rec.log_excerpt.contains(&msg) {
                rec.log_excerpt.push(msg);
            }
        }
    }
}

pub(crate) fn find_rockspec(o: &Opts) -> Option<PathBuf> {
    if let Some(r) = &o.rockspec {
        return Some(r.clone());
    }
    let mut v: Vec<PathBuf> = fs::read_dir(o.repo.join("rockspec"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rockspec"))
        .collect();
    v.sort();
    v.pop()
}

pub(crate) fn run_setup(ctx: &mut Ctx, plan: &SetupPlan, run_dir: &Path, results_base: &Path) -> SetupRecord {
    let mut rec = SetupRecord {
        name: plan.name.clone(),
        kind: plan.kind.clone(),
        description: plan.description.clone(),
        status: "failed".into(),
        ..Default::default()
    };
    let dir = run_dir.join(&plan.name);
    let env = SetupEnv { config: dir.join("prosody.cfg.lua"), log: dir.join("prosody.log"), c2s_port: 0, dir };
    // certs/ exists (empty) only so Prosody's certificate indexing has nothing to complain about.
    if let Err(e) = fs::create_dir_all(env.dir.join("data")).and_then(|_| fs::create_dir_all(env.dir.join("certs"))) {
        rec.error = Some(e.to_string());
        return rec;
    }
    let mut env = env;
    env.c2s_port = match free_port() {
        Ok(p) => p,
        Err(e) => {
            rec.error = Some(format!("no free port: {e}"));
            return rec;
        }
    };

    // Install the module into its own tree.
    let mut tree: Option<PathBuf> = None;
    if plan.kind == "module" {
        if let Some(t) = &ctx.opts.module_tree {
            tree = Some(t.clone());
        } else {
            let rockspec = plan.plugin_dir.clone().unwrap();
            let t = env.dir.join("tree");
            eprintln!(
                "[{}] luarocks make {} (log: {})",
                plan.name,
                rockspec.display(),
                env.dir.join("luarocks.log").display()
            );
            let t0 = Instant::now();
            let r = run_logged(
                Command::new("luarocks")
                    .args(["--lua-version", "5.4", "make", "--tree"])
                    .arg(&t)
                    .arg(&rockspec)
                    .current_dir(&ctx.opts.repo),
                &env.dir.join("luarocks.log"),
                Duration::from_secs(1800),
            );
            rec.install_s = Some(t0.elapsed().as_secs_f64());
            if let Err(e) = r {
                rec.error = Some(format!("luarocks make failed: {e}\n{}", tail(&env.dir.join("luarocks.log"), 30)));
                return rec;
            }
            tree = Some(t);
        }
    }

    if let Err(e) = write_config(plan, &env, ctx.webhook.addr, tree.as_deref(), ctx.opts) {
        rec.error = Some(format!("writing config: {e}"));
        return rec;
    }
    eprintln!("[{}] registering {} users", plan.name, ctx.opts.sessions);
    for i in 1..=ctx.opts.sessions {
        let r = run_logged(
            Command::new("prosodyctl").arg("--config").arg(&env.config).args([
                "register",
                &format!("{USER_PREFIX}{i}"),
                DOMAIN,
                PASSWORD,
            ]),
            &env.dir.join("prosodyctl.log"),
            Duration::from_secs(30),
        );
        if let Err(e) = r {
            rec.error = Some(format!("prosodyctl register: {e}\n{}", tail(&env.dir.join("prosodyctl.log"), 10)));
            return rec;
        }
    }

    eprintln!("[{}] starting prosody on 127.0.0.1:{}", plan.name, env.c2s_port);
    let wh_start = ctx.webhook.stats();
    let prosody = match start_prosody(&env) {
        Ok(p) => p,
        Err(e) => {
            rec.error = Some(e);
            scan_log(&env.log, &mut rec);
            return rec;
        }
    };
    let pid = prosody.pid();
    std::thread::sleep(Duration::from_millis(300));
    rec.rss_after_start_kb = procstat::vm_rss_kb(pid).unwrap_or(0);

    let ccfg = ClientConfig {
        addr: ([127, 0, 0, 1], env.c2s_port).into(),
        domain: DOMAIN.into(),
        user_prefix: USER_PREFIX.into(),
        password: PASSWORD.into(),
        sessions: ctx.opts.sessions,
        target: COMPONENT.into(),
        login_timeout: Duration::from_secs(15),
        login_concurrency: 0,
    };
    let mut client = match Client::connect(&ccfg) {
        Ok(c) => c,
        Err(e) => {
            rec.error = Some(format!("client login: {e}\n{}", tail(&env.log, 15)));
            drop(prosody);
            scan_log(&env.log, &mut rec);
            return rec;
        }
    };
    rec.rss_after_login_kb = procstat::vm_rss_kb(pid).unwrap_or(0);

    let mut failed: Option<String> = None;
    if ctx.opts.warmup > 0 {
        eprintln!("[{}] warm-up: {} messages at W=16", plan.name, ctx.opts.warmup);
        let w = measured_phase(ctx, &mut client, pid, "warmup", 16.min(ctx.opts.warmup), ctx.opts.warmup, None);
        if let Some(a) = &w.result.aborted {
            failed = Some(format!("warm-up failed ({a}); component not answering?\n{}", tail(&env.log, 15)));
        }
        rec.phases.push(w);
    }
    let mut phases: Vec<(String, usize, usize)> =
        ctx.opts.windows.iter().map(|&w| (format!("W={w}"), w, ctx.opts.messages)).collect();
    if ctx.opts.long {
        phases.push(("long".into(), ctx.opts.long_window, ctx.opts.long_messages));
    }
    let perf_label = ctx.opts.windows.last().map(|w| format!("W={w}"));
    for (label, w, n) in phases {
        if failed.is_some() || stopping() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        eprintln!("[{}] phase {label}: {n} messages, window {w}", plan.name);
        let perf_file = (ctx.opts.perf && Some(&label) == perf_label.as_ref()).then(|| env.dir.join("perf.data"));
        let lua_profile = ctx.opts.lua_profile && Some(&label) == perf_label.as_ref();
        if lua_profile {
            // mod_bench_luaprof: SIGUSR1 clears its counts, SIGUSR2 writes them.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGUSR1);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let r = measured_phase(ctx, &mut client, pid, &label, w, n, perf_file.as_deref());
        if lua_profile {
            let f = env.dir.join("luaprof.txt");
            let _ = fs::remove_file(&f);
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGUSR2);
            }
            let t0 = Instant::now();
            while !f.exists() && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(100));
            let out = results_base.with_file_name(format!(
                "{}-luaprof-{}.txt",
                results_base.file_name().unwrap().to_string_lossy(),
                plan.name
            ));
            if fs::copy(&f, &out).is_ok() {
                rec.lua_profile_report = Some(out.display().to_string());
            }
        }
        eprintln!(
            "[{}]   {:.0} msg/s, p50 {:.2} ms, p99 {:.2} ms, main {:.1} us/msg, proc {:.1} us/msg, {} webhook conns, bg load {:.2} cores{}",
            plan.name,
            r.result.msgs_per_s,
            r.result.latency.p50_us as f64 / 1000.0,
            r.result.latency.p99_us as f64 / 1000.0,
            r.cpu.main_us_per_msg,
            r.cpu.proc_us_per_msg,
            r.webhook_connections,
            r.cpu.foreign_cores,
            r.result.aborted.as_ref().map(|a| format!(" — ABORTED: {a}")).unwrap_or_default()
        );
        if r.result.aborted.is_some() && !client.sessions_alive() {
            failed = Some(format!("{label}: {}", r.result.aborted.clone().unwrap()));
        }
        rec.phases.push(r);
        if let Some(pf) = perf_file {
            let out = results_base.with_file_name(format!(
                "{}-perf-{}.txt",
                results_base.file_name().unwrap().to_string_lossy(),
                plan.name
            ));
            // Per thread and object first (main thread vs workers; Lua VM vs
            // libc vs native module), then the hottest symbols that have names.
            let mut text = String::new();
            for sort in ["comm,dso", "dso,sym"] {
                let rep = Command::new("perf")
                    .args(["report", "--stdio", "--no-children", "--percent-limit", "0.5", "--sort", sort, "-i"])
                    .arg(&pf)
                    .stderr(Stdio::null())
                    .output();
                if let Ok(o) = rep {
                    let _ = writeln!(text, "==== perf report --sort {sort} ({label})\n");
                    text.push_str(&String::from_utf8_lossy(&o.stdout));
                    text.push('\n');
                }
            }
            if fs::write(&out, text).is_ok() {
                rec.perf_report = Some(out.display().to_string());
            }
        }
    }
    client.close();
    drop(prosody);
    let wh_end = ctx.webhook.stats();
    rec.webhook_connections_total = wh_end.accepted.saturating_sub(wh_start.accepted);
    rec.webhook_requests_total = wh_end.requests.saturating_sub(wh_start.requests);
    scan_log(&env.log, &mut rec);
    match failed {
        Some(e) => rec.error = Some(e),
        None if stopping() => rec.error = Some("interrupted".into()),
        None => rec.status = "ok".into(),
    }
    rec
}

// ---------------------------------------------------------------- report
