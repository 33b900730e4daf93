//! The workers: tasks on the component's [`Reactor`](crate::transport::Reactor) (one native
//! thread for all of them), each taking a ready job, posting it, and settling what the answer
//! means — the stanza's outcome, or holding it while the webhook is unreachable. A worker
//! waiting for its answer holds no thread: only its task's state and its connection.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::*;
use crate::http::{post_once, Delivery, Verdict};
use crate::outcome::{chat_state, describe, mark_active, receipt, take_after, INTERNAL};
use crate::request;

/// How long after the idle connections are let go the free memory is given back: time for
/// their tasks to close them and free their buffers.
const TRIM_AFTER: Duration = Duration::from_millis(500);
/// First wait after a `429` without `Retry-After`; doubled per retry, with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// First wait before a stanza whose own connection failed tries again while others reach the
/// webhook; doubled per retry, with jitter.
const FIRST_RETRY: Duration = Duration::from_millis(50);

impl Shared {
    /// Starts `n` workers already counted as live and idle (see `offer_work`).
    pub(super) fn spawn_workers(self: &Arc<Self>, n: usize) {
        for _ in 0..n {
            let shared = Arc::clone(self);
            self.reactor.spawn(async move { run(&shared).await });
        }
    }

    /// Tops the pool up to the warm set.
    pub(super) fn start_warm_workers(self: &Arc<Self>) -> Result<(), String> {
        let start = {
            let mut state = lock(&self.state);
            let start = state.limits.warm_workers.saturating_sub(state.live_workers);
            state.live_workers += start;
            state.idle_workers += start;
            start
        };
        self.spawn_workers(start);
        Ok(())
    }

