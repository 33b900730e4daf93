//! Orchestrator: runs Debian's Prosody on loopback with each setup in turn,
//! drives it with the in-process load generator, samples /proc, and writes
//! bench/results/<timestamp>.{md,json}. See bench/README.md.
//!
//! Setups, one after the other, each in a fresh Prosody process:
//!   null    bench/null_component (mod_bench_null): answers in Lua, the floor
//!   module  this repository's module, installed with `luarocks make` into a
//!           temporary tree used as installer_plugin_path
//!   other   each --other-plugin-dir DIR, as plugin_paths = { DIR }, with the
//!           same `Component "bot.localhost" "component_http"` line

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use benchlib::loadgen::{Client, ClientConfig, PhaseOptions, PhaseResult};
use benchlib::procstat::{self, RssSampler, Snapshot};
use serde::Serialize;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

const DOMAIN: &str = "localhost";
const COMPONENT: &str = "bot.localhost";
const PASSWORD: &str = "bench-password";
const USER_PREFIX: &str = "u";

const USAGE: &str = "\
usage: bench/run [options]

  --other-plugin-dir DIR   also benchmark the component_http module found in DIR
                           (repeatable), e.g. a checkout of the original module
  --setups LIST            which setups to run: null,module,other (default: all
                           that are available; null is the floor for ratios)
  --messages N             messages per window phase (default 20000)
  --windows LIST           outstanding-message windows (default 1,16,256)
  --sessions N             client sessions (default 16)
  --warmup N               warm-up messages per setup at W=16 (default 2000)
  --long                   add a long phase for RSS growth
  --long-messages N        messages in the long phase (default 200000)
  --long-window W          window of the long phase (default 256)
  --rockspec PATH          rockspec to install (default: the one in rockspec/)
  --module-tree DIR        use an already installed LuaRocks tree, skip `luarocks make`
  --stall-timeout S        end a phase after S seconds without a reply (default 10)
  --phase-timeout S        hard cap per phase (default 600)
  --results-dir DIR        default bench/results
  --repo DIR               repository root (default: parent of bench/)
  --keep                   keep the temporary run directory (configs, logs, data)
  --prosody-extra TEXT     Lua appended to the global section of every
                           generated config (e.g. 'gc = { mode = \"generational\" }')
  --null-reply route|origin
                           how the floor replies: module:send (route, default,
                           like this module) or origin.send (like the original)
  --perf                   record `perf` on Prosody during the last window phase
                           of each setup and save a report next to the results
  --lua-profile            load tools/mod_bench_luaprof.lua (Lua instruction
                           sampling) and save a report for the last window
                           phase of each setup; it slows Prosody down, so its
                           CPU numbers are not comparable with normal runs
";

#[derive(Clone, Debug, Serialize)]
struct Opts {
    other_dirs: Vec<PathBuf>,
    setups: Option<Vec<String>>,
    messages: usize,
    windows: Vec<usize>,
    sessions: usize,
    warmup: usize,
    long: bool,
    long_messages: usize,
    long_window: usize,
    rockspec: Option<PathBuf>,
    module_tree: Option<PathBuf>,
    stall_timeout_s: u64,
    phase_timeout_s: u64,
    results_dir: PathBuf,
    repo: PathBuf,
    keep: bool,
    perf: bool,
    lua_profile: bool,
    null_reply: String,
    prosody_extra: Option<String>,
}

