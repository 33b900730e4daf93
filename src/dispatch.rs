//! The queue, the elastic worker pool and the HTTP client of one component.
//!
//! `submit` and `drain` are called from Prosody's main thread and only take short locks;
//! everything slow — HTTP, retries, reading answers, parsing JSON and XML, deciding the
//! outcome — runs on worker threads. Every submitted stanza yields exactly one [`Completion`]:
//! from its worker, from the keeper (its deadline or retry window ran out while it waited),
//! from `submit` itself when the queue is full, or from `close` when the component stops first.
//!
//! Concurrency follows demand: a stanza that is ready and finds no idle worker starts one, up
//! to `max_in_flight`; workers beyond `warm_workers` exit after `idle_timeout` without work.
//!
//! Ordering: with `ordered`, stanzas from one sender to one component JID form a line: only its
//! head is ready or in flight, the rest wait in `followers` and move to the back of the ready
//! queue one at a time as their predecessor completes. Different lines proceed concurrently.
//!
//! Outages: see `outage.rs`. While the webhook is unreachable, ready stanzas stay queued (those
//! that failed go back to the queue) and only the probe is posted.

mod jitter;
mod keeper;
mod outage;
mod stats;
mod stream;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::config::{Config, Profile};
use crate::http::{Endpoint, Roots};
use crate::outcome::{complete, Completion, Level, Outcome, QUEUE_FULL, UNLOADED};
use crate::stanza::{Element, Incoming};
use crate::transport::Reactor;
use crate::wakeup::Wakeup;
use jitter::Jitter;
use outage::Outage;
pub use stats::{Stats, LATENCY_BUCKETS};
use tokio::sync::Notify;

struct Job {
    id: u64,
    /// The ordering line this job belongs to (sender and recipient), when ordered.
    line: Option<String>,
    delivery_id: String,
    /// `component_post_timeout` after the stanza was accepted: queueing, holding during an
    /// outage and every attempt included, so nothing waits longer than the timeout.
    deadline: Instant,
    accepted: Instant,
    /// Attempts made so far.
    attempts: u32,
    /// When an attempt first found the webhook unreachable: the retry window runs from here.
    held_since: Option<Instant>,
    /// This job is the one attempt allowed during an outage.
    probe: bool,
    /// `<composing/>` was sent to its sender (kept across holds during an outage).
    composing_sent: bool,
    /// Shared with its [`InFlight`] entry while posted: a stanza is held once, not twice.
    incoming: Arc<Incoming>,
}

