//! Reading a process's CPU time and memory from /proc.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime in clock ticks from a `stat` file (fields 14 and 15; the
/// command name in field 2 may contain spaces, so split after the last ')').
fn stat_ticks(path: &str) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field n is f[n - 3]
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// First field of schedstat: nanoseconds spent on a CPU (finer than ticks).
fn schedstat_ns(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.split_whitespace().next()?.parse().ok()
}

/// A `Vm*:` / `Threads:` line of /proc/<pid>/status, in kB (or a count).
fn status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// Machine-wide CPU from the first line of /proc/stat, in clock ticks:
/// (busy = user+nice+system+irq+softirq, steal).
pub fn machine_ticks() -> (u64, u64) {
    let s = fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or("");
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let g = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    (g(0) + g(1) + g(2) + g(5) + g(6), g(7))
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Whole process (all threads, including exited ones), utime+stime ticks.
    pub proc_ticks: u64,
    /// The main thread alone (/proc/<pid>/task/<pid>/stat), ticks.
    pub main_ticks: u64,
    /// The main thread's on-CPU time from schedstat, ns.
    pub main_sched_ns: u64,
    pub vm_rss_kb: u64,
    pub vm_hwm_kb: u64,
    pub threads: u64,
}

pub fn snapshot(pid: u32) -> Option<Snapshot> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Snapshot {
        proc_ticks: stat_ticks(&format!("/proc/{pid}/stat"))?,
        main_ticks: stat_ticks(&format!("/proc/{pid}/task/{pid}/stat"))?,
        main_sched_ns: schedstat_ns(&format!("/proc/{pid}/task/{pid}/schedstat")).unwrap_or(0),
        vm_rss_kb: status_field(&status, "VmRSS:").unwrap_or(0),
        vm_hwm_kb: status_field(&status, "VmHWM:").unwrap_or(0),
        threads: status_field(&status, "Threads:").unwrap_or(0),
    })
}

pub fn vm_rss_kb(pid: u32) -> Option<u64> {
    status_field(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmRSS:")
}

/// Samples VmRSS periodically on a thread while a phase runs.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(f64, u64)>>>,
    handle: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s2, v2) = (stop.clone(), samples.clone());
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            while !s2.load(Ordering::Relaxed) {
                if let Some(kb) = vm_rss_kb(pid) {
                    v2.lock().unwrap().push((t0.elapsed().as_secs_f64(), kb));
                }
                std::thread::sleep(every);
            }
        });
        RssSampler { stop, samples, handle: Some(handle) }
    }

    /// Stop and return (seconds since start, VmRSS kB) samples.
    pub fn finish(mut self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_process() {
        let s = super::snapshot(std::process::id()).unwrap();
        assert!(s.vm_rss_kb > 0 && s.threads >= 1);
    }
}
