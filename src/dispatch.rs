//! The queue, the worker pool and the HTTP agent of one component.
//!
//! `submit` and `drain` are called from Prosody's main thread and only take short locks;
//! everything slow — HTTP, retries, reading answers, parsing JSON and XML, deciding the
//! outcome — runs on the workers. Every submitted stanza yields exactly one [`Completion`]: from
//! its worker, from `submit` itself when the queue is full, or from `close` when the component
//! stops first.
//!
//! Ordering: with `ordered`, stanzas from one sender to one component JID form a line: only its
//! head is ready or in flight, the rest wait in `followers` and move to the back of the ready
//! queue one at a time as their predecessor completes. Different lines proceed concurrently.

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::http::{build_agent, deliver, Delivery, Jitter};
use crate::request;
use crate::response::{complete, describe, Completion, Level, Outcome, INTERNAL, QUEUE_FULL, UNLOADED};
use crate::stanza::Incoming;
use crate::wakeup::Wakeup;

struct Job {
    id: u64,
    /// The ordering line this job belongs to (sender and recipient), when ordered.
    line: Option<String>,
    delivery_id: String,
    /// When the stanza was accepted: its deadline runs from here, queueing included, so that a
    /// hanging webhook cannot keep a queued stanza waiting longer than `timeout`.
    accepted: Instant,
    incoming: Incoming,
}

/// What workers read per job; replaced as a whole by `reconfigure`.
struct Settings {
    config: Config,
    agent: ureq::Agent,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Job>,
    /// Lines with a job ready or in flight, and the jobs waiting behind it.
    followers: HashMap<String, VecDeque<Job>>,
    /// Jobs not yet taken by a worker: `ready` plus all followers.
    waiting: usize,
    /// Stanzas a worker is posting, kept so `close` can answer them without waiting.
    in_flight: HashMap<u64, Incoming>,
    closing: bool,
    live_workers: usize,
    wanted_workers: usize,
    /// Workers waiting for a job: when none is, a new job needs no wake-up call (this spares
    /// Prosody's main thread a futex syscall per stanza under load).
    idle_workers: usize,
}

#[derive(Default)]
struct Completions {
    list: Vec<Completion>,
    /// A wake-up byte is pending for the current batch.
    armed: bool,
}

struct Shared {
    settings: Mutex<Arc<Settings>>,
    state: Mutex<State>,
    /// Signalled when a job becomes ready, when closing, and when a worker exits.
    changed: Condvar,
    /// Signalled only when closing: ends the backoff pauses of workers between retries.
    closing: Condvar,
    completions: Mutex<Completions>,
    wakeup: Wakeup,
}

pub struct Dispatcher {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    next_id: u64,
    /// Random per pool, so delivery ids stay unique across restarts of Prosody.
    id_prefix: u64,
}

