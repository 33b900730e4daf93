//! Command-line options (`bench/run --help`).

use clap::Parser;

use crate::*;

/// What a run is asked to do; also recorded in the JSON results.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Opts {
    pub(crate) other_dirs: Vec<PathBuf>,
    pub(crate) setups: Option<Vec<String>>,
    pub(crate) messages: usize,
    pub(crate) windows: Vec<usize>,
    pub(crate) sessions: usize,
    pub(crate) warmup: usize,
    pub(crate) long: bool,
    pub(crate) long_messages: usize,
    pub(crate) long_window: usize,
    pub(crate) rockspec: Option<PathBuf>,
    pub(crate) module_tree: Option<PathBuf>,
    pub(crate) stall_timeout_s: u64,
    pub(crate) phase_timeout_s: u64,
    pub(crate) results_dir: PathBuf,
    pub(crate) repo: PathBuf,
    pub(crate) keep: bool,
    pub(crate) perf: bool,
    pub(crate) lua_profile: bool,
    pub(crate) null_reply: String,
    pub(crate) prosody_extra: Option<String>,
}

/// Measures what mod_component_http costs a real Prosody, next to a floor (a component that
/// answers locally in Lua) and, optionally, other modules. See bench/README.md.
#[derive(Parser, Debug)]
#[command(name = "bench/run")]
struct Args {
    /// Also benchmark the component_http module found in DIR (repeatable), e.g. a checkout of
    /// the original module
    #[arg(long = "other-plugin-dir", value_name = "DIR")]
    other_plugin_dir: Vec<PathBuf>,
    /// Which setups to run: null,module,other (default: all that are available; null is the
    /// floor for ratios)
    #[arg(long, value_delimiter = ',')]
    setups: Option<Vec<String>>,
    /// Messages per window phase
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Outstanding-message windows
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 256])]
    windows: Vec<usize>,
    /// Client sessions
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Warm-up messages per setup at W=16
    #[arg(long, default_value_t = 2000)]
    warmup: usize,
    /// Add a long phase for RSS growth
    #[arg(long)]
    long: bool,
    /// Messages in the long phase
    #[arg(long, default_value_t = 200_000)]
    long_messages: usize,
    /// Window of the long phase
    #[arg(long, default_value_t = 256)]
    long_window: usize,
    /// Rockspec to install (default: the one in rockspec/)
    #[arg(long)]
    rockspec: Option<PathBuf>,
    /// Use an already installed LuaRocks tree, skip `luarocks make`
    #[arg(long)]
    module_tree: Option<PathBuf>,
    /// End a phase after this many seconds without a reply
    #[arg(long = "stall-timeout", default_value_t = 10)]
    stall_timeout: u64,
    /// Hard cap per phase, in seconds
    #[arg(long = "phase-timeout", default_value_t = 600)]
    phase_timeout: u64,
    /// Where results go (default: bench/results)
    #[arg(long)]
    results_dir: Option<PathBuf>,
    /// Repository root (default: the parent of bench/)
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Keep the temporary run directory (configs, logs, data)
    #[arg(long)]
    keep: bool,
    /// Record `perf` on Prosody during the last window phase of each setup
    #[arg(long)]
    perf: bool,
    /// Load tools/mod_bench_luaprof.lua (Lua instruction sampling) for the last window phase;
    /// it slows Prosody down, so its CPU numbers are not comparable with normal runs
    #[arg(long)]
    lua_profile: bool,
    /// How the floor replies: module:send (route, like this module) or origin.send (like the
    /// original)
    #[arg(long, default_value = "route", value_parser = ["route", "origin"])]
    null_reply: String,
    /// Lua appended to the global section of every generated config
    #[arg(long)]
    prosody_extra: Option<String>,
}

pub(crate) fn parse_args() -> Opts {
    let a = Args::parse();
    let die = |m: String| -> ! {
        eprintln!("bench: {m}");
        std::process::exit(2)
    };
    if a.sessions == 0 || a.windows.is_empty() || a.windows.contains(&0) {
        die("sessions and windows must be positive".into());
    }
    let other_dirs = a
        .other_plugin_dir
        .iter()
        .map(|d| fs::canonicalize(d).unwrap_or_else(|e| die(format!("{}: {e}", d.display()))))
        .collect();
    let repo = a.repo.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf());
    Opts {
        other_dirs,
        setups: a.setups,
        messages: a.messages,
        windows: a.windows,
        sessions: a.sessions,
        warmup: a.warmup,
        long: a.long,
        long_messages: a.long_messages,
        long_window: a.long_window,
        rockspec: a.rockspec,
        module_tree: a.module_tree,
        stall_timeout_s: a.stall_timeout,
        phase_timeout_s: a.phase_timeout,
        results_dir: a.results_dir.unwrap_or_else(|| repo.join("bench").join("results")),
        repo,
        keep: a.keep,
        perf: a.perf,
        lua_profile: a.lua_profile,
        null_reply: a.null_reply,
        prosody_extra: a.prosody_extra,
    }
}
