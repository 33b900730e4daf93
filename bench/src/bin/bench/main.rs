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

pub(crate) use std::fmt::Write as _;
pub(crate) use std::fs;
pub(crate) use std::io::{BufRead, BufReader, Write};
pub(crate) use std::net::{SocketAddr, TcpListener, TcpStream};
pub(crate) use std::os::unix::process::CommandExt;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
pub(crate) use std::time::{Duration, Instant};

pub(crate) use benchlib::loadgen::{Client, ClientConfig, PhaseOptions, PhaseResult};
pub(crate) use benchlib::procstat::{self, RssSampler, Snapshot};
pub(crate) use serde::Serialize;

mod args;
mod measure;
mod procs;
mod record;
mod report;

pub(crate) use args::*;
pub(crate) use measure::*;
pub(crate) use procs::*;
pub(crate) use record::*;
pub(crate) use report::*;

pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub(crate) fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

pub(crate) fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

pub(crate) const DOMAIN: &str = "localhost";
pub(crate) const COMPONENT: &str = "bot.localhost";
pub(crate) const PASSWORD: &str = "bench-password";
pub(crate) const USER_PREFIX: &str = "u";

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
                name: if opts.other_dirs.len() > 1 {
                    format!("other{}-{base}", i + 1)
                } else {
                    format!("other-{base}")
                },
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