fn parse_args() -> Opts {
    let bench_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let repo = bench_dir.parent().unwrap().to_path_buf();
    let mut o = Opts {
        other_dirs: vec![],
        setups: None,
        messages: 20_000,
        windows: vec![1, 16, 256],
        sessions: 16,
        warmup: 2000,
        long: false,
        long_messages: 200_000,
        long_window: 256,
        rockspec: None,
        module_tree: None,
        stall_timeout_s: 10,
        phase_timeout_s: 600,
        results_dir: bench_dir.join("results"),
        repo,
        keep: false,
        perf: false,
        lua_profile: false,
        null_reply: "route".into(),
        prosody_extra: None,
    };
    let mut results_dir_set = false;
    let mut args = std::env::args().skip(1);
    let die = |m: String| -> ! {
        eprintln!("bench: {m}\n\n{USAGE}");
        std::process::exit(2)
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| die(format!("{a} needs a value")));
        let num = |s: String| -> usize { s.parse().unwrap_or_else(|_| die(format!("not a number: {s}"))) };
        match a.as_str() {
            "--other-plugin-dir" => {
                let d = PathBuf::from(val());
                let d = fs::canonicalize(&d).unwrap_or_else(|e| die(format!("{}: {e}", d.display())));
                o.other_dirs.push(d);
            }
            "--setups" => o.setups = Some(val().split(',').map(|s| s.trim().to_string()).collect()),
            "--messages" => o.messages = num(val()),
            "--windows" => o.windows = val().split(',').map(|s| num(s.trim().to_string())).collect(),
            "--sessions" => o.sessions = num(val()),
            "--warmup" => o.warmup = num(val()),
            "--long" => o.long = true,
            "--long-messages" => o.long_messages = num(val()),
            "--long-window" => o.long_window = num(val()),
            "--rockspec" => o.rockspec = Some(PathBuf::from(val())),
            "--module-tree" => o.module_tree = Some(PathBuf::from(val())),
            "--stall-timeout" => o.stall_timeout_s = num(val()) as u64,
            "--phase-timeout" => o.phase_timeout_s = num(val()) as u64,
            "--results-dir" => {
                o.results_dir = PathBuf::from(val());
                results_dir_set = true;
            }
            "--repo" => o.repo = PathBuf::from(val()),
            "--keep" => o.keep = true,
            "--perf" => o.perf = true,
            "--lua-profile" => o.lua_profile = true,
            "--prosody-extra" => o.prosody_extra = Some(val()),
            "--null-reply" => {
                o.null_reply = val();
                if o.null_reply != "route" && o.null_reply != "origin" {
                    die("--null-reply takes route or origin".into());
                }
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => die(format!("unknown argument {other}")),
        }
    }
    if o.sessions == 0 || o.windows.is_empty() || o.windows.contains(&0) {
        die("sessions and windows must be positive".into());
    }
    if !results_dir_set {
        o.results_dir = o.repo.join("bench").join("results");
    }
    o
}

// ---------------------------------------------------------------- helpers

fn now_stamp() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as libc::time_t;
    // SAFETY: gmtime_r writes into the tm we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::gmtime_r(&secs, &mut tm) };
    let file = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    let iso = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    (file, iso)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}



/// Children die with us even if we are killed without a chance to clean up.
fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// Run a command to completion with a time limit, output appended to `log`.
fn run_logged(cmd: &mut Command, log: &Path, limit: Duration) -> Result<(), String> {
    let f = fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| e.to_string())?;
    let f2 = f.try_clone().map_err(|e| e.to_string())?;
    let mut child = die_with_parent(cmd.stdin(Stdio::null()).stdout(f).stderr(f2))
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return if st.success() { Ok(()) } else { Err(format!("{cmd:?} exited with {st}")) };
        }
        if t0.elapsed() > limit || stopping() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} killed after {:?}", t0.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(path: &Path, n: usize) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn kill_and_reap(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let t0 = Instant::now();
    while t0.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------- webhook

#[derive(Clone, Debug, Default, serde::Deserialize, Serialize)]
struct WebhookStats {
    accepted: u64,
    active: u64,
    requests: u64,
    replies: u64,
    no_body: u64,
    bad: u64,
    closed_by_peer: u64,
    closed_by_us: u64,
}

struct Webhook {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Webhook {
    fn start(bin: &Path, log: &Path) -> Result<Webhook, String> {
        let err = fs::File::create(log).map_err(|e| e.to_string())?;
        let mut child = die_with_parent(
            Command::new(bin).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err),
        )
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("webhook said {line:?}"))?;
        Ok(Webhook { child, stdin, stdout, addr })
    }

    fn stats(&mut self) -> WebhookStats {
        let mut line = String::new();
        if self.stdin.write_all(b"stats\n").and_then(|_| self.stdin.flush()).is_err()
            || self.stdout.read_line(&mut line).is_err()
        {
            return WebhookStats::default();
        }
        serde_json::from_str(line.trim()).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child, Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------- prosody

struct Prosody {
    child: Child,
}

impl Prosody {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child, Duration::from_secs(10));
    }
}

#[derive(Clone, Debug, Serialize)]
struct SetupPlan {
    name: String,
    kind: String,
    description: String,
    /// Plugin directory (null/other) or LuaRocks tree (module).
    plugin_dir: Option<PathBuf>,
    module_name: String,
}

struct SetupEnv {
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    c2s_port: u16,
}

