//! What a run records, per phase, setup and run: serialized to the JSON results.

use crate::*;

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct CpuRecord {
    pub(crate) proc_cpu_s: f64,
    pub(crate) main_cpu_s: f64,
    pub(crate) proc_us_per_msg: f64,
    pub(crate) main_us_per_msg: f64,
    /// Main thread from schedstat (ns resolution) as a cross-check.
    pub(crate) main_sched_us_per_msg: f64,
    /// The harness on the same two cores: webhook and this process (loadgen).
    pub(crate) webhook_us_per_msg: f64,
    pub(crate) loadgen_us_per_msg: f64,
    /// Average number of cores kept busy during the phase by processes other
    /// than Prosody, the webhook and this harness (a noise indicator), and
    /// hypervisor steal, in cores.
    pub(crate) foreign_cores: f64,
    pub(crate) steal_cores: f64,
    pub(crate) wall_s: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct RssRecord {
    pub(crate) start_kb: u64,
    pub(crate) end_kb: u64,
    pub(crate) max_kb: u64,
    /// VmRSS at the first sample past 10% of the phase (after warm-up effects).
    pub(crate) at_10pct_kb: u64,
    pub(crate) vm_hwm_end_kb: u64,
    pub(crate) samples: Vec<(f64, u64)>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct PhaseRecord {
    pub(crate) label: String,
    pub(crate) result: PhaseResult,
    pub(crate) cpu: CpuRecord,
    pub(crate) rss: RssRecord,
    pub(crate) threads: u64,
    pub(crate) webhook_connections: u64,
    pub(crate) webhook_requests: u64,
    pub(crate) webhook_active_after: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct SetupRecord {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) description: String,
    pub(crate) status: String,
    pub(crate) error: Option<String>,
    pub(crate) install_s: Option<f64>,
    pub(crate) rss_after_start_kb: u64,
    pub(crate) rss_after_login_kb: u64,
    /// Webhook connections accepted and requests served while this setup's
    /// Prosody ran (warm-up included).
    pub(crate) webhook_connections_total: u64,
    pub(crate) webhook_requests_total: u64,
    pub(crate) phases: Vec<PhaseRecord>,
    pub(crate) log_warnings: usize,
    pub(crate) log_errors: usize,
    pub(crate) log_excerpt: Vec<String>,
    pub(crate) perf_report: Option<String>,
    pub(crate) lua_profile_report: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Ratio {
    pub(crate) setup: String,
    pub(crate) label: String,
    pub(crate) throughput: Option<f64>,
    pub(crate) proc_cpu_per_msg: Option<f64>,
    pub(crate) main_cpu_per_msg: Option<f64>,
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) rss_max: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct RunRecord {
    pub(crate) started: String,
    pub(crate) finished: String,
    pub(crate) host: serde_json::Value,
    pub(crate) options: Opts,
    pub(crate) setups: Vec<SetupRecord>,
    pub(crate) ratios_to_floor: Vec<Ratio>,
    pub(crate) notes: Vec<String>,
}