/// A stanza a worker is posting, kept so `close` can answer it without waiting, and so the
/// keeper can tell its sender the bot is composing.
struct InFlight {
    incoming: Arc<Incoming>,
    composing: Composing,
    /// Its sender's line, if it keeps one: the stanzas waiting behind it.
    line: Option<String>,
    /// Set once its answer turned out to be a stream: the answer as it is being written.
    stream: Option<stream::Slot>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Composing {
    NotWanted,
    Due(Instant),
    Sent,
}

/// What workers read per job; replaced as a whole by `reconfigure`.
struct Settings {
    config: Config,
    endpoint: Endpoint,
}

/// The settings workers use now, and the ones they replaced that a worker may still be posting
/// with (after `reconfigure`, or a fresh client after a burst): `close` shuts every one of
/// their clients down, so no request outlives the component.
struct Clients {
    current: Arc<Settings>,
    /// Alive while a worker still holds one for its request.
    replaced: Vec<Weak<Settings>>,
    /// `close` shut them down; a client installed after that is shut down at once.
    shut: bool,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Job>,
    /// Lines with a job ready or in flight, and the jobs waiting behind it.
    followers: HashMap<String, VecDeque<Job>>,
    /// Stanzas queued: accepted and not yet taken by a worker (`ready` plus all followers).
    /// Bounded by `queue_size`. With those in flight, they make [`Dispatcher::pending`].
    queued: usize,
    /// Stanzas a worker is posting.
    in_flight: HashMap<u64, InFlight>,
    /// Set while the webhook is unreachable.
    outage: Option<Outage>,
    closing: bool,
    /// Worker threads alive, and how many of them wait for work. A new ready job wakes an idle
    /// worker only when there are more idle workers than ready jobs (each woken worker takes
    /// one); otherwise it starts a worker.
    live_workers: usize,
    idle_workers: usize,
    /// The keeper thread runs (cleared when it exits).
    keeper_alive: bool,
    /// When the keeper plans its next round, while it sleeps. Whatever makes something due
    /// earlier (a stanza becoming ready, a `<composing/>` to send) wakes it: see
    /// [`Shared::wake_keeper_by`].
    keeper_wakes_at: Option<Instant>,
    /// The earliest wake-up asked for while the keeper was not asleep: it drops the lock in
    /// its round to poll the streams, and takes this into account before it sleeps.
    keeper_missed: Option<Instant>,
    limits: PoolLimits,
}

/// The pool's bounds, copied from the configuration so the hot paths need only one lock.
#[derive(Default, Clone, Copy)]
struct PoolLimits {
    max_workers: usize,
    warm_workers: usize,
    idle_timeout: Duration,
    queue_size: usize,
    ordered: bool,
    timeout: Duration,
    retry_window: Duration,
    retries: Option<u32>,
    chat_states: bool,
    chat_state_delay: Duration,
    /// For the names of options in log lines.
    profile: Profile,
}

impl PoolLimits {
    fn of(config: &Config) -> PoolLimits {
        PoolLimits {
            max_workers: config.max_in_flight,
            warm_workers: config.warm_workers,
            idle_timeout: config.idle_timeout,
            queue_size: config.queue_size,
            ordered: config.ordered,
            timeout: config.timeout,
            retry_window: config.retry_window,
            retries: config.retries,
            chat_states: config.chat_states,
            chat_state_delay: config.chat_state_delay,
            profile: config.profile,
        }
    }

    /// Whether the sender of `incoming` gets chat states: the module sends them
    /// (`chat_states`) and the sender announced it takes them
    /// ([`crate::stanza::Incoming::chat_states`]).
    fn chat_states_wanted(&self, incoming: &Incoming) -> bool {
        self.chat_states && incoming.chat_states
    }
}

#[derive(Default)]
struct Completions {
    list: Vec<Completion>,
    /// A wake-up byte is pending for the current batch.
    armed: bool,
    /// The webhook's state changed (an outage began or ended): what the module's status
    /// should say now, until the shim takes it.
    status: Option<(Level, String)>,
    /// Conversations a streamed answer is being written to, each with the messages held
    /// until its last stanza (see [`stream`]).
    chats: HashMap<stream::Chat, Vec<Completion>>,
    /// Messages held in `chats`, all conversations together: answers and pushes alike, at
    /// most `queue_size` (see `Shared::push_reply` and `Dispatcher::hold`).
    held: usize,
}

struct Shared {
    clients: Mutex<Clients>,
    state: Mutex<State>,
    /// Idle workers wait here for a ready job (or for closing).
    changed: Notify,
    /// The keeper waits here; signalled when an outage starts or ends, on reconfiguration
    /// and when closing.
    keeper: Condvar,
    /// Signalled only when closing: ends the waits of workers honouring a `Retry-After`.
    closing: Notify,
    /// The thread every worker runs on, as a task (see [`crate::transport`]).
    reactor: Reactor,
    completions: Mutex<Completions>,
    wakeup: Wakeup,
    stats: Mutex<Stats>,
    /// Called at the points of a stream's life a test wants to pause or break it at.
    #[cfg(test)]
    hook: Mutex<Option<TestHook>>,
}

/// A test's hook: see [`stream::Hook`] for where it is called.
#[cfg(test)]
type TestHook = Arc<dyn Fn(&Shared, stream::Hook) + Send + Sync>;

/// The queue, the worker pool and the HTTP client of one component: what Lua's client holds.
pub struct Dispatcher {
    shared: Arc<Shared>,
    next_id: u64,
    /// Random per pool, so delivery ids stay unique across restarts of Prosody.
    id_prefix: u64,
}

/// Figures for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// Stanzas accepted and not yet posted (`State::queued`).
    pub queued: usize,
    /// Requests being posted.
    pub in_flight: usize,
    /// Worker threads alive.
    pub workers: usize,
    /// Worker threads waiting for work.
    pub idle_workers: usize,
    /// Whether the webhook is unreachable (an outage is going on).
    pub endpoint_down: bool,
}

