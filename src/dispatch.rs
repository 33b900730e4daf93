//! The queue, the worker pool and the HTTP agent of one component.
//!
//! `submit` and `drain` are called from Prosody's main thread and only take short locks;
//! everything slow — HTTP, reading answers, parsing JSON and XML, deciding the outcome — runs
//! on the workers. Every submitted stanza yields exactly one [`Completion`]: from its worker, or
//! from `submit` itself when the queue is full, or from `close` when the component stops first.

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::request;
use crate::response::{
    complete, describe, interpret, Completion, HttpAnswer, Level, Outcome, BAD_REPLY, CONNECTION_FAILURE, INTERNAL,
    QUEUE_FULL, TIMED_OUT, UNLOADED,
};
use crate::stanza::Incoming;
use crate::wakeup::Wakeup;

struct Job {
    id: u64,
    incoming: Incoming,
    body: Vec<u8>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Stanzas a worker is posting, kept so `close` can answer them without waiting.
    in_flight: HashMap<u64, Incoming>,
    closing: bool,
    live_workers: usize,
}

#[derive(Default)]
struct Completions {
    list: Vec<Completion>,
    /// A wake-up byte is pending for the current batch.
    armed: bool,
}

struct Shared {
    config: Config,
    agent: ureq::Agent,
    state: Mutex<State>,
    /// Signalled when a job is queued, when closing, and when a worker exits.
    changed: Condvar,
    completions: Mutex<Completions>,
    wakeup: Wakeup,
}

pub struct Dispatcher {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    next_id: u64,
}

/// A poisoned lock only means a worker panicked while holding it; the data is still usable
/// (every panic is caught and answered), so carry on rather than take Prosody down.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Dispatcher {
    pub fn new(config: Config) -> std::io::Result<Dispatcher> {
        let agent = build_agent(&config);
        let workers = config.workers;
        let shared = Arc::new(Shared {
            config,
            agent,
            state: Mutex::new(State { live_workers: workers, ..State::default() }),
            changed: Condvar::new(),
            completions: Mutex::new(Completions::default()),
            wakeup: Wakeup::new()?,
        });
        let mut handles = Vec::with_capacity(workers);
        for n in 0..workers {
            let for_worker = Arc::clone(&shared);
            let spawned =
                std::thread::Builder::new().name(format!("component_http-{n}")).spawn(move || worker(&for_worker));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    // Stop the ones already started before giving up.
                    let mut partial = Dispatcher { shared, workers: handles, next_id: 0 };
                    lock(&partial.shared.state).live_workers = partial.workers.len();
                    partial.close(Duration::from_secs(1));
                    return Err(e);
                }
            }
        }
        Ok(Dispatcher { shared, workers: handles, next_id: 0 })
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn fd(&self) -> RawFd {
        self.shared.wakeup.fd()
    }

    /// Queues a stanza for posting; never blocks on the network.
    pub fn submit(&mut self, incoming: Incoming) {
        let body = request::encode(&incoming);
        self.next_id += 1;
        let job = Job { id: self.next_id, incoming, body };
        let refused = {
            let mut state = lock(&self.shared.state);
            if state.closing {
                Some((job, UNLOADED, "the component is stopping"))
            } else if state.queue.len() >= self.shared.config.queue_size {
                Some((job, QUEUE_FULL, "the queue is full (component_post_queue_size)"))
            } else {
                state.queue.push_back(job);
                None
            }
        };
        match refused {
            None => self.shared.changed.notify_one(),
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
    /// dropped (the stanza was already answered).
    pub fn close(&mut self, grace: Duration) -> (Vec<Completion>, usize) {
        let abandoned: Vec<Incoming> = {
            let mut state = lock(&self.shared.state);
            state.closing = true;
            let mut abandoned: Vec<Incoming> = state.queue.drain(..).map(|job| job.incoming).collect();
            abandoned.extend(state.in_flight.drain().map(|(_, incoming)| incoming));
            abandoned
        };
        self.shared.changed.notify_all();
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
        drop(state);
        let mut detached = 0;
        for handle in self.workers.drain(..) {
            if handle.is_finished() {
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
}

fn build_agent(config: &Config) -> ureq::Agent {
    ureq::Agent::config_builder()
        // Non-2xx answers are outcomes to map, not transport errors.
        .http_status_as_error(false)
        // A redirected POST would silently become a GET; report 3xx as an error instead.
        .max_redirects(0)
        // Like Prosody's own HTTP client, ignore *_PROXY environment variables.
        .proxy(None)
        // Keep one idle connection per worker so steady traffic never reconnects.
        .max_idle_connections(config.workers.max(10))
        .max_idle_connections_per_host(config.workers)
        // Per-phase deadlines: a global timeout would cost a timer thread per connection.
        .timeout_resolve(Some(config.connect_timeout))
        .timeout_connect(Some(config.connect_timeout))
        .timeout_send_request(Some(config.timeout))
        .timeout_send_body(Some(config.timeout))
        .timeout_recv_response(Some(config.timeout))
        .timeout_recv_body(Some(config.timeout))
        .user_agent(concat!("mod_component_http/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn worker(shared: &Shared) {
    loop {
        let job = {
            let mut state = lock(&shared.state);
            loop {
                if state.closing {
                    state.live_workers -= 1;
                    drop(state);
                    shared.changed.notify_all();
                    return;
                }
                if let Some(job) = state.queue.pop_front() {
                    state.in_flight.insert(job.id, job.incoming.clone());
                    break job;
                }
                state = shared.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let completion =
            catch_unwind(AssertUnwindSafe(|| complete(&job.incoming, post(shared, &job)))).unwrap_or_else(|_| {
                let mut completion = complete(&job.incoming, Outcome::Error(INTERNAL, String::new()));
                completion.log = Some((
                    Level::Error,
                    format!("{}: internal error (a bug in mod_component_http)", describe(&job.incoming)),
                ));
                completion
            });
        // If `close` already answered this stanza, its completion is dropped here.
        let still_ours = lock(&shared.state).in_flight.remove(&job.id).is_some();
        if still_ours {
            shared.push(completion);
        }
    }
}

fn post(shared: &Shared, job: &Job) -> Outcome {
    let config = &shared.config;
    let mut request = shared.agent.post(&config.url).header("Content-Type", "application/json");
    if let Some(authorization) = &config.authorization {
        request = request.header("Authorization", authorization);
    }
    let mut response = match request.send(&job.body[..]) {
        Ok(response) => response,
        Err(e) => return transport_error(e),
    };
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    // Read to the end: servers such as `php -S` send no Content-Length and close instead.
    match response.body_mut().with_config().limit(config.max_reply_size).read_to_vec() {
        Ok(body) => interpret(&job.incoming, &HttpAnswer { status, content_type, body }),
        Err(ureq::Error::BodyExceedsLimit(limit)) => Outcome::Error(
            BAD_REPLY,
            format!("webhook reply refused: larger than {limit} bytes (component_post_max_reply_size)"),
        ),
        Err(e) => transport_error(e),
    }
}

fn transport_error(error: ureq::Error) -> Outcome {
    match error {
        ureq::Error::Timeout(phase) => {
            Outcome::Error(TIMED_OUT, format!("webhook did not answer in time (timed out in phase {phase})"))
        }
        other => Outcome::Error(CONNECTION_FAILURE, format!("could not reach the webhook: {other}")),
    }
}

#[cfg(test)]
mod tests;