    /// The next job, or None when this worker should exit (closing, above the limit, or idle
    /// for `idle_timeout` beyond the warm set). `counted_idle`: this worker was counted idle by
    /// whoever started it.
    async fn next_job(&self, counted_idle: &mut bool) -> Option<Job> {
        let idle_since = Instant::now();
        let mut idle = std::mem::take(counted_idle);
        loop {
            // Registered before the lock goes, so a notification in between is not lost.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait = match self.take_job(idle, idle_since) {
                Ok(next) => return next,
                Err(wait) => wait,
            };
            idle = true;
            let _ = tokio::time::timeout(wait, changed).await;
        }
    }

    /// One look for work under the state lock: the job, or None when this worker should exit;
    /// or, when there is nothing for it yet, how long it may wait (counted idle meanwhile).
    /// `idle`: it was counted idle until now.
    fn take_job(&self, idle: bool, idle_since: Instant) -> Result<Option<Job>, Duration> {
        let mut state = lock(&self.state);
        if idle {
            state.idle_workers -= 1;
        }
        if state.closing || state.live_workers > state.limits.max_workers {
            state.live_workers -= 1;
            return Ok(None);
        }
        let may_take = state.outage.as_ref().is_none_or(|outage| outage.probe_due(Instant::now()));
        if may_take {
            if let Some(mut job) = state.ready.pop_front() {
                state.queued -= 1;
                if let Some(outage) = &mut state.outage {
                    outage.probe_in_flight = true;
                    job.probe = true;
                }
                let composing = if job.composing_sent {
                    Composing::Sent
                } else if state.limits.chat_states_wanted(&job.incoming) {
                    let at = job.accepted.checked_add(state.limits.chat_state_delay).unwrap_or(job.accepted);
                    self.wake_keeper_by(&mut state, at);
                    Composing::Due(at)
                } else {
                    Composing::NotWanted
                };
                state.in_flight.insert(
                    job.id,
                    InFlight { incoming: Arc::clone(&job.incoming), composing, line: job.line.clone(), stream: None },
                );
                return Ok(Some(job));
            }
        }
        let idle_for = idle_since.elapsed();
        if idle_for >= state.limits.idle_timeout && state.live_workers > state.limits.warm_workers {
            state.live_workers -= 1;
            let back_to_warm = state.live_workers == state.limits.warm_workers;
            drop(state);
            if back_to_warm {
                self.forget_idle_connections();
            }
            return Ok(None);
        }
        state.idle_workers += 1;
        Err(state.limits.idle_timeout.saturating_sub(idle_for).max(Duration::from_millis(1)))
    }

    /// After a burst: the connections the burst opened are closed (the warm workers open
    /// theirs again on their next request), and the memory the burst used is given back.
    pub(super) fn forget_idle_connections(&self) {
        self.settings().endpoint.client.forget_idle();
        // The connections close on the reactor's thread, when their tasks next run and find
        // their last handle gone; their buffers are free only then. Trimmed at once, the heap
        // kept the burst's memory (`bench/slowbot --senders 10000 --delay 5`: 532 MiB after
        // the burst, the floor 359; trimmed after the wait, 341).
        self.reactor.spawn(async {
            tokio::time::sleep(TRIM_AFTER).await;
            give_back_free_memory();
        });
    }

    /// One attempt, with everything that runs foreign or parsing code under a panic guard.
    async fn attempt(&self, job: &Job) -> Verdict {
        let attempt = async {
            let settings = self.settings();
            // Encoded here rather than in `submit`: everything that need not touch Lua stays
            // off Prosody's main thread.
            let body = request::body_for(&job.incoming, &settings.config.profile);
            let delivery = Delivery {
                incoming: &job.incoming,
                body: body.into(),
                delivery_id: &job.delivery_id,
                retry: job.attempts,
                deadline: job.deadline,
            };
            let started = Instant::now();
            let (verdict, status) = post_once(&settings.endpoint, &settings.config, &delivery).await;
            lock(&self.stats).attempt(status, started.elapsed(), job.attempts > 0);
            verdict
        };
        // Boxed: a worker waiting for work keeps only its small loop's state.
        Guarded(Box::pin(attempt)).await.unwrap_or_else(|| Verdict::Final(internal_error(&job.incoming)))
    }

    /// The stanza's outcome is known: answer it (unless `close` already did), update what we
    /// know about the webhook, then let the next stanza of its line go — in that order, so the
    /// next one's answer cannot overtake.
    pub(super) fn finish(self: &Arc<Self>, job: Job, outcome: Outcome, jitter: &mut Jitter) {
        let reached = !matches!(&outcome, Outcome::Error(e, _) if *e == crate::outcome::TIMED_OUT);
        let completion = self.settle(&job, outcome);
        let mut state = lock(&self.state);
        let in_flight = state.in_flight.remove(&job.id);
        let mut start = 0;
        // An outage ends before its first answer goes out, so Prosody reads "the webhook answers"
        // no later than that answer (both may come in one drain).
        if state.outage.is_some() {
            if reached {
                start = self.webhook_answers(&mut state);
            } else if job.probe {
                let window = state.limits.retry_window;
                if let Some(outage) = &mut state.outage {
                    outage.probe_failed(Instant::now(), None, jitter, window);
                }
                self.keeper.notify_one();
            }
        }
        if let Some(in_flight) = in_flight {
            let composing_sent = job.composing_sent || in_flight.composing == Composing::Sent;
            self.answer(&state.limits, &job, completion, composing_sent);
        }
        self.release_line(&mut state, job.line.as_deref());
        drop(state);
        self.spawn_workers(start);
    }

    /// The webhook answered: an outage ends, and everything held is released. Returns the
    /// workers to start.
    pub(super) fn webhook_answers(&self, state: &mut State) -> usize {
        let Some(outage) = state.outage.take() else { return 0 };
        let down_for = outage.since.elapsed().as_secs_f64();
        self.report_status(
            Level::Info,
            "The webhook answers".into(),
            format!("The webhook answers again after {down_for:.1} s; sending the {} held stanzas", state.queued),
        );
        let start = self.offer_work(state);
        self.changed.notify_waiters();
        start
    }

    /// The webhook is unreachable: put the job back in the queue, to be retried when a probe
    /// finds the webhook back, or answer it if its window or deadline ran out. It goes to the
    /// back, so the next probe is another stanza: one that always fails (say, one the webhook
    /// crashes on) cannot keep the outage going for everyone. Order per line is unaffected:
    /// only a line's head is ever in the queue.
    fn hold(&self, mut job: Job, outcome: Outcome, retry_after: Option<Duration>, jitter: &mut Jitter) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let Some(in_flight) = state.in_flight.remove(&job.id) else {
            return; // closed meanwhile, and answered by `close`
        };
        job.composing_sent |= in_flight.composing == Composing::Sent;
        let limits = state.limits;
        if limits.retry_window.is_zero() && state.outage.is_none() {
            // Nothing is held without a retry window: the failure is this stanza's answer, and no
            // outage begins. (One would answer every stanza after it with this failure without
            // posting it, and with nothing held there would be no probe to end it.)
            let completion = self.settle(&job, outcome);
            self.answer(&limits, &job, completion, job.composing_sent);
            self.release_line(&mut state, job.line.as_deref());
            return;
        }
        if let Outcome::Error(error, reason) = &outcome {
            let last_error = (error.clone(), reason.clone());
            match &mut state.outage {
                None => {
                    self.report_status(
                        Level::Warn,
                        format!("The webhook is unreachable since {}: {reason}", clock_time()),
                        format!(
                            "The webhook is unreachable ({reason}); holding stanzas for up to {} s ({}) and \
                             probing it",
                            limits.retry_window.as_secs_f64(),
                            limits.profile.option("retry_window")
                        ),
                    );
                    state.outage = Some(Outage::begin(now, last_error, retry_after, jitter, limits.retry_window));
                }
                Some(outage) => {
                    outage.last_error = last_error;
                    if job.probe {
                        outage.probe_failed(now, retry_after, jitter, limits.retry_window);
                    }
                }
            }
        }
        let held_since = *job.held_since.get_or_insert(now);
        let window_over = held_since.checked_add(limits.retry_window).is_none_or(|end| now >= end);
        let retries_over = limits.retries.is_some_and(|retries| job.attempts > retries);
        if now >= job.deadline {
            let completion = self.settle(&job, out_of_time(&outcome, limits.profile));
            self.answer(&limits, &job, completion, job.composing_sent);
            self.release_line(&mut state, job.line.as_deref());
        } else if window_over || retries_over {
            let completion = self.settle(&job, outcome);
            self.answer(&limits, &job, completion, job.composing_sent);
            self.release_line(&mut state, job.line.as_deref());
        } else {
            job.probe = false;
            state.queued += 1;
            state.ready.push_back(job);
        }
        drop(state);
        self.keeper.notify_one();
    }
}

