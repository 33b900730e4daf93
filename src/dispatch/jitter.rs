//! Randomness for backoff jitter and delivery ids.

use std::time::{Duration, Instant};

/// A small xorshift generator for backoff jitter and delivery ids; seeded from the OS's
/// per-process randomness that std's hash maps use, so no extra dependency is needed.
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Jitter {
        use std::hash::{BuildHasher, RandomState};
        let seed = RandomState::new().hash_one(Instant::now());
        Jitter(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A duration between half and all of `d` ("equal jitter").
    pub fn spread(&mut self, d: Duration) -> Duration {
        let half = d / 2;
        half + Duration::from_nanos(self.next_u64() % (half.as_nanos() as u64).max(1))
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new()
    }
}
