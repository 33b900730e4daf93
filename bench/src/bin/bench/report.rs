//! The Markdown report and the figures it derives (ratios to the floor).

use crate::*;

pub(crate) fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

pub(crate) fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

pub(crate) fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

pub(crate) fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "–".into())
}

pub(crate) fn compute_ratios(setups: &[SetupRecord]) -> Vec<Ratio> {
    let Some(floor) = setups.iter().find(|s| s.kind == "null") else { return vec![] };
    let mut out = vec![];
    for s in setups.iter().filter(|s| s.kind != "null") {
        for p in s.phases.iter().filter(|p| p.label != "warmup") {
            let Some(f) = floor.phases.iter().find(|f| f.label == p.label) else { continue };
            out.push(Ratio {
                setup: s.name.clone(),
                label: p.label.clone(),
                throughput: ratio(p.result.msgs_per_s, f.result.msgs_per_s),
                proc_cpu_per_msg: ratio(p.cpu.proc_us_per_msg, f.cpu.proc_us_per_msg),
                main_cpu_per_msg: ratio(p.cpu.main_us_per_msg, f.cpu.main_us_per_msg),
                p50: ratio(p.result.latency.p50_us as f64, f.result.latency.p50_us as f64),
                p99: ratio(p.result.latency.p99_us as f64, f.result.latency.p99_us as f64),
                rss_max: ratio(p.rss.max_kb as f64, f.rss.max_kb as f64),
            });
        }
    }
    out
}