fn write_config(
    plan: &SetupPlan,
    env: &SetupEnv,
    webhook: SocketAddr,
    tree: Option<&Path>,
    opts: &Opts,
) -> std::io::Result<()> {
    // The configuration comes from scripts/prosody_config.py, the generator the demo, the tests
    // and the soak share; only what differs for a setup is said here.
    let d = &env.dir;
    let path = |x: &Path| x.display().to_string();
    let mut plugin_paths: Vec<String> = vec![];
    let mut modules = vec!["saslauth"];
    let mut globals = serde_json::json!({ "modules_disabled": ["s2s", "s2s_auth_certs", "offline"] });
    if plan.kind != "module" || tree.is_none() {
        plugin_paths.extend(plan.plugin_dir.as_deref().map(path));
    }
    if opts.lua_profile {
        plugin_paths.push(path(&opts.repo.join("bench").join("tools")));
        modules.push("bench_luaprof");
        globals["bench_luaprof_output"] = path(&d.join("luaprof.txt")).into();
    }
    let mut component = serde_json::json!({
        "__module__": plan.module_name,
        "component_post_url": format!("http://{webhook}/hook"),
    });
    if plan.kind == "null" {
        component["bench_null_reply"] = opts.null_reply.clone().into();
    }
    let extra = opts.prosody_extra.as_ref().map(|e| format!("-- --prosody-extra:\n{e}\n")).unwrap_or_default();
    let spec = serde_json::json!({
        "state_dir": path(d),
        "c2s_port": env.c2s_port,
        "plugin_tree": if plan.kind == "module" { tree.map(path) } else { None },
        "plugin_paths": plugin_paths,
        "log": path(&env.log),
        "modules_enabled": modules,
        "globals": globals,
        "extra_lua": extra,
        "comment": format!("generated by bench/ for setup {:?}; loopback only", plan.name),
        "components": { COMPONENT: component },
    });
    let mut generator = Command::new("python3")
        .arg(opts.repo.join("scripts").join("prosody_config.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    generator.stdin.take().expect("piped stdin").write_all(spec.to_string().as_bytes())?;
    let out = generator.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other("scripts/prosody_config.py failed"));
    }
    fs::create_dir_all(d.join("certs"))?;
    fs::write(&env.config, out.stdout)
}