impl Shared {
    /// Sends a job's completion, after its receipt if one is owed, with the chat states its
    /// sender expects: a chat reply carries `<active/>`; after a `<composing/>`, anything else
    /// is followed by a standalone one.
    pub(super) fn answer(&self, limits: &PoolLimits, job: &Job, settled: Settled, composing_sent: bool) {
        let Settled { mut completion, receipt, after } = settled;
        if let Some(receipt) = receipt {
            self.push(Completion { send: Some(receipt), log: None });
        }
        let replied_in_chat = limits.chat_states_wanted(&job.incoming) && mark_active(&mut completion, &job.incoming);
        let refused = self.push_reply(&job.incoming, completion, after, limits);
        if composing_sent && (!replied_in_chat || refused) {
            self.push(Completion { send: Some(chat_state(&job.incoming, "active")), log: None });
        }
    }
}

/// The time of day (UTC), for the module's status.
fn clock_time() -> String {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02} UTC", seconds / 3600 % 24, seconds / 60 % 60, seconds % 60)
}

/// A stanza's outcome made what its sender gets: the completion, the XEP-0184 receipt owed
/// before it, and the messages sent right after it (a file's caption, say).
pub(super) struct Settled {
    completion: Completion,
    receipt: Option<crate::stanza::Element>,
    after: Vec<crate::stanza::Element>,
}

impl Shared {
    /// The outcome counted and made a completion, with the receipt it owes (its id made from
    /// the job's delivery id, unique to this stanza).
    pub(super) fn settle(&self, job: &Job, mut outcome: Outcome) -> Settled {
        lock(&self.stats).outcome(&outcome);
        let receipt = receipt(&job.incoming, &outcome, &format!("{}-receipt", job.delivery_id));
        let after = take_after(&job.incoming, &mut outcome);
        Settled { completion: completion_of(job, outcome), receipt, after }
    }
}

