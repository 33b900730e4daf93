//! Closed-loop load generator: S logged-in client sessions, W messages
//! outstanding in all, replies matched to requests by body text.
//!
//! Request  (session s, sequence q, phase p):
//!   `<message to='bot.localhost' type='chat' id='p-s-q'><body>mp-s-q</body></message>`
//! Expected reply: a new message whose body is `Did you say mp-s-q?`.
//! Replies carry no id, so the body is the key. An error bounce
//! (type='error') keeps the request's id and is matched by that.
//!
//! Messages are handed to sessions round-robin; one dispatcher thread writes,
//! one reader thread per session reads. The window is a counting gate: the
//! dispatcher takes a slot per message, a reader gives it back per first reply.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::xmpp::{self, StanzaReader};

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    pub domain: String,
    /// Users are `<user_prefix><i>` for i in 1..=sessions.
    pub user_prefix: String,
    pub password: String,
    pub sessions: usize,
    /// Where messages go, e.g. `bot.localhost`.
    pub target: String,
    pub login_timeout: Duration,
    /// Logins under way at once (0: all at once). Thousands of connects at the same moment
    /// overflow Prosody's listen backlog and get reset.
    pub login_concurrency: usize,
}

#[derive(Clone, Debug)]
pub struct PhaseOptions {
    pub window: usize,
    pub messages: usize,
    /// Give up when no reply has arrived for this long.
    pub stall_timeout: Duration,
    /// Hard cap on the whole phase.
    pub deadline: Duration,
    /// Wait this long after the last expected reply, to catch duplicates.
    pub settle: Duration,
    /// Each session has at most one message outstanding and sends its next one when the
    /// previous got its reply or error (a user talking to a bot); `window` is then ignored and
    /// every session sends `messages / sessions`.
    pub per_session: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn from_samples(mut v: Vec<u32>) -> Latency {
        if v.is_empty() {
            return Latency::default();
        }
        v.sort_unstable();
        let pick = |q: f64| -> u64 {
            let idx = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
            v[idx] as u64
        };
        let sum: u64 = v.iter().map(|&x| x as u64).sum();
        Latency {
            count: v.len(),
            mean_us: sum as f64 / v.len() as f64,
            p50_us: pick(0.50),
            p90_us: pick(0.90),
            p99_us: pick(0.99),
            p999_us: pick(0.999),
            max_us: *v.last().unwrap() as u64,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseResult {
    pub phase_id: u32,
    pub window: usize,
    pub requested: usize,
    pub sent: usize,
    /// First replies with the expected body.
    pub replied: usize,
    /// Error bounces (type='error') matched by id.
    pub errors: usize,
    /// The same, by `type/condition` of their `<error/>` (e.g. `wait/remote-server-timeout`).
    pub errors_by_condition: BTreeMap<String, usize>,
    /// Sent but neither replied nor bounced by the end of the phase.
    pub lost: usize,
    pub duplicates: usize,
    /// Replies that arrived for a session after a reply to a later request of
    /// the same session.
    pub reordered: usize,
    /// Replies belonging to an earlier phase (late arrivals).
    pub stale: usize,
    /// Messages that matched no request, and non-message stanzas.
    pub unexpected: usize,
    pub other_stanzas: usize,
    /// First send to last first-reply.
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    pub latency: Latency,
    pub stalled: bool,
    pub aborted: Option<String>,
}

#[derive(Default)]
struct SessStats {
    lat_us: Vec<u32>,
    last_seq: Option<usize>,
    reordered: usize,
    duplicates: usize,
    stale: usize,
    unexpected: usize,
    errors: usize,
    error_conditions: BTreeMap<String, usize>,
    other: usize,
}

struct Gate {
    outstanding: usize,
    /// Sessions whose last message was answered (per-session mode only).
    ready: VecDeque<usize>,
    last_progress: Instant,
    last_reply_ns: u64,
}

struct Phase {
    id: u32,
    sessions: usize,
    messages: usize,
    /// Nanoseconds since `Shared::epoch` at send; index = seq * sessions + session.
    send_ns: Vec<AtomicU64>,
    /// 0 = open, 1 = replied, 2 = error bounce.
    state: Vec<AtomicU8>,
    gate: Mutex<Gate>,
    cv: Condvar,
    per_session: Vec<Mutex<SessStats>>,
    /// Per-session mode: answered sessions queue up in `Gate::ready`.
    one_each: bool,
}

impl Phase {
    fn new(id: u32, sessions: usize, messages: usize, one_each: bool) -> Phase {
        Phase {
            id,
            sessions,
            messages,
            send_ns: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            state: (0..messages).map(|_| AtomicU8::new(0)).collect(),
            gate: Mutex::new(Gate {
                outstanding: 0,
                ready: VecDeque::new(),
                last_progress: Instant::now(),
                last_reply_ns: 0,
            }),
            cv: Condvar::new(),
            per_session: (0..sessions).map(|_| Mutex::new(SessStats::default())).collect(),
            one_each,
        }
    }

    fn release(&self, now_ns: u64, session: usize) {
        let mut g = self.gate.lock().unwrap();
        g.outstanding = g.outstanding.saturating_sub(1);
        if self.one_each {
            g.ready.push_back(session);
        }
        g.last_progress = Instant::now();
        g.last_reply_ns = now_ns;
        drop(g);
        self.cv.notify_one();
    }
}

struct Shared {
    epoch: Instant,
    current: RwLock<Arc<Phase>>,
    generation: AtomicU64,
    dead: AtomicUsize,
    dead_reason: Mutex<Option<String>>,
    closing: AtomicBool,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// Parse `p-s-q` (used both in the reply body and the id).
fn parse_key(s: &str) -> Option<(u32, usize, usize)> {
    let mut it = s.splitn(3, '-');
    let p = it.next()?.parse().ok()?;
    let s_ = it.next()?.parse().ok()?;
    let q = it.next()?.parse().ok()?;
    Some((p, s_, q))
}

fn reader_loop(shared: Arc<Shared>, me: usize, mut r: StanzaReader) {
    let mut gen = u64::MAX;
    let mut phase: Option<Arc<Phase>> = None;
    loop {
        let st = match r.next() {
            Ok(st) => st,
            Err(e) => {
                if !shared.closing.load(Ordering::Relaxed) {
                    *shared.dead_reason.lock().unwrap() = Some(format!("session {me}: {e}"));
                    shared.dead.fetch_add(1, Ordering::SeqCst);
                    // wake a waiting dispatcher
                    if let Some(p) = &phase {
                        p.cv.notify_all();
                    }
                    let cur = shared.current.read().unwrap().clone();
                    cur.cv.notify_all();
                }
                return;
            }
        };
        let now = shared.now_ns();
        let g = shared.generation.load(Ordering::Acquire);
        if g != gen {
            phase = Some(shared.current.read().unwrap().clone());
            gen = g;
        }
        let ph = phase.as_ref().unwrap();
        let mut ss = ph.per_session[me].lock().unwrap();
        if st.name != "message" {
            ss.other += 1;
            continue;
        }
        if st.ty.as_deref() == Some("error") {
            match st.id.as_deref().and_then(parse_key) {
                Some((p, s, q)) if p == ph.id && s == me && q * ph.sessions + s < ph.messages => {
                    let i = q * ph.sessions + s;
                    if ph.state[i].swap(2, Ordering::AcqRel) == 0 {
                        ss.errors += 1;
                        let condition = st.error.clone().unwrap_or_else(|| "(no error element)".into());
                        *ss.error_conditions.entry(condition).or_default() += 1;
                        drop(ss);
                        ph.release(now, me);
                    } else {
                        ss.duplicates += 1;
                    }
                }
                Some((p, _, _)) if p != ph.id => ss.stale += 1,
                _ => ss.unexpected += 1,
            }
            continue;
        }
        // What follows the `?` is padding (bench_null_reply_bytes: a reply as long as a streamed
        // answer's stanzas).
        let key = st
            .body
            .as_deref()
            .and_then(|b| b.strip_prefix("Did you say m"))
            .and_then(|b| b.split_once('?'))
            .and_then(|(key, _)| parse_key(key));
        match key {
            Some((p, s, q)) if p == ph.id && s == me && q * ph.sessions + s < ph.messages => {
                let i = q * ph.sessions + s;
                if ph.state[i].swap(1, Ordering::AcqRel) != 0 {
                    ss.duplicates += 1;
                    continue;
                }
                let sent = ph.send_ns[i].load(Ordering::Acquire);
                let lat_us = (now.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32;
                ss.lat_us.push(lat_us);
                match ss.last_seq {
                    Some(last) if q < last => ss.reordered += 1,
                    _ => ss.last_seq = Some(q),
                }
                drop(ss);
                ph.release(now, me);
            }
            Some((p, _, _)) if p != ph.id => ss.stale += 1,
            _ => ss.unexpected += 1,
        }
    }
}

/// At most `limit` holders at once (0: no limit).
struct Turnstile {
    limit: usize,
    inside: Mutex<usize>,
    cv: Condvar,
}

struct Turn<'a>(&'a Turnstile);

impl Turnstile {
    fn new(limit: usize) -> Turnstile {
        Turnstile { limit, inside: Mutex::new(0), cv: Condvar::new() }
    }

    fn enter(&self) -> Turn<'_> {
        let mut n = self.inside.lock().unwrap();
        while self.limit > 0 && *n >= self.limit {
            n = self.cv.wait(n).unwrap();
        }
        *n += 1;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.inside.lock().unwrap() -= 1;
        self.0.cv.notify_one();
    }
}

pub struct Client {
    cfg: ClientConfig,
    writers: Vec<Arc<TcpStream>>,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
    next_phase: u32,
    pub jids: Vec<String>,
}

impl Client {
    /// Log in all sessions (in parallel) and start their reader threads.
    pub fn connect(cfg: &ClientConfig) -> io::Result<Client> {
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            current: RwLock::new(Arc::new(Phase::new(0, cfg.sessions, 0, false))),
            generation: AtomicU64::new(0),
            dead: AtomicUsize::new(0),
            dead_reason: Mutex::new(None),
            closing: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let mut readers = Vec::new();
        let logins = Arc::new(Turnstile::new(cfg.login_concurrency));
        for i in 0..cfg.sessions {
            let tx = tx.clone();
            let cfg = cfg.clone();
            let shared = shared.clone();
            let logins = logins.clone();
            readers.push(std::thread::Builder::new().name(format!("reader-{i}")).spawn(move || {
                let user = format!("{}{}", cfg.user_prefix, i + 1);
                let turn = logins.enter();
                let res =
                    xmpp::login(cfg.addr, &cfg.domain, &user, &cfg.password, &format!("bench{i}"), cfg.login_timeout);
                drop(turn);
                match res {
                    Ok(sess) => {
                        let _ = tx.send((i, Ok((sess.writer, sess.full_jid))));
                        drop(tx);
                        reader_loop(shared, i, sess.reader);
                    }
                    Err(e) => {
                        let _ = tx.send((i, Err(e)));
                    }
                }
            })?);
        }
        drop(tx);
        let mut writers: Vec<Option<(Arc<TcpStream>, String)>> = (0..cfg.sessions).map(|_| None).collect();
        let mut first_err = None;
        for _ in 0..cfg.sessions {
            // Each login has its own timeout, so this ends; the margin covers connect.
            let Ok((i, res)) = rx.recv_timeout(cfg.login_timeout * 3) else {
                first_err.get_or_insert(io::Error::new(io::ErrorKind::TimedOut, "login timed out"));
                break;
            };
            match res {
                Ok(w) => writers[i] = Some(w),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            shared.closing.store(true, Ordering::SeqCst);
            for w in writers.iter().flatten() {
                let _ = w.0.shutdown(std::net::Shutdown::Both);
            }
            return Err(e);
        }
        let (writers, jids) = writers.into_iter().map(|w| w.unwrap()).unzip();
        Ok(Client { cfg: cfg.clone(), writers, shared, readers, next_phase: 1, jids })
    }

    pub fn sessions_alive(&self) -> bool {
        self.shared.dead.load(Ordering::SeqCst) == 0
    }

    /// Run one closed-loop phase. `stop` is polled so a signal can end it early.
    pub fn run_phase(&mut self, opts: &PhaseOptions, stop: &AtomicBool) -> PhaseResult {
        let id = self.next_phase;
        self.next_phase += 1;
        let s_count = self.cfg.sessions;
        let ph = Arc::new(Phase::new(id, s_count, opts.messages, opts.per_session));
        *self.shared.current.write().unwrap() = ph.clone();
        self.shared.generation.fetch_add(1, Ordering::Release);

        let mut res = PhaseResult { phase_id: id, window: opts.window, requested: opts.messages, ..Default::default() };
        let start = Instant::now();
        let start_ns = self.shared.now_ns();
        ph.gate.lock().unwrap().last_progress = start;
        let mut buf: Vec<u8> = Vec::with_capacity(256);
        let window = opts.window.max(1);

        // Wait until `cond(outstanding)` holds; false if the phase must end.
        let wait = |pred: &dyn Fn(&Gate) -> bool, res: &mut PhaseResult| -> bool {
            let mut g = ph.gate.lock().unwrap();
            loop {
                if pred(&g) {
                    return true;
                }
                if stop.load(Ordering::Relaxed) {
                    res.aborted = Some("interrupted".into());
                    return false;
                }
                if self.shared.dead.load(Ordering::SeqCst) > 0 {
                    res.aborted = Some(format!(
                        "a client session died: {}",
                        self.shared.dead_reason.lock().unwrap().clone().unwrap_or_default()
                    ));
                    return false;
                }
                if g.last_progress.elapsed() > opts.stall_timeout {
                    res.stalled = true;
                    res.aborted = Some(format!(
                        "stalled: no reply for {:?} with {} outstanding",
                        opts.stall_timeout, g.outstanding
                    ));
                    return false;
                }
                if start.elapsed() > opts.deadline {
                    res.aborted = Some(format!("phase deadline {:?} reached", opts.deadline));
                    return false;
                }
                g = ph.cv.wait_timeout(g, Duration::from_millis(100)).unwrap().0;
            }
        };

        let mut ok = true;
        let mut send = |s: usize, q: usize, res: &mut PhaseResult| -> bool {
            buf.clear();
            let _ = write!(
                buf,
                "<message to='{t}' type='chat' id='{id}-{s}-{q}'><body>m{id}-{s}-{q}</body></message>",
                t = self.cfg.target
            );
            ph.send_ns[q * s_count + s].store(self.shared.now_ns(), Ordering::Release);
            if let Err(e) = (&*self.writers[s]).write_all(&buf) {
                res.aborted = Some(format!("write to session {s}: {e}"));
                return false;
            }
            res.sent += 1;
            true
        };
        if opts.per_session {
            // Every session starts with one message; each answer lets its session send the next.
            let per = opts.messages / s_count;
            let mut next_q = vec![0usize; s_count];
            ph.gate.lock().unwrap().ready.extend(0..s_count);
            let mut sent = 0;
            while sent < per * s_count {
                if !wait(&|g| !g.ready.is_empty(), &mut res) {
                    ok = false;
                    break;
                }
                let s = {
                    let mut g = ph.gate.lock().unwrap();
                    let s = g.ready.pop_front().expect("a ready session");
                    if next_q[s] < per {
                        g.outstanding += 1;
                    }
                    s
                };
                if next_q[s] < per {
                    if !send(s, next_q[s], &mut res) {
                        ok = false;
                        break;
                    }
                    next_q[s] += 1;
                    sent += 1;
                }
            }
        } else {
            for i in 0..opts.messages {
                if !wait(&|g| g.outstanding < window, &mut res) {
                    ok = false;
                    break;
                }
                ph.gate.lock().unwrap().outstanding += 1;
                if !send(i % s_count, i / s_count, &mut res) {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            wait(&|g| g.outstanding == 0, &mut res);
        }
        let last_reply_ns = ph.gate.lock().unwrap().last_reply_ns;
        if !opts.settle.is_zero() && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(opts.settle);
        }

        let mut lat = Vec::with_capacity(opts.messages);
        for m in &ph.per_session {
            let mut ss = m.lock().unwrap();
            lat.append(&mut ss.lat_us);
            res.reordered += ss.reordered;
            res.duplicates += ss.duplicates;
            res.stale += ss.stale;
            res.unexpected += ss.unexpected;
            res.errors += ss.errors;
            for (condition, n) in std::mem::take(&mut ss.error_conditions) {
                *res.errors_by_condition.entry(condition).or_default() += n;
            }
            res.other_stanzas += ss.other;
        }
        res.replied = lat.len();
        res.lost = res.sent.saturating_sub(res.replied + res.errors);
        res.elapsed_s = last_reply_ns.saturating_sub(start_ns) as f64 / 1e9;
        if res.elapsed_s > 0.0 {
            res.msgs_per_s = res.replied as f64 / res.elapsed_s;
        }
        res.latency = Latency::from_samples(lat);
        res
    }

    /// Close the streams politely and join the reader threads (bounded).
    pub fn close(self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        for w in self.writers.iter() {
            let _ = (&**w).write_all(b"</stream:stream>");
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for h in &self.readers {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for w in &self.writers {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
        for h in self.readers {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let l = Latency::from_samples((1..=100).collect());
        assert_eq!(l.p50_us, 50);
        assert_eq!(l.p99_us, 99);
        assert_eq!(l.max_us, 100);
    }

    #[test]
    fn keys() {
        assert_eq!(parse_key("3-15-1249"), Some((3, 15, 1249)));
        assert_eq!(parse_key("x-1-2"), None);
    }
}