fn start_prosody(env: &SetupEnv) -> Result<Prosody, String> {
    let out = fs::File::create(env.dir.join("prosody.stdout")).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = die_with_parent(
        Command::new("prosody")
            .arg("--config")
            .arg(&env.config)
            .arg("-F")
            .current_dir(&env.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
    )
    .spawn()
    .map_err(|e| format!("starting prosody: {e}"))?;
    let mut p = Prosody { child };
    let addr: SocketAddr = ([127, 0, 0, 1], env.c2s_port).into();
    let t0 = Instant::now();
    loop {
        if let Ok(Some(st)) = p.child.try_wait() {
            return Err(format!(
                "prosody exited early ({st}):\n{}\n{}",
                tail(&env.dir.join("prosody.stdout"), 20),
                tail(&env.log, 20)
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(p);
        }
        if t0.elapsed() > Duration::from_secs(30) || stopping() {
            kill_and_reap(&mut p.child, Duration::from_secs(2));
            return Err(format!("prosody did not open c2s port {} in 30s:\n{}", env.c2s_port, tail(&env.log, 20)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- records

#[derive(Clone, Debug, Default, Serialize)]
struct CpuRecord {
    proc_cpu_s: f64,
    main_cpu_s: f64,
    proc_us_per_msg: f64,
    main_us_per_msg: f64,
    /// Main thread from schedstat (ns resolution) as a cross-check.
    main_sched_us_per_msg: f64,
    /// The harness on the same two cores: webhook and this process (loadgen).
    webhook_us_per_msg: f64,
    loadgen_us_per_msg: f64,
    /// Average number of cores kept busy during the phase by processes other
    /// than Prosody, the webhook and this harness (a noise indicator), and
    /// hypervisor steal, in cores.
    foreign_cores: f64,
    steal_cores: f64,
    wall_s: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
struct RssRecord {
    start_kb: u64,
    end_kb: u64,
    max_kb: u64,
    /// VmRSS at the first sample past 10% of the phase (after warm-up effects).
    at_10pct_kb: u64,
    vm_hwm_end_kb: u64,
    samples: Vec<(f64, u64)>,
}

#[derive(Clone, Debug, Default, Serialize)]
struct PhaseRecord {
    label: String,
    result: PhaseResult,
    cpu: CpuRecord,
    rss: RssRecord,
    threads: u64,
    webhook_connections: u64,
    webhook_requests: u64,
    webhook_active_after: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
struct SetupRecord {
    name: String,
    kind: String,
    description: String,
    status: String,
    error: Option<String>,
    install_s: Option<f64>,
    rss_after_start_kb: u64,
    rss_after_login_kb: u64,
    /// Webhook connections accepted and requests served while this setup's
    /// Prosody ran (warm-up included).
    webhook_connections_total: u64,
    webhook_requests_total: u64,
    phases: Vec<PhaseRecord>,
    log_warnings: usize,
    log_errors: usize,
    log_excerpt: Vec<String>,
    perf_report: Option<String>,
    lua_profile_report: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
struct Ratio {
    setup: String,
    label: String,
    throughput: Option<f64>,
    proc_cpu_per_msg: Option<f64>,
    main_cpu_per_msg: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    rss_max: Option<f64>,
}

#[derive(Serialize)]
struct RunRecord {
    started: String,
    finished: String,
    host: serde_json::Value,
    options: Opts,
    setups: Vec<SetupRecord>,
    ratios_to_floor: Vec<Ratio>,
    notes: Vec<String>,
}

fn self_cpu_ticks() -> u64 {
    procstat::snapshot(std::process::id()).map(|s| s.proc_ticks).unwrap_or(0)
}

struct Ctx<'a> {
    opts: &'a Opts,
    webhook: &'a mut Webhook,
    ticks: f64,
}

/// Run one phase with /proc and webhook bookkeeping around it.
fn measured_phase(
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
    let ours = s1.proc_ticks.saturating_sub(s0.proc_ticks)
        + me1.saturating_sub(me0)
        + whcpu1.saturating_sub(whcpu0);
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

fn scan_log(path: &Path, rec: &mut SetupRecord) {
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

fn find_rockspec(o: &Opts) -> Option<PathBuf> {
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

fn run_setup(ctx: &mut Ctx, plan: &SetupPlan, run_dir: &Path, results_base: &Path) -> SetupRecord {
    let mut rec = SetupRecord {
        name: plan.name.clone(),
        kind: plan.kind.clone(),
        description: plan.description.clone(),
        status: "failed".into(),
        ..Default::default()
    };
    let dir = run_dir.join(&plan.name);
    let env = SetupEnv {
        config: dir.join("prosody.cfg.lua"),
        log: dir.join("prosody.log"),
        c2s_port: 0,
        dir,
    };
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
            eprintln!("[{}] luarocks make {} (log: {})", plan.name, rockspec.display(), env.dir.join("luarocks.log").display());
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
            Command::new("prosodyctl")
                .arg("--config")
                .arg(&env.config)
                .args(["register", &format!("{USER_PREFIX}{i}"), DOMAIN, PASSWORD]),
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
        let perf_file = (ctx.opts.perf && Some(&label) == perf_label.as_ref())
            .then(|| env.dir.join("perf.data"));
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

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "–".into())
}

fn compute_ratios(setups: &[SetupRecord]) -> Vec<Ratio> {
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

fn render_markdown(run: &RunRecord) -> String {
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
    let longs: Vec<_> = run
        .setups
        .iter()
        .flat_map(|s| s.phases.iter().filter(|p| p.label == "long").map(move |p| (s, p)))
        .collect();
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

fn host_info(o: &Opts) -> serde_json::Value {
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

fn main() {
    install_signal_handlers();
    let opts = parse_args();
    let (stamp, started) = now_stamp();
    let mut notes: Vec<String> = vec![];

    // Which setups?
    let want = |k: &str| opts.setups.as_ref().map(|v| v.iter().any(|x| x == k)).unwrap_or(true);
    let mut plans: Vec<SetupPlan> = vec![];
    if want("null") {
        plans.push(SetupPlan {
            name: "null".into(),
            kind: "null".into(),
            description: format!(
                "mod_bench_null, answers in Lua inside Prosody (floor; reply via {})",
                if opts.null_reply == "route" { "module:send" } else { "origin.send" }
            ),
            plugin_dir: Some(opts.repo.join("bench").join("null_component")),
            module_name: "bench_null".into(),
        });
    }
    if want("module") {
        match (&opts.module_tree, find_rockspec(&opts)) {
            (Some(t), _) => plans.push(SetupPlan {
                name: "module".into(),
                kind: "module".into(),
                description: format!("component_http from pre-installed tree {}", t.display()),
                plugin_dir: Some(t.clone()),
                module_name: "component_http".into(),
            }),
            (None, Some(r)) => plans.push(SetupPlan {
                name: "module".into(),
                kind: "module".into(),
                description: format!(
                    "component_http installed with `luarocks --lua-version 5.4 make --tree TREE {}`, installer_plugin_path = TREE",
                    r.strip_prefix(&opts.repo).unwrap_or(&r).display()
                ),
                plugin_dir: Some(r),
                module_name: "component_http".into(),
            }),
            (None, None) => {
                let n = "module setup skipped: no rockspec/*.rockspec in the repository yet".to_string();
                eprintln!("bench: {n}");
                notes.push(n);
            }
        }
    }
    if want("other") {
        for (i, d) in opts.other_dirs.iter().enumerate() {
            let base = d.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            plans.push(SetupPlan {
                name: if opts.other_dirs.len() > 1 { format!("other{}-{base}", i + 1) } else { format!("other-{base}") },
                kind: "other".into(),
                description: format!("component_http from plugin_paths = {{ {} }}", d.display()),
                plugin_dir: Some(d.clone()),
                module_name: "component_http".into(),
            });
        }
    }
    if plans.is_empty() {
        eprintln!("bench: nothing to run");
        std::process::exit(2);
    }

    let run_dir = std::env::temp_dir().join(format!("mch-bench-{stamp}-{}", std::process::id()));
    if let Err(e) = fs::create_dir_all(&run_dir) {
        eprintln!("bench: {}: {e}", run_dir.display());
        std::process::exit(1);
    }
    let bin_dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let mut webhook = match Webhook::start(&bin_dir.join("webhook"), &run_dir.join("webhook.log")) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("bench: run dir {}, webhook on {}", run_dir.display(), webhook.addr);
    if let Err(e) = fs::create_dir_all(&opts.results_dir) {
        eprintln!("bench: {}: {e}", opts.results_dir.display());
        std::process::exit(1);
    }
    let results_base = opts.results_dir.join(&stamp);

    // Is anything else keeping the machine busy? Everything here shares two cores.
    {
        let ticks = procstat::clock_ticks_per_sec() as f64;
        let (b0, _) = procstat::machine_ticks();
        let me0 = self_cpu_ticks();
        std::thread::sleep(Duration::from_secs(1));
        let (b1, _) = procstat::machine_ticks();
        let busy = b1.saturating_sub(b0).saturating_sub(self_cpu_ticks().saturating_sub(me0)) as f64 / ticks;
        if busy > 0.2 {
            let n = format!(
                "the machine was already busy before the run ({busy:.2} cores in use by other processes); \
                 wall-clock numbers (msg/s, latency) will be disturbed — see the bg load column"
            );
            eprintln!("bench: warning: {n}");
            notes.push(n);
        }
    }

    let mut ctx = Ctx { opts: &opts, webhook: &mut webhook, ticks: procstat::clock_ticks_per_sec() as f64 };
    let mut setups = vec![];
    for plan in &plans {
        if stopping() {
            break;
        }
        eprintln!("== setup {}: {}", plan.name, plan.description);
        let rec = run_setup(&mut ctx, plan, &run_dir, &results_base);
        if let Some(e) = &rec.error {
            eprintln!("[{}] FAILED: {e}", plan.name);
        }
        setups.push(rec);
    }
    drop(webhook);

    if opts.keep {
        notes.push(format!("run directory kept: {}", run_dir.display()));
    } else {
        let _ = fs::remove_dir_all(&run_dir);
    }
    let ratios = compute_ratios(&setups);
    let run = RunRecord {
        started,
        finished: now_stamp().1,
        host: host_info(&opts),
        options: opts.clone(),
        setups,
        ratios_to_floor: ratios,
        notes,
    };
    let md = render_markdown(&run);
    let json = serde_json::to_string_pretty(&run).unwrap();
    let md_path = results_base.with_extension("md");
    let json_path = results_base.with_extension("json");
    if let Err(e) = fs::write(&md_path, &md).and_then(|_| fs::write(&json_path, json)) {
        eprintln!("bench: writing results: {e}");
    }
    println!("{md}");
    eprintln!("bench: results in {} and {}", md_path.display(), json_path.display());
    if stopping() {
        std::process::exit(130);
    }
}
