//! Counters for operators: kept by the worker and keeper threads as they settle stanzas (and
//! by `submit` for what it accepts or refuses), read by the shim only when Prosody collects its
//! statistics. Nothing here costs Prosody's main thread a Lua call per stanza.

use std::time::Duration;

use crate::outcome::Outcome;

/// Upper bounds, in seconds, of the request latency histogram's buckets (plus +Inf).
pub const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Counters kept as stanzas are settled, read when Prosody collects its statistics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    /// Stanzas handed to the module, by kind.
    pub posted: Vec<(String, u64)>,
    /// Outcomes: "reply", "no_reply", or the error condition sent to the sender.
    pub outcomes: Vec<(String, u64)>,
    /// HTTP answers by status class ("2xx" …), and "none" for attempts without one.
    pub responses: Vec<(String, u64)>,
    /// Attempts after the first, for all stanzas.
    pub retries: u64,
    /// Request latency (one attempt, from sending to the answer read): count per bucket of
    /// [`LATENCY_BUCKETS`] (not cumulative; the last one is +Inf), sum and count.
    pub latency_buckets: [u64; LATENCY_BUCKETS.len() + 1],
    /// Seconds spent in all attempts.
    pub latency_sum: f64,
    /// Attempts measured.
    pub latency_count: u64,
}

fn bump(counts: &mut Vec<(String, u64)>, key: &str) {
    match counts.iter_mut().find(|(k, _)| k == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key.to_owned(), 1)),
    }
}

impl Stats {
    /// Counts a stanza handed to the module.
    pub fn posted(&mut self, kind: &str) {
        bump(&mut self.posted, kind);
    }

    /// Counts a stanza's outcome, by its label (`reply`, `no_reply`, or the error condition).
    pub fn outcome(&mut self, outcome: &Outcome) {
        let label = match outcome {
            Outcome::Reply(_) => "reply",
            Outcome::NoReply => "no_reply",
            Outcome::Error(error, _) => error.condition,
        };
        bump(&mut self.outcomes, label);
    }

    /// One attempt: its HTTP status (None: no valid answer), how long it took, whether it was
    /// a retry.
    pub fn attempt(&mut self, status: Option<u16>, took: Duration, retry: bool) {
        let class = match status {
            Some(s @ 100..=599) => ["1xx", "2xx", "3xx", "4xx", "5xx"][usize::from(s / 100 - 1)],
            _ => "none",
        };
        bump(&mut self.responses, class);
        if retry {
            self.retries += 1;
        }
        if status.is_some() {
            let seconds = took.as_secs_f64();
            let bucket = LATENCY_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(LATENCY_BUCKETS.len());
            self.latency_buckets[bucket] += 1;
            self.latency_sum += seconds;
            self.latency_count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Outcome, TIMED_OUT};

    #[test]
    fn counts_by_label_and_bucket() {
        let mut stats = Stats::default();
        stats.posted("message");
        stats.posted("message");
        stats.posted("iq");
        stats.outcome(&Outcome::NoReply);
        stats.outcome(&Outcome::Error(TIMED_OUT, String::new()));
        stats.attempt(Some(200), Duration::from_millis(3), false);
        stats.attempt(Some(503), Duration::from_millis(700), true);
        stats.attempt(None, Duration::from_secs(1), true);
        stats.attempt(Some(204), Duration::from_secs(99), false);
        assert_eq!(stats.posted, [("message".into(), 2), ("iq".into(), 1)]);
        assert_eq!(stats.outcomes, [("no_reply".into(), 1), ("remote-server-timeout".into(), 1)]);
        assert_eq!(stats.responses, [("2xx".into(), 2), ("5xx".into(), 1), ("none".into(), 1)]);
        assert_eq!(stats.retries, 2);
        assert_eq!((stats.latency_buckets[0], stats.latency_buckets[7], stats.latency_buckets[12]), (1, 1, 1));
        assert_eq!(stats.latency_count, 3);
    }
}