/// A poisoned lock only means a thread panicked while holding it; the data is still usable
/// (every panic is caught and answered), so carry on rather than take Prosody down.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Dispatcher {
    /// Starts the warm workers and the keeper for `config`; an error names what could not start.
    pub fn new(config: Config) -> Result<Dispatcher, String> {
        let (roots, notes) = Roots::load(&config)?;
        let endpoint = Endpoint::new(&config, &roots)?;
        let limits = PoolLimits::of(&config);
        let shared = Arc::new(Shared {
            clients: Mutex::new(Clients {
                current: Arc::new(Settings { config, endpoint }),
                replaced: Vec::new(),
                shut: false,
            }),
            state: Mutex::new(State { limits, ..State::default() }),
            changed: Notify::new(),
            keeper: Condvar::new(),
            closing: Notify::new(),
            reactor: Reactor::start().map_err(|e| format!("could not start the HTTP thread: {e}"))?,
            completions: Mutex::new(Completions::default()),
            wakeup: Wakeup::new().map_err(|e| format!("could not create the wake-up socket: {e}"))?,
            stats: Mutex::new(Stats::default()),
            #[cfg(test)]
            hook: Mutex::new(None),
        });
        shared.note(notes);
        let mut dispatcher = Dispatcher { shared, next_id: 0, id_prefix: Jitter::new().next_u64() };
        let started = keeper::start(&dispatcher.shared).and_then(|()| dispatcher.shared.start_warm_workers());
        if let Err(e) = started {
            dispatcher.close();
            return Err(e);
        }
        Ok(dispatcher)
    }

    /// The configuration in use.
    pub fn config(&self) -> Config {
        self.shared.settings().config.clone()
    }

    /// The descriptor Prosody watches: readable when completions wait.
    pub fn fd(&self) -> RawFd {
        self.shared.wakeup.fd()
    }

    /// Stanzas accepted and not yet answered (queued or in flight).
    pub fn pending(&self) -> usize {
        let state = lock(&self.shared.state);
        state.queued + state.in_flight.len()
    }

    /// The counters so far (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Threads that may still produce completions: the workers and the keeper. Once this is 0
    /// after `close`, every completion there will ever be is in the list.
    #[cfg(test)]
    fn threads_alive(&self) -> usize {
        let state = lock(&self.shared.state);
        state.live_workers + usize::from(state.keeper_alive)
    }

    /// Live figures, for the statistics and tests.
    pub fn figures(&self) -> Figures {
        let state = lock(&self.shared.state);
        Figures {
            queued: state.queued,
            in_flight: state.in_flight.len(),
            workers: state.live_workers,
            idle_workers: state.idle_workers,
            endpoint_down: state.outage.is_some(),
        }
    }

    /// Applies a new configuration without disturbing what is queued or in flight: used when the
    /// module is reloaded, so that nothing pending is lost and order per sender holds. The CA
    /// certificates are read again (outside every lock); open connections are kept when the URL
    /// and the certificates are the same.
    pub fn reconfigure(&mut self, config: Config) -> Result<(), String> {
        let (roots, notes) = Roots::load(&config)?;
        let endpoint = {
            let current = self.shared.settings();
            if current.config.url == config.url && current.endpoint.roots == roots {
                current.endpoint.clone()
            } else {
                Endpoint::new(&config, &roots)?
            }
        };
        self.shared.note(notes);
        lock(&self.shared.state).limits = PoolLimits::of(&config);
        self.shared.install(Settings { config, endpoint }, None);
        // Surplus workers notice the new limits when they next look for work.
        self.shared.changed.notify_waiters();
        self.shared.keeper.notify_one();
        self.shared.start_warm_workers()
    }

    /// Queues a stanza for posting; never blocks on the network.
    pub fn submit(&mut self, mut incoming: Incoming) {
        self.next_id += 1;
        // The XML was written into a buffer grown by doubling: up to twice its length while it
        // waits, unless given back (in place or by remapping: no copy of the stanza).
        incoming.xml.shrink_to_fit();
        let accepted = Instant::now();
        let mut state = lock(&self.shared.state);
        let limits = state.limits;
        let job = Job {
            id: self.next_id,
            line: limits.ordered.then(|| {
                format!("{}\u{0}{}", incoming.from.as_deref().unwrap_or(""), incoming.to.as_deref().unwrap_or(""))
            }),
            delivery_id: format!("{:016x}-{}", self.id_prefix, self.next_id),
            deadline: accepted.checked_add(limits.timeout).unwrap_or(accepted),
            accepted,
            attempts: 0,
            held_since: None,
            probe: false,
            composing_sent: false,
            incoming: Arc::new(incoming),
        };
        let refused = if state.closing {
            Some((UNLOADED, "the component is stopping".to_owned()))
        } else if state.queued >= limits.queue_size {
            Some((QUEUE_FULL, format!("the queue is full ({})", limits.profile.option("queue_size"))))
        } else {
            None
        };
        lock(&self.shared.stats).posted(&job.incoming.name);
        if let Some((error, why)) = refused {
            drop(state);
            self.shared.push_outcome(&job.incoming, Outcome::Error(error, format!("not posted: {why}")));
            return;
        }
        state.queued += 1;
        if let Some(line) = &job.line {
            if state.followers.contains_key(line) {
                // Answered by its deadline even if the stanza before it takes longer.
                let due = keeper::expiry_now(&job, &state);
                self.shared.wake_keeper_by(&mut state, due);
                state.followers.get_mut(line).expect("looked up under this lock").push_back(job);
                return;
            }
            state.followers.insert(line.clone(), VecDeque::new());
        }
        let due = keeper::expiry_now(&job, &state);
        self.shared.wake_keeper_by(&mut state, due);
        state.ready.push_back(job);
        let spawn = self.shared.offer_work(&mut state);
        drop(state);
        self.shared.spawn_workers(spawn);
    }

    /// Answers a stanza at once without posting it (it could not be read).
    pub fn refuse(&self, incoming: &Incoming, outcome: Outcome) {
        lock(&self.shared.stats).posted(&incoming.name);
        self.shared.push_outcome(incoming, outcome);
    }

    /// A stanza pushed by the bot, if it is a message for a conversation a streamed answer is
    /// being written to: held, to be sent after that answer's last stanza (then `Some(true)`),
    /// or refused because `queue_size` messages wait behind streams already, in all
    /// conversations together (`Some(false)`). `None`:
    /// send it now. `stanza` is only called when something streams.
    pub fn hold(&self, stanza: impl FnOnce() -> Result<crate::stanza::Element, String>) -> Option<bool> {
        if lock(&self.shared.completions).chats.is_empty() {
            return None;
        }
        let completion = Completion { send: Some(stanza().ok()?), log: None };
        let chat = stream::chat_of_completion(&completion)?;
        let queue_size = lock(&self.shared.state).limits.queue_size;
        let mut completions = lock(&self.shared.completions);
        let full = completions.held >= queue_size;
        let held = completions.chats.get_mut(&chat)?;
        if full {
            return Some(false);
        }
        held.push(completion);
        completions.held += 1;
        Some(true)
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

    /// Like `drain`, and the module's new status if the webhook's state changed.
    pub fn drain_with_status(&self) -> (Vec<Completion>, Option<(Level, String)>) {
        let list = self.drain();
        let status = if list.is_empty() { None } else { lock(&self.shared.completions).status.take() };
        (list, status)
    }

    /// Stops the pool without waiting for anything: answers every queued and in-flight stanza
    /// with an error, interrupts the requests in flight (their connections are shut down) and
    /// lets the workers exit by themselves. Returns the completions.
    pub fn close(&mut self) -> Vec<Completion> {
        let (abandoned, streams) = {
            let mut state = lock(&self.shared.state);
            state.closing = true;
            state.queued = 0;
            state.outage = None;
            let mut abandoned: Vec<Arc<Incoming>> = state.ready.drain(..).map(|job| job.incoming).collect();
            for (_, followers) in state.followers.drain() {
                abandoned.extend(followers.into_iter().map(|job| job.incoming));
            }
            let mut streams = Vec::new();
            for (_, in_flight) in state.in_flight.drain() {
                match in_flight.stream {
                    Some(slot) => streams.push((in_flight.incoming, slot)),
                    None => abandoned.push(in_flight.incoming),
                }
            }
            (abandoned, streams)
        };
        // A stream being written keeps its text so far, marked as cut off. (One its worker is
        // ending is found ended, its last stanza queued.)
        for (incoming, slot) in streams {
            let taken = lock(&slot).take();
            if let Some(streaming) = taken {
                let stopped = crate::stream::StreamEnd::Cut(crate::stream::Cut::stopped());
                self.shared.end_stream(&incoming, streaming, &stopped);
            }
        }
        self.shared.release_every_chat();
        self.shared.changed.notify_waiters();
        self.shared.closing.notify_waiters();
        self.shared.keeper.notify_all();
        self.shared.shut_down_clients();
        for incoming in &abandoned {
            let outcome = Outcome::Error(UNLOADED, "the component stopped before the webhook answered".into());
            self.shared.push_outcome(incoming, outcome);
        }
        self.drain()
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        if !lock(&self.shared.state).closing {
            self.close();
        }
    }
}

