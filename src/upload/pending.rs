//! Files read from a reply or push, waiting for the shim to take them: the bytes cross from the
//! worker thread (or the push handler) to the uploads' object through here, so the message that
//! carries them through the dispatcher stays a plain stanza with a placeholder.
//!
//! Bounded: at most [`MAX_WAITING`] files wait at once, and a file not taken within
//! [`UNCLAIMED_AFTER`] is dropped the next time a file is put. A file is taken moments after it
//! is put, unless its message was dropped on the way (a reply refused by the policy, a reply to
//! an iq or to an error, a module unloaded): such orphans are the oldest, so when the bound is
//! reached the oldest file makes room (its message, if it ever comes, is refused saying so).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::File;

/// The most files waiting to be taken at once, across every module in the process.
pub const MAX_WAITING: usize = 64;

/// How long a file may wait to be taken before it is dropped: far longer than the moment a
/// message takes from a worker to the shim.
pub const UNCLAIMED_AFTER: Duration = Duration::from_secs(600);

/// A file and its caption, waiting.
#[derive(Debug)]
pub struct Waiting {
    /// The file.
    pub file: File,
    /// The message's `body`, sent after the file.
    pub caption: Option<String>,
    since: Instant,
}

fn waiting() -> MutexGuard<'static, HashMap<u64, Waiting>> {
    static WAITING: OnceLock<Mutex<HashMap<u64, Waiting>>> = OnceLock::new();
    // A panic while holding it cannot leave the map half-changed: every change is one call.
    WAITING.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Keeps `file` and its caption until [`take`]; returns its id.
pub fn put(file: File, caption: Option<String>) -> u64 {
    let mut waiting = waiting();
    let now = Instant::now();
    waiting.retain(|_, entry| now.duration_since(entry.since) < UNCLAIMED_AFTER);
    if waiting.len() >= MAX_WAITING {
        // Ids grow with time: the smallest is the oldest.
        if let Some(oldest) = waiting.keys().min().copied() {
            waiting.remove(&oldest);
        }
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    waiting.insert(id, Waiting { file, caption, since: now });
    id
}

/// Takes the file kept as `id`, if it is still there.
pub fn take(id: u64) -> Option<Waiting> {
    waiting().remove(&id)
}

/// How many files wait (for tests and statistics).
pub fn count() -> usize {
    waiting().len()
}