pub(crate) fn render_markdown(run: &RunRecord) -> String {
    let mut m = String::new();
    let o = &run.options;
    let _ = writeln!(m, "# mod_component_http benchmark — {}\n", run.started);
    let h = &run.host;
    let _ = writeln!(
        m,
        "Host: {} ({} cores), kernel {}, Prosody {} (network_backend epoll, Lua 5.4). Repo commit: {}.",
        h["cpu"].as_str().unwrap_or("?"),
        h["cores"],
        h["kernel"].as_str().unwrap_or("?"),
        h["prosody"].as_str().unwrap_or("?"),
        h["git"].as_str().unwrap_or("?"),
    );
    let _ = writeln!(
        m,
        "Load: {} c2s sessions, {} messages per window phase{}; warm-up {} at W=16. Loadgen, webhook and Prosody share the machine.\n",
        o.sessions,
        o.messages,
        if o.long { format!(", long phase {} at W={}", o.long_messages, o.long_window) } else { String::new() },
        o.warmup
    );
    let _ = writeln!(m, "## Setups\n");
    for s in &run.setups {
        let _ = writeln!(
            m,
            "- **{}** ({}): {}{}{}",
            s.name,
            s.status,
            s.description,
            s.install_s.map(|t| format!("; install {t:.1} s")).unwrap_or_default(),
            s.error.as_ref().map(|e| format!("\n  - error: `{}`", e.lines().next().unwrap_or(""))).unwrap_or_default()
        );
    }
    let _ = writeln!(m, "\n## Results per setup and window\n");
    let _ = writeln!(
        m,
        "| setup | phase | msgs | msg/s | p50 ms | p99 ms | max ms | CPU µs/msg proc | CPU µs/msg main | webhook conns | RSS max MiB | VmHWM MiB | thr | lost | dup | reord | err | bg load |"
    );
    let _ = writeln!(m, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for s in &run.setups {
        for p in s.phases.iter().filter(|p| p.label != "warmup") {
            let r = &p.result;
            let _ = writeln!(
                m,
                "| {} | {}{} | {} | {:.0} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
                s.name,
                p.label,
                if r.aborted.is_some() { " (aborted)" } else { "" },
                r.replied,
                r.msgs_per_s,
                ms(r.latency.p50_us),
                ms(r.latency.p99_us),
                ms(r.latency.max_us),
                p.cpu.proc_us_per_msg,
                p.cpu.main_us_per_msg,
                p.webhook_connections,
                mib(p.rss.max_kb),
                mib(p.rss.vm_hwm_end_kb),
                p.threads,
                r.lost,
                r.duplicates,
                r.reordered,
                r.errors,
                p.cpu.foreign_cores
            );
        }
    }
    if !run.ratios_to_floor.is_empty() {
        let _ = writeln!(m, "\n## Ratios to the floor (null component)\n");
        let _ = writeln!(m, "| setup | phase | throughput | CPU/msg proc | CPU/msg main | p50 | p99 | RSS max |");
        let _ = writeln!(m, "|---|---|--:|--:|--:|--:|--:|--:|");
        for r in &run.ratios_to_floor {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.setup,
                r.label,
                fmt_ratio(r.throughput),
                fmt_ratio(r.proc_cpu_per_msg),
                fmt_ratio(r.main_cpu_per_msg),
                fmt_ratio(r.p50),
                fmt_ratio(r.p99),
                fmt_ratio(r.rss_max)
            );
        }
    }
    let longs: Vec<_> =
        run.setups.iter().flat_map(|s| s.phases.iter().filter(|p| p.label == "long").map(move |p| (s, p))).collect();
    if !longs.is_empty() {
        let _ = writeln!(m, "\n## Long phase: memory\n");
        let _ = writeln!(
            m,
            "| setup | msgs | msg/s | RSS start MiB | RSS @10% MiB | RSS end MiB | RSS max MiB | growth start→end MiB | growth 10%→end MiB | VmHWM MiB |"
        );
        let _ = writeln!(m, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for (s, p) in longs {
            let g = |a: u64, b: u64| format!("{:+.1}", (b as f64 - a as f64) / 1024.0);
            let _ = writeln!(
                m,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                p.result.replied,
                p.result.msgs_per_s,
                mib(p.rss.start_kb),
                mib(p.rss.at_10pct_kb),
                mib(p.rss.end_kb),
                mib(p.rss.max_kb),
                g(p.rss.start_kb, p.rss.end_kb),
                g(p.rss.at_10pct_kb, p.rss.end_kb),
                mib(p.rss.vm_hwm_end_kb)
            );
        }
    }

    // The numbers the project compares against, gathered in one place.
    let targets: Vec<&SetupRecord> = run.setups.iter().filter(|s| s.kind != "null").collect();
    if !targets.is_empty() {
        let _ = writeln!(m, "\n## Headline numbers\n");
        for s in targets {
            let rat = |label: &str| run.ratios_to_floor.iter().find(|r| r.setup == s.name && r.label == label);
            let phase = |label: &str| s.phases.iter().find(|p| p.label == label);
            let _ = writeln!(m, "**{}**", s.name);
            let wmax = o.windows.iter().max().copied().unwrap_or(256);
            let lw = format!("W={wmax}");
            if let Some(r) = rat(&lw) {
                let _ = writeln!(m, "- main-thread CPU/msg ratio at {lw}: {}", fmt_ratio(r.main_cpu_per_msg));
                let _ = writeln!(m, "- throughput ratio at {lw}: {}", fmt_ratio(r.throughput));
            }
            for w in &o.windows {
                if let Some(p) = phase(&format!("W={w}")) {
                    let _ = writeln!(
                        m,
                        "- webhook connections opened at W={w}: {} for {} requests",
                        p.webhook_connections, p.webhook_requests
                    );
                }
            }
            if let Some(r) = rat("W=16") {
                let _ = writeln!(m, "- p99 latency ratio at W=16: {}", fmt_ratio(r.p99));
            }
            let _ = writeln!(
                m,
                "- webhook connections over the whole setup (warm-up included): {} for {} requests",
                s.webhook_connections_total, s.webhook_requests_total
            );
            if let Some(p) = phase("long") {
                let _ = writeln!(
                    m,
                    "- RSS growth over {} messages: {:+.1} MiB (start→end), {:+.1} MiB (10%→end)",
                    p.result.replied,
                    (p.rss.end_kb as f64 - p.rss.start_kb as f64) / 1024.0,
                    (p.rss.end_kb as f64 - p.rss.at_10pct_kb as f64) / 1024.0
                );
            }
            let _ = writeln!(m);
        }
    }

    let _ = writeln!(m, "## Prosody logs (warn/error lines)\n");
    for s in &run.setups {
        let _ = writeln!(m, "- {}: {} warnings, {} errors", s.name, s.log_warnings, s.log_errors);
        for l in &s.log_excerpt {
            let _ = writeln!(m, "  - `{}`", l.replace('`', "'"));
        }
        if let Some(p) = &s.perf_report {
            let _ = writeln!(m, "  - perf report: {p}");
        }
        if let Some(p) = &s.lua_profile_report {
            let _ = writeln!(m, "  - Lua profile: {p}");
        }
    }
    if !run.notes.is_empty() {
        let _ = writeln!(m, "\n## Notes\n");
        for n in &run.notes {
            let _ = writeln!(m, "- {n}");
        }
    }
    let _ = writeln!(
        m,
        "\nCPU is utime+stime from /proc/<pid>/stat (whole process) and /proc/<pid>/task/<pid>/stat \
         (main thread), sampled before and after each phase, divided by replies. RSS max is the \
         highest VmRSS sampled every 100 ms during the phase; VmHWM is the process-lifetime peak. \
         Latency is send-to-reply per message. \"bg load\" is the average number of cores kept \
         busy during the phase by processes other than Prosody, the webhook and the harness \
         (from /proc/stat); above ~0.1 the wall-clock numbers of that row are disturbed. Full data, including per-phase harness CPU and RSS \
         samples, is in the JSON file."
    );
    m
}

pub(crate) fn host_info(o: &Opts) -> serde_json::Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let prosody = fs::read_to_string("/usr/lib/prosody/prosody.version").unwrap_or_default().trim().to_string();
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(&o.repo)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "none".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(&o.repo)
        .stderr(Stdio::null())
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": kernel,
        "prosody": prosody,
        "git": format!("{git}{}", if dirty { " (with uncommitted changes)" } else { "" }),
        "clock_ticks_per_s": procstat::clock_ticks_per_sec(),
    })
}