impl Shared {
    /// The settings a request starts with.
    fn settings(&self) -> Arc<Settings> {
        Arc::clone(&lock(&self.clients).current)
    }

    /// Makes `new` the settings requests start with (if `over` is given, only if those are
    /// still current), keeping the replaced ones' clients reachable for `close` while a worker
    /// still uses them.
    fn install(&self, new: Settings, over: Option<&Arc<Settings>>) {
        let mut clients = lock(&self.clients);
        if over.is_some_and(|expected| !Arc::ptr_eq(expected, &clients.current)) {
            return;
        }
        if clients.shut {
            new.endpoint.client.shut_down();
        }
        let old = std::mem::replace(&mut clients.current, Arc::new(new));
        clients.replaced.retain(|settings| settings.strong_count() > 0);
        clients.replaced.push(Arc::downgrade(&old));
        drop(clients);
        drop(old); // its idle connections close here, unless a worker still holds it
    }

    /// Interrupts every request in flight, on the current client and on any it replaced, and
    /// closes their idle connections.
    fn shut_down_clients(&self) {
        let clients: Vec<crate::transport::Client> = {
            let mut clients = lock(&self.clients);
            clients.shut = true;
            let replaced = clients.replaced.iter().filter_map(Weak::upgrade);
            std::iter::once(Arc::clone(&clients.current)).chain(replaced).map(|s| s.endpoint.client.clone()).collect()
        };
        for client in clients {
            client.shut_down();
        }
    }