/// The outcome made a completion, under a panic guard; error log lines say how many attempts
/// it took, so retried failures are visible.
fn completion_of(job: &Job, outcome: Outcome) -> Completion {
    let outcome = match outcome {
        Outcome::Error(error, reason) if job.attempts > 1 => {
            Outcome::Error(error, format!("{reason} (after {} attempts)", job.attempts))
        }
        other => other,
    };
    catch_unwind(AssertUnwindSafe(|| complete(&job.incoming, outcome))).unwrap_or_else(|_| {
        let mut completion = Completion { send: None, log: None };
        completion.log =
            Some((Level::Error, format!("{}: internal error (a bug in mod_component_http)", describe(&job.incoming))));
        completion
    })
}

/// The deadline, not the failure, ended it: timed out, with the failure for the log.
pub(super) fn out_of_time(last: &Outcome, profile: Profile) -> Outcome {
    let last = match last {
        Outcome::Error(_, reason) => reason.as_str(),
        _ => "none",
    };
    Outcome::Error(
        crate::outcome::TIMED_OUT,
        format!("{} ran out while the webhook was unreachable (last failure: {last})", profile.option("timeout")),
    )
}

fn internal_error(incoming: &Incoming) -> Outcome {
    Outcome::Error(
        INTERNAL,
        format!("internal error (a bug in mod_component_http) while posting {}", describe(incoming)),
    )
}

/// glibc keeps freed memory in its arenas until trimmed: measured with a thread per request,
/// 1,000 requests in flight left Prosody 44 MiB larger after the burst. With every request on
/// the reactor's thread there is one arena to trim, but a burst's buffers still leave holes
/// in it; `malloc_trim` returns them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_free_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim only releases free heap memory; it takes no pointers of ours.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_free_memory() {}

/// A future whose panics end it with `None` instead of unwinding through the worker.
pub(super) struct Guarded<F>(pub(super) Pin<Box<F>>);

impl<F: Future> Future for Guarded<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Some(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }
}

/// Keeps the live-worker count right even if this task unwinds or is dropped.
struct Counted<'a>(&'a Shared, bool);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if self.1 {
            lock(&self.0.state).live_workers -= 1;
        }
    }
}

/// The main loop of the component, one per worker task: take the next ready stanza, post
/// it (`attempt`, which ends in `http::post_once`), then settle what the answer means —
/// `finish` (its outcome), `hold` (the webhook is unreachable) or a wait for `Retry-After` and
/// another attempt. Everything else (the keeper, `submit`, `drain`) only feeds or empties it.
async fn run(shared: &Arc<Shared>) {
    let mut counted = Counted(shared, true);
    let mut jitter = Jitter::new();
    let mut counted_idle = true;
    loop {
        let Some(mut job) = shared.next_job(&mut counted_idle).await else {
            counted.1 = false; // next_job counted this worker out
            return;
        };
        loop {
            let verdict = shared.attempt(&job).await;
            job.attempts += 1;
            let (outcome, wait) = match verdict {
                Verdict::Final(outcome) => {
                    shared.finish(job, outcome, &mut jitter);
                    break;
                }
                Verdict::Stream(answer) => {
                    Box::pin(shared.stream(job, answer, &mut jitter)).await;
                    break;
                }
                Verdict::Unreachable(outcome, retry_after) => {
                    shared.hold(job, outcome, retry_after, &mut jitter);
                    break;
                }
                // Asked to slow down: this stanza waits, the others carry on.
                Verdict::RateLimited(outcome, retry_after) => (
                    outcome,
                    retry_after
                        .unwrap_or_else(|| jitter.spread(FIRST_BACKOFF.saturating_mul(1 << job.attempts.min(16)))),
                ),
                // Its own connection failed while other requests reach the webhook: no outage,
                // this stanza alone tries again soon.
                Verdict::Retry(outcome) => {
                    if job.probe || lock(&shared.state).outage.is_some() {
                        // Held like any failure while the webhook is found unreachable anyway.
                        shared.hold(job, outcome, None, &mut jitter);
                        break;
                    }
                    (outcome, jitter.spread(FIRST_RETRY.saturating_mul(1 << job.attempts.min(16))))
                }
            };
            let (retries, left) = {
                let state = lock(&shared.state);
                (state.limits.retries, job.deadline.saturating_duration_since(Instant::now()))
            };
            let may_retry = retries.is_none_or(|retries| job.attempts <= retries) && wait < left;
            if !may_retry {
                shared.finish(job, outcome, &mut jitter);
            } else if shared.pause(wait).await {
                continue;
            }
            // Closing: `close` answered it.
            break;
        }
    }
}