/// A poisoned lock only means a worker panicked while holding it; the data is still usable
/// (every panic is caught and answered), so carry on rather than take Prosody down.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Dispatcher {
    pub fn new(config: Config) -> Result<Dispatcher, String> {
        let agent = build_agent(&config)?;
        let shared = Arc::new(Shared {
            settings: Mutex::new(Arc::new(Settings { config, agent })),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            closing: Condvar::new(),
            completions: Mutex::new(Completions::default()),
            wakeup: Wakeup::new().map_err(|e| format!("could not create the wake-up socket: {e}"))?,
        });
        let mut dispatcher =
            Dispatcher { shared, workers: Vec::new(), next_id: 0, id_prefix: Jitter::new().next_u64() };
        let workers = dispatcher.config().workers;
        if let Err(e) = dispatcher.set_workers(workers) {
            dispatcher.close(Duration::from_secs(1));
            return Err(e);
        }
        Ok(dispatcher)
    }

    pub fn config(&self) -> Config {
        lock(&self.shared.settings).config.clone()
    }

    pub fn fd(&self) -> RawFd {
        self.shared.wakeup.fd()
    }

    /// Stanzas accepted and not yet answered (queued or in flight).
    pub fn pending(&self) -> usize {
        let state = lock(&self.shared.state);
        state.waiting + state.in_flight.len()
    }

    /// Applies a new configuration without disturbing what is queued or in flight: used when the
    /// module is reloaded, so that nothing pending is lost and order per sender holds.
    pub fn reconfigure(&mut self, config: Config) -> Result<(), String> {
        let agent = build_agent(&config)?;
        let workers = config.workers;
        *lock(&self.shared.settings) = Arc::new(Settings { config, agent });
        self.set_workers(workers)
    }

    fn set_workers(&mut self, wanted: usize) -> Result<(), String> {
        self.workers.retain(|handle| !handle.is_finished());
        let to_start = {
            let mut state = lock(&self.shared.state);
            state.wanted_workers = wanted;
            let missing = wanted.saturating_sub(state.live_workers);
            state.live_workers += missing;
            missing
        };
        // Surplus workers notice `wanted_workers` when they next look for work.
        self.shared.changed.notify_all();
        for n in 0..to_start {
            let shared = Arc::clone(&self.shared);
            let spawned =
                std::thread::Builder::new().name(format!("component_http-{n}")).spawn(move || worker(&shared));
            match spawned {
                Ok(handle) => self.workers.push(handle),
                Err(e) => {
                    lock(&self.shared.state).live_workers -= to_start - n;
                    return Err(format!("could not start a worker thread: {e}"));
                }
            }
        }
        Ok(())
    }

    /// Queues a stanza for posting; never blocks on the network.
    pub fn submit(&mut self, incoming: Incoming) {
        let (ordered, queue_size) = {
            let settings = lock(&self.shared.settings);
            (settings.config.ordered, settings.config.queue_size)
        };
        self.next_id += 1;
        let job = Job {
            id: self.next_id,
            line: ordered.then(|| {
                format!("{}\u{0}{}", incoming.from.as_deref().unwrap_or(""), incoming.to.as_deref().unwrap_or(""))
            }),
            delivery_id: format!("{:016x}-{}", self.id_prefix, self.next_id),
            accepted: Instant::now(),
            incoming,
        };
        let mut wake_worker = false;
        let refused = {
            let mut state = lock(&self.shared.state);
            if state.closing {
                Some((job, UNLOADED, "the component is stopping"))
            } else if state.waiting >= queue_size {
                Some((job, QUEUE_FULL, "the queue is full (component_post_queue_size)"))
            } else {
                state.waiting += 1;
                let busy_line = job.line.clone().filter(|line| state.followers.contains_key(line));
                if let Some(line) = busy_line {
                    state.followers.get_mut(&line).expect("busy line").push_back(job);
                    return;
                }
                if let Some(line) = &job.line {
                    state.followers.insert(line.clone(), VecDeque::new());
                }
                state.ready.push_back(job);
                wake_worker = state.idle_workers > 0;
                None
            }
        };
        match refused {
            None if wake_worker => self.shared.changed.notify_one(),
            None => {}
            Some((job, error, why)) => {
                let outcome = Outcome::Error(error, format!("not posted: {why}"));
                self.shared.push(complete(&job.incoming, outcome));
            }
        }
    }

    /// Takes every finished completion. Clears the wake-up first, under the same lock the
    /// workers signal under, so a completion arriving meanwhile re-arms it.
    pub fn drain(&self) -> Vec<Completion> {
        let mut completions = lock(&self.shared.completions);
        if completions.armed {
            completions.armed = false;
            self.shared.wakeup.clear();
        }
        std::mem::take(&mut completions.list)
    }

    /// Stops the pool: answers every queued and in-flight stanza with an error at once, then
    /// waits at most `grace` for the workers to exit. A worker still stuck in a request after
    /// that is detached; it exits by itself when its request times out, and its answer is
    /// dropped (the stanza was already answered). Returns the completions and how many workers
    /// were detached.
    pub fn close(&mut self, grace: Duration) -> (Vec<Completion>, usize) {
        let abandoned: Vec<Incoming> = {
            let mut state = lock(&self.shared.state);
            state.closing = true;
            state.waiting = 0;
            let mut abandoned: Vec<Incoming> = state.ready.drain(..).map(|job| job.incoming).collect();
            for (_, followers) in state.followers.drain() {
                abandoned.extend(followers.into_iter().map(|job| job.incoming));
            }
            abandoned.extend(state.in_flight.drain().map(|(_, incoming)| incoming));
            abandoned
        };
        self.shared.changed.notify_all();
        self.shared.closing.notify_all();
        let mut out = self.drain();
        out.extend(abandoned.iter().map(|incoming| {
            complete(incoming, Outcome::Error(UNLOADED, "the component stopped before the webhook answered".into()))
        }));

        let deadline = Instant::now() + grace;
        let mut state = lock(&self.shared.state);
        while state.live_workers > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self.shared.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        // A worker that counted itself out is past its last lock and about to return.
        let all_exited = state.live_workers == 0;
        drop(state);
        let mut detached = 0;
        for handle in self.workers.drain(..) {
            if all_exited || handle.is_finished() {
                let _ = handle.join();
            } else {
                detached += 1;
            }
        }
        (out, detached)
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.close(Duration::ZERO);
        }
    }
}