    /// Counts an outcome and queues its completion.
    fn push_outcome(&self, incoming: &Incoming, outcome: Outcome) {
        lock(&self.stats).outcome(&outcome);
        self.push(complete(incoming, outcome));
    }

    /// Log lines for the operator (about the configuration, say).
    fn note(&self, notes: Vec<(Level, String)>) {
        for note in notes {
            self.push(Completion { send: None, log: Some(note) });
        }
    }

    /// The webhook's state changed: log it, and have the module's status say it.
    fn report_status(&self, level: Level, status: String, log: String) {
        let mut completions = lock(&self.completions);
        completions.status = Some((level, status));
        completions.list.push(Completion { send: None, log: Some((level, log)) });
        if !completions.armed {
            completions.armed = true;
            self.wakeup.signal();
        }
    }

    /// Queues a completion for the main thread; a message for a conversation a streamed answer
    /// is being written to waits until that answer's last stanza.
    fn push(&self, completion: Completion) {
        let mut completions = lock(&self.completions);
        let chat = if completions.chats.is_empty() { None } else { stream::chat_of_completion(&completion) };
        if let Some(held) = chat.and_then(|chat| completions.chats.get_mut(&chat)) {
            held.push(completion);
            completions.held += 1;
            return;
        }
        completions.list.push(completion);
        self.arm(&mut completions);
    }

