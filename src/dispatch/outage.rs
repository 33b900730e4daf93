//! What the dispatcher knows about a webhook that stopped answering.
//!
//! When an attempt finds the webhook unreachable (a connection refused, reset or timed out, or a
//! proxy's 502/503/504 while the app behind it restarts), the component does not keep hammering
//! it with every stanza: the stanzas are held in order, and one of them at a time is sent as a
//! probe: at once after the first failure (a keep-alive connection the webhook closed is the
//! common case), then after a capped, jittered backoff. The first real answer ends the outage
//! and releases everything held. Each held stanza still ends by its retry window or deadline.

use std::time::{Duration, Instant};

use super::jitter::Jitter;
use crate::outcome::StanzaError;

/// The first wait before probing a webhook found unreachable; doubled per failed probe.
const FIRST_PROBE_DELAY: Duration = Duration::from_millis(200);
/// The longest wait between probes, so a restarted webhook is noticed within about a second.
const MAX_PROBE_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Outage {
    /// When the webhook was first found unreachable.
    pub since: Instant,
    /// A stanza is being posted to find out whether the webhook is back.
    pub probe_in_flight: bool,
    /// When the next probe may start.
    pub next_probe: Instant,
    failed_probes: u32,
    /// The last failure, for the errors of stanzas whose hold runs out.
    pub last_error: (StanzaError, String),
}

impl Outage {
    pub fn begin(
        now: Instant,
        error: (StanzaError, String),
        retry_after: Option<Duration>,
        jitter: &mut Jitter,
        longest_wait: Duration,
    ) -> Outage {
        let mut outage =
            Outage { since: now, probe_in_flight: false, next_probe: now, failed_probes: 0, last_error: error };
        if retry_after.is_some() {
            outage.schedule(now, retry_after, jitter, longest_wait);
        }
        outage
    }

    /// A probe failed too: wait longer before the next one.
    pub fn probe_failed(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
        jitter: &mut Jitter,
        longest_wait: Duration,
    ) {
        self.probe_in_flight = false;
        self.failed_probes = self.failed_probes.saturating_add(1);
        self.schedule(now, retry_after, jitter, longest_wait);
    }

    /// Sets `next_probe`: the backoff, or the webhook's own `Retry-After` when it gave one,
    /// never later than `longest_wait` (nothing held can wait longer than that anyway).
    fn schedule(&mut self, now: Instant, retry_after: Option<Duration>, jitter: &mut Jitter, longest_wait: Duration) {
        let backoff =
            FIRST_PROBE_DELAY.saturating_mul(1 << (self.failed_probes.max(1) - 1).min(16)).min(MAX_PROBE_DELAY);
        let wait = retry_after.unwrap_or_else(|| jitter.spread(backoff)).min(longest_wait.max(FIRST_PROBE_DELAY));
        self.next_probe = now.checked_add(wait).unwrap_or(now);
    }

    /// Whether a worker may take a stanza now (as the probe).
    pub fn probe_due(&self, now: Instant) -> bool {
        !self.probe_in_flight && now >= self.next_probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::CONNECTION_FAILURE;

    #[test]
    fn probes_back_off_up_to_a_cap_and_follow_retry_after_within_bounds() {
        let mut jitter = Jitter::new();
        let now = Instant::now();
        let error = || (CONNECTION_FAILURE, "refused".to_string());
        let window = Duration::from_secs(15);
        let mut outage = Outage::begin(now, error(), None, &mut jitter, window);
        assert!(outage.probe_due(now), "the first retry goes at once");
        outage.probe_failed(now, None, &mut jitter, window);
        assert!(outage.next_probe > now && outage.next_probe <= now + FIRST_PROBE_DELAY);
        assert!(!outage.probe_due(now) && outage.probe_due(outage.next_probe));
        for _ in 0..40 {
            outage.probe_failed(now, None, &mut jitter, window);
            assert!(outage.next_probe <= now + MAX_PROBE_DELAY);
        }
        outage.probe_failed(now, Some(Duration::from_secs(3)), &mut jitter, window);
        assert_eq!(outage.next_probe, now + Duration::from_secs(3));
        // A hostile Retry-After cannot park the component: capped at the longest hold.
        outage.probe_failed(now, Some(Duration::from_secs(u64::MAX)), &mut jitter, window);
        assert_eq!(outage.next_probe, now + window);
    }
}