impl Shared {
    fn push(&self, completion: Completion) {
        let mut completions = lock(&self.completions);
        completions.list.push(completion);
        if !completions.armed {
            completions.armed = true;
            self.wakeup.signal();
        }
    }

    /// Waits up to `d` between retries; false if the pool started closing meanwhile.
    fn pause(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut state = lock(&self.state);
        while !state.closing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            state = self.closing.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        false
    }

    /// The next job, or None when this worker should exit.
    fn next_job(&self) -> Option<Job> {
        let mut state = lock(&self.state);
        loop {
            if state.closing || state.live_workers > state.wanted_workers {
                state.live_workers -= 1;
                drop(state);
                self.changed.notify_all();
                return None;
            }
            if let Some(job) = state.ready.pop_front() {
                state.waiting -= 1;
                state.in_flight.insert(job.id, job.incoming.clone());
                return Some(job);
            }
            state.idle_workers += 1;
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle_workers -= 1;
        }
    }

    /// Delivers a finished job's completion (unless `close` already answered it), then lets
    /// the next stanza of its line go. In that order: the next one's answer must not overtake.
    fn finish(&self, job: &Job, completion: Completion) {
        let mut state = lock(&self.state);
        if state.in_flight.remove(&job.id).is_some() {
            self.push(completion);
        }
        if let Some(line) = &job.line {
            match state.followers.get_mut(line).map(VecDeque::pop_front) {
                Some(Some(next)) => {
                    state.ready.push_back(next);
                    let wake_worker = state.idle_workers > 0;
                    drop(state);
                    if wake_worker {
                        self.changed.notify_one();
                    }
                }
                Some(None) => {
                    state.followers.remove(line);
                }
                None => {}
            }
        }
    }
}

fn worker(shared: &Shared) {
    let mut jitter = Jitter::new();
    while let Some(job) = shared.next_job() {
        let settings = Arc::clone(&lock(&shared.settings));
        // Encoded here rather than in `submit`: everything that need not touch Lua stays off
        // Prosody's main thread.
        let body = request::encode(&job.incoming);
        let delivery = Delivery {
            incoming: &job.incoming,
            body: &body,
            delivery_id: &job.delivery_id,
            deadline: job.accepted + settings.config.timeout,
        };
        let completion = catch_unwind(AssertUnwindSafe(|| {
            let outcome = deliver(&settings.agent, &settings.config, &delivery, &mut jitter, &|d| shared.pause(d));
            complete(&job.incoming, outcome)
        }))
        .unwrap_or_else(|_| {
            let mut completion = complete(&job.incoming, Outcome::Error(INTERNAL, String::new()));
            completion.log = Some((
                Level::Error,
                format!("{}: internal error (a bug in mod_component_http)", describe(&job.incoming)),
            ));
            completion
        });
        shared.finish(&job, completion);
    }
}

#[cfg(test)]
mod tests;