    /// Queues the answer to `incoming` and the messages that follow it. If they would wait
    /// behind a streamed answer and that would make more than `queue_size` messages wait
    /// behind streams in all, none is sent: the sender gets `wait/resource-constraint` at once
    /// (an error has no body: it never waits), and the log says why. True if refused.
    fn push_reply(
        &self,
        incoming: &Incoming,
        completion: Completion,
        after: Vec<Element>,
        limits: &PoolLimits,
    ) -> bool {
        let mut completions = lock(&self.completions);
        let chat = if completions.chats.is_empty() { None } else { stream::chat_of_completion(&completion) };
        let Some(chat) = chat.filter(|chat| completions.chats.contains_key(chat)) else {
            drop(completions);
            self.push(completion);
            for message in after {
                self.push(Completion { send: Some(message), log: None });
            }
            return false;
        };
        let count = 1 + after.len();
        if completions.held.saturating_add(count) > limits.queue_size {
            drop(completions);
            let why = format!(
                "answer not sent: {} messages wait for streamed answers to end already ({})",
                limits.queue_size,
                limits.profile.option("queue_size")
            );
            self.push(complete(incoming, Outcome::Error(QUEUE_FULL, why)));
            return true;
        }
        let held = completions.chats.entry(chat).or_default();
        held.push(completion);
        held.extend(after.into_iter().map(|message| Completion { send: Some(message), log: None }));
        completions.held += count;
        false
    }

    /// Makes sure a wake-up byte is pending for what was just queued.
    fn arm(&self, completions: &mut Completions) {
        if !completions.armed {
            completions.armed = true;
            self.wakeup.signal();
        }
    }

    /// Makes sure workers will take the ready jobs: wakes idle ones, or returns how many
    /// workers to start (counted as live and idle already, so concurrent calls agree). While
    /// the webhook is unreachable only one job may go, as the probe, and only when it is due.
    fn offer_work(&self, state: &mut State) -> usize {
        if state.closing || state.ready.is_empty() {
            return 0;
        }
        let wanted = match &state.outage {
            None => state.ready.len(),
            Some(outage) if outage.probe_due(Instant::now()) => 1,
            Some(_) => return 0,
        };
        if state.idle_workers > 0 {
            if wanted == 1 {
                self.changed.notify_one();
            } else {
                self.changed.notify_waiters();
            }
        }
        let unserved = wanted.saturating_sub(state.idle_workers);
        let start = unserved.min(state.limits.max_workers.saturating_sub(state.live_workers));
        state.live_workers += start;
        state.idle_workers += start;
        start
    }

    /// Something falls due at `at`: wake the keeper if it planned to sleep past that. Called
    /// under the state lock wherever a deadline appears that the keeper has not seen, so the
    /// deadline is hard (the keeper's sleep is no upper bound on lateness).
    fn wake_keeper_by(&self, state: &mut State, at: Instant) {
        match state.keeper_wakes_at {
            Some(planned) if at < planned => {
                state.keeper_wakes_at = Some(at);
                self.keeper.notify_one();
            }
            Some(_) => {}
            None => state.keeper_missed = Some(state.keeper_missed.map_or(at, |missed| missed.min(at))),
        }
    }

    /// Lets the next stanza of a line become ready, or ends the line.
    fn release_line(&self, state: &mut State, line: Option<&str>) {
        let Some(line) = line else { return };
        match state.followers.get_mut(line).map(VecDeque::pop_front) {
            Some(Some(next)) => {
                let due = keeper::expiry_now(&next, state);
                self.wake_keeper_by(state, due);
                state.ready.push_back(next);
            }
            Some(None) => {
                state.followers.remove(line);
            }
            None => {}
        }
    }

    /// Waits up to `d` (a `Retry-After`); false if the pool started closing meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        let deadline = Instant::now().checked_add(d);
        loop {
            // Registered before the check, so a `close` in between still ends the wait.
            let closing = self.closing.notified();
            tokio::pin!(closing);
            closing.as_mut().enable();
            if lock(&self.state).closing {
                return false;
            }
            let left = deadline.map_or(Duration::MAX, |deadline| deadline.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return true;
            }
            // At most a day at a time: a wait tokio can represent.
            let _ = tokio::time::timeout(left.min(Duration::from_secs(86_400)), closing).await;
        }
    }
}

#[cfg(test)]
mod tests;
