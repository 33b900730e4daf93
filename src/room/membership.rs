//! Which rooms the bot is in, and what to send to stay there: the membership state machine.
//!
//! Every method takes an event (the server started, a presence came from a room, the bot sent a
//! presence, a self-ping was answered, time passed) and returns the [`Action`]s Lua performs.
//! Time is always a parameter, so tests drive it with `Instant`s and never sleep.
//!
//! A room is in one [`State`]. Failures that would repeat (a ban, a password) stop the room until
//! the module reloads; the others retry with a backoff that doubles from `first_retry` up to
//! `max_retry`, so a room that refuses us is never asked in a tight loop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::facts::{MessageFacts, PingAnswer, PresenceFacts};
use super::failure::Failure;
use super::options::{valid_nick, RoomOptions};
use super::stanzas;
use crate::jid;
use crate::outcome::Level;
use crate::stanza::Element;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The times the membership works by.
pub struct Timing {
    /// How long a join may wait for the room's answer.
    pub join_timeout: Duration,
    /// How often a joined room is checked with a self-ping (XEP-0410). Over s2s a link can drop
    /// without a word, and the bot would sit outside the room forever.
    pub ping_interval: Duration,
    /// How long a self-ping may wait for its answer when Lua does not report a timeout itself.
    pub ping_timeout: Duration,
    /// The wait before the first rejoin after a failure.
    pub first_retry: Duration,
    /// The longest wait between rejoins.
    pub max_retry: Duration,
    /// The wait between two batches of at most [`JOINS_PER_BATCH`] joins.
    pub join_pace: Duration,
    /// How long the form that opens a new room may wait for its answer (Lua's `module:send_iq`
    /// timeout for it); it holds one of the rooms' [`ROOM_IQS`] until then.
    pub open_room_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            join_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(300),
            ping_timeout: Duration::from_secs(60),
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(300),
            join_pace: Duration::from_millis(100),
            open_room_timeout: Duration::from_secs(60),
        }
    }
}

impl Timing {
    /// The wait before the `failures`-th retry in a row: `first_retry`, doubled each time, at
    /// most `max_retry`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first_retry.saturating_mul(1 << doublings).min(self.max_retry)
    }
}

/// How many ids of the bot's own messages are kept per room for XEP-0461 replies (two per
/// message: its id and the room's stanza id): replies to older messages still name the bot by
/// `to` when the client sets it.
pub const OWN_MESSAGE_IDS: usize = 64;

/// Nicks tried on a conflict: `Nick`, then `Nick_2` up to `Nick_10`.
pub const MAX_NICK_ATTEMPTS: u32 = 10;

/// The most joins sent in one turn of Prosody's main loop: a local room handles a join on the
/// main thread (and tells every occupant), so thousands of rooms joined at once would stall the
/// server for seconds. The rest wait for the next batch, [`Timing::join_pace`] later: 200 joins
/// a second, 5,000 rooms in 25 s. Joins at start, after a reload and retries all go in batches;
/// a join a push or the bot's presence asks for goes out at once.
pub const JOINS_PER_BATCH: usize = 20;

/// How many iqs Prosody's `module:send_iq` tracks per module: one more evicts (fails) the oldest
/// waiting, whoever sent it.
pub const SEND_IQ_TRACKED: usize = 256;

/// The most iqs the rooms have waiting for their answers at once: self-pings and the forms that
/// open rooms the bot's joins created. Pushed iqs are at most [`crate::config::MAX_PUSH_IQS`];
/// together they stay below [`SEND_IQ_TRACKED`], so neither can evict the other's. A self-ping
/// or a form due while the rooms' share is taken waits for an answer to free a place.
pub const ROOM_IQS: usize = 48;

// The split holds whatever the two numbers become.
const _: () = assert!(crate::config::MAX_PUSH_IQS as usize + ROOM_IQS < SEND_IQ_TRACKED);

#[derive(Debug, Clone, PartialEq, Eq)]
/// Where the bot stands in one room.
pub enum State {
    /// Wanted, not asked yet: [`Rooms::start`] joins it.
    Idle,
    /// A join was sent and is waiting for the room's answer.
    Joining {
        /// When the join was sent.
        since: Instant,
        /// The nick asked for.
        nick: String,
    },
    /// In the room.
    Joined {
        /// The nick the bot is in the room as.
        nick: String,
        /// When the next self-ping is due.
        next_ping: Instant,
        /// The self-ping waiting for its answer.
        ping: Option<PendingPing>,
    },
    /// Out of the room after a failure, to join again.
    Retrying {
        /// When to join again.
        at: Instant,
        /// What went wrong.
        after: Failure,
    },
    /// Not rejoined until the module reloads ([`Rooms::reconfigure`]).
    Stopped(Failure),
    /// The bot left by sending `unavailable`; not rejoined until it sends a presence again (or,
    /// for a configured room, until the module reloads).
    Left,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A self-ping waiting for its answer.
pub struct PendingPing {
    /// The iq's id.
    pub id: String,
    /// When it was sent.
    pub sent: Instant,
}

/// What Lua does for the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `module:send` it as it is.
    Send(Element),
    /// Send it with `module:send_iq` and report the answer to [`Rooms::on_ping_answer`] with
    /// this room and id (a timeout as [`PingAnswer::Timeout`]).
    SelfPing {
        /// The bare room JID.
        room: String,
        /// The iq's id.
        id: String,
        /// The ping.
        iq: Element,
    },
    /// Send it with `module:send_iq` (so its answer is not POSTed); log an error answer. The
    /// form that opens a room the bot's join created (status 201).
    OpenRoom {
        /// The bare room JID.
        room: String,
        /// The iq's id: its answer (or its timeout) is reported to [`Rooms::on_open_room_answer`].
        id: String,
        /// The configuration form.
        iq: Element,
        /// How long to wait for the answer ([`Timing::open_room_timeout`]).
        timeout: Duration,
    },
    /// `module:log(level, message)`.
    Log(Level, String),
    /// The remembered rooms changed: write [`Rooms::remembered`] to the module's store.
    StoreRemembered,
    /// Pushes waiting for this room can be sent now, from this JID.
    RoomReady {
        /// The bare room JID.
        room: String,
        /// The JID the bot is in the room as.
        from: String,
    },
    /// Pushes waiting for this room are answered with `failure.push_status()`.
    RoomFailed {
        /// The bare room JID.
        room: String,
        /// Why the bot is not in it.
        failure: Failure,
    },
}

/// A room the bot joined by a presence of its own, kept in storage across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberedRoom {
    /// Bare room JID.
    pub room: String,
    /// The nick it joined with.
    pub nick: String,
    /// The JID on the component that joined.
    pub from: String,
}

/// The bot's place in one room, as the message path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    /// The bare room JID.
    pub room: String,
    /// The nick the bot is in the room as.
    pub nick: String,
    /// The JID on the component that joined: replies to the room come from it.
    pub from: String,
}

impl Occupant {
    /// `room@service/nick`: what the room shows as the sender of the bot's messages.
    pub fn jid(&self) -> String {
        format!("{}/{}", self.room, self.nick)
    }
}

/// Where a push to a room stands.
#[derive(Debug, Clone, PartialEq)]
pub enum PushRoute {
    /// Joined: send it now, from this JID.
    Send {
        /// The JID the bot is in the room as.
        from: String,
    },
    /// Perform these actions and hold the push until [`Action::RoomReady`] or
    /// [`Action::RoomFailed`] names the room (at the latest after the join timeout).
    Wait(Vec<Action>),
    /// Answer now with `failure.push_status()`.
    Refuse(Failure),
    /// `to` is not a bare room JID (`400`).
    NotARoom(String),
    /// The push names a `from` other than the JID the bot is in the room as (one occupant per
    /// room); the room would refuse it (`409`).
    OtherOccupant {
        /// The JID the bot is in the room as.
        joined_as: String,
    },
}

#[derive(Debug, Clone)]
struct Room {
    /// The nick asked for; a conflict adds `_2`, `_3`, … to it.
    nick: String,
    from: String,
    configured: bool,
    /// Kept in storage across restarts: the bot joined it by a push or a presence of its own.
    remembered: bool,
    /// A push or a presence of the bot's asked for it: remembered once the room lets the bot
    /// in, never before (a mistyped or unreachable room must not be retried on every start).
    remember_on_join: bool,
    state: State,
    /// Failed joins in a row, for the backoff.
    failures: u32,
    nick_attempt: u32,
    push_waiting: bool,
    /// The bot's own join created the room (status 201): the form that opens it is to be sent,
    /// once, when the rooms' iq budget has a place.
    open_pending: bool,
    /// The ids of the bot's last messages the room reflected, oldest first.
    own_message_ids: Vec<String>,
}

impl Room {
    fn new(nick: &str, from: &str, configured: bool) -> Room {
        Room {
            nick: nick.to_owned(),
            from: from.to_owned(),
            configured,
            remembered: false,
            remember_on_join: false,
            state: State::Idle,
            failures: 0,
            nick_attempt: 1,
            push_waiting: false,
            open_pending: false,
            own_message_ids: Vec::new(),
        }
    }

    fn nick_to_try(&self) -> String {
        match self.nick_attempt {
            0 | 1 => self.nick.clone(),
            n => format!("{}_{n}", self.nick),
        }
    }

    /// The nick we are in the room as, or are asking for.
    fn current_nick(&self) -> Option<&str> {
        match &self.state {
            State::Joining { nick, .. } | State::Joined { nick, .. } => Some(nick),
            _ => None,
        }
    }

    fn join(&mut self, room: &str, now: Instant) -> Action {
        let nick = self.nick_to_try();
        let join = stanzas::join(room, &nick, &self.from);
        self.state = State::Joining { since: now, nick };
        Action::Send(join)
    }

    fn fail(&mut self, room: &str, failure: Failure, timing: &Timing, now: Instant) -> Vec<Action> {
        if failure == Failure::NickTaken && self.nick_attempt < MAX_NICK_ATTEMPTS {
            let taken = self.nick_to_try();
            self.nick_attempt += 1;
            let join = self.join(room, now);
            let log = format!("nick {taken:?} is taken in {room}, joining as {:?}", self.nick_to_try());
            return vec![Action::Log(Level::Info, log), join];
        }
        self.nick_attempt = 1;
        // The join a push or a presence asked for is answered: the room is not remembered.
        self.remember_on_join = false;
        self.open_pending = false;
        let mut actions = Vec::new();
        if std::mem::take(&mut self.push_waiting) {
            actions.push(Action::RoomFailed { room: room.to_owned(), failure: failure.clone() });
        }
        if failure.is_final() {
            actions
                .push(Action::Log(Level::Warn, format!("{room}: {failure}; not rejoining until the module reloads")));
            self.state = State::Stopped(failure);
        } else {
            self.failures += 1;
            let delay = timing.backoff(self.failures);
            actions.push(Action::Log(Level::Warn, format!("{room}: {failure}; rejoining in {} s", delay.as_secs())));
            self.state = State::Retrying { at: now + delay, after: failure };
        }
        actions
    }

    /// Neither configured nor remembered, nor asked for by a join still waiting for its answer:
    /// nothing wants the bot back in it.
    fn is_transient(&self) -> bool {
        !self.configured && !self.remembered && !self.remember_on_join
    }

    fn next_deadline(&self, timing: &Timing) -> Option<Instant> {
        match &self.state {
            State::Joining { since, .. } => Some(*since + timing.join_timeout),
            State::Joined { ping: Some(ping), .. } => Some(ping.sent + timing.ping_timeout),
            State::Joined { next_ping, ping: None, .. } => Some(*next_ping),
            State::Retrying { at, .. } => Some(*at),
            State::Idle | State::Stopped(_) | State::Left => None,
        }
    }
}

/// The bot's rooms. `Clone` is the reload handover: the new instance continues from a copy of
/// the old one's state (no leave, no join), then [`Rooms::reconfigure`] applies its options.
#[derive(Debug, Clone)]
pub struct Rooms {
    host: String,
    default_nick: String,
    timing: Timing,
    /// By bare room JID, prepared.
    rooms: BTreeMap<String, Room>,
    /// Numbers the ids of the iqs we send.
    sent_iqs: u64,
    /// [`Rooms::start`] ran: rooms waiting to be joined ([`State::Idle`]) go in batches.
    started: bool,
    /// When the last batch of joins went out.
    last_batch: Option<Instant>,
    /// The forms opening new rooms that wait for their answers, by id, with when they were sent.
    open_iqs: BTreeMap<String, Instant>,
}

impl Rooms {
    /// The rooms of `options` for the component `host`, none joined yet.
    pub fn new(host: &str, options: &RoomOptions, timing: Timing) -> Rooms {
        let rooms = options.rooms.iter().map(|c| (c.room.clone(), Room::new(&c.nick, host, true))).collect();
        Rooms {
            host: host.to_owned(),
            default_nick: options.nick.clone(),
            timing,
            rooms,
            sent_iqs: 0,
            started: false,
            last_batch: None,
            open_iqs: BTreeMap::new(),
        }
    }

    /// Adds the rooms read back from storage (before [`Rooms::start`]). Entries that are no
    /// longer valid (edited by hand, or the component's host changed) are skipped with a log.
    pub fn load_remembered(&mut self, remembered: Vec<RememberedRoom>) -> Vec<Action> {
        let mut actions = Vec::new();
        for entry in remembered {
            let valid = bare_room(&entry.room)
                .zip(valid_nick(&entry.nick).ok())
                .zip(jid::prep(&entry.from).ok().filter(|j| j.domain.eq_ignore_ascii_case(&self.host)));
            let Some(((room, nick), from)) = valid else {
                actions
                    .push(Action::Log(Level::Warn, format!("not rejoining the stored room {entry:?}: not valid here")));
                continue;
            };
            self.rooms.entry(room).or_insert_with(|| Room::new(&nick, &from.to_string(), false)).remembered = true;
        }
        actions
    }

    /// The rooms to keep in storage: joined by a presence of the bot's and not left since.
    pub fn remembered(&self) -> Vec<RememberedRoom> {
        self.rooms
            .iter()
            .filter(|(_, r)| r.remembered && r.state != State::Left)
            .map(|(room, r)| RememberedRoom { room: room.clone(), nick: r.nick.clone(), from: r.from.clone() })
            .collect()
    }

    /// Once the server has started: joins every room wanted and not joined yet, the first
    /// [`JOINS_PER_BATCH`] now and the rest in batches on the following ticks.
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        self.started = true;
        self.join_batch(now)
    }

    /// Joins the next [`JOINS_PER_BATCH`] rooms waiting ([`State::Idle`]).
    fn join_batch(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for (room, r) in self.rooms.iter_mut().filter(|(_, r)| r.state == State::Idle).take(JOINS_PER_BATCH) {
            actions.push(Action::Log(Level::Info, format!("joining {room} as {:?}", r.nick_to_try())));
            actions.push(r.join(room, now));
        }
        // Even an empty batch: the next one is paced from here.
        self.last_batch = Some(now);
        actions
    }

    /// When the next batch of joins is due, if rooms wait for one.
    fn next_batch(&self) -> Option<Instant> {
        if !self.started || !self.rooms.values().any(|r| r.state == State::Idle) {
            return None;
        }
        // `start` and `reconfigure` (which set `started`) each try a batch.
        self.last_batch.map(|at| at + self.timing.join_pace)
    }

    /// How many iqs of the rooms wait for their answers.
    fn room_iqs_in_flight(&self) -> usize {
        let pings = self.rooms.values().filter(|r| matches!(r.state, State::Joined { ping: Some(_), .. })).count();
        pings + self.open_iqs.len()
    }

    /// Sends the forms that open new rooms and the self-pings that are due, as far as the
    /// rooms' share of Prosody's iq tracking allows ([`ROOM_IQS`]); the rest wait for a place.
    fn send_room_iqs(&mut self, now: Instant) -> Vec<Action> {
        let mut in_flight = self.room_iqs_in_flight();
        let mut actions = Vec::new();
        // A new room stays locked (closed to everyone else) until it is opened: forms first.
        for (room, r) in self.rooms.iter_mut() {
            if in_flight >= ROOM_IQS {
                return actions;
            }
            if r.open_pending && matches!(r.state, State::Joined { .. }) {
                r.open_pending = false;
                self.sent_iqs += 1;
                let id = format!("room-config-{}", self.sent_iqs);
                let iq = stanzas::open_new_room(room, &r.from, &id);
                self.open_iqs.insert(id.clone(), now);
                actions.push(Action::OpenRoom { room: room.clone(), id, iq, timeout: self.timing.open_room_timeout });
                in_flight += 1;
            }
        }
        for (room, r) in self.rooms.iter_mut() {
            if in_flight >= ROOM_IQS {
                return actions;
            }
            if let State::Joined { nick, next_ping, ping: ping @ None } = &mut r.state {
                if *next_ping <= now {
                    self.sent_iqs += 1;
                    let id = format!("room-ping-{}", self.sent_iqs);
                    let iq = stanzas::self_ping(room, nick, &r.from, &id);
                    *ping = Some(PendingPing { id: id.clone(), sent: now });
                    actions.push(Action::SelfPing { room: room.clone(), id, iq });
                    in_flight += 1;
                }
            }
        }
        actions
    }

    /// The form `id` that opened a new room was answered, or timed out (either way it no longer
    /// holds a place among the rooms' iqs).
    pub fn on_open_room_answer(&mut self, id: &str, now: Instant) -> Vec<Action> {
        if self.open_iqs.remove(id).is_none() {
            return Vec::new();
        }
        self.send_room_iqs(now)
    }

    /// After a reload, on the state handed over: rooms new to the configuration are joined,
    /// rooms it dropped (and the bot did not join by presence) are left, a changed nick is
    /// taken, and rooms stopped by a ban, a kick or a refusal are tried again.
    pub fn reconfigure(&mut self, options: &RoomOptions, now: Instant) -> Vec<Action> {
        self.default_nick = options.nick.clone();
        self.started = true;
        let mut actions = Vec::new();
        for r in self.rooms.values_mut() {
            r.configured = false;
        }
        for configured in &options.rooms {
            let r = self
                .rooms
                .entry(configured.room.clone())
                .or_insert_with(|| Room::new(&configured.nick, &self.host, true));
            r.configured = true;
            let nick_changed = r.nick != configured.nick;
            r.nick = configured.nick.clone();
            match &r.state {
                // Out of the room: joined with the next batches.
                State::Idle | State::Stopped(_) | State::Left => {
                    r.nick_attempt = 1;
                    r.failures = 0;
                    r.state = State::Idle;
                }
                // In it: the new nick is taken at once (a nick change, not a join).
                State::Joining { .. } | State::Joined { .. } if nick_changed => {
                    r.nick_attempt = 1;
                    r.failures = 0;
                    actions.push(Action::Log(Level::Info, format!("joining {} as {:?}", configured.room, r.nick)));
                    actions.push(r.join(&configured.room, now));
                }
                State::Joining { .. } | State::Joined { .. } | State::Retrying { .. } => {}
            }
        }
        let stopped_remembered: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| !r.configured && r.remembered && matches!(r.state, State::Stopped(_)))
            .map(|(room, _)| room.clone())
            .collect();
        for room in stopped_remembered {
            let r = self.rooms.get_mut(&room).expect("listed above");
            r.failures = 0;
            r.state = State::Idle;
        }
        let dropped: Vec<String> =
            self.rooms.iter().filter(|(_, r)| r.is_transient()).map(|(room, _)| room.clone()).collect();
        for room in dropped {
            let r = self.rooms.remove(&room).expect("listed above");
            if let Some(nick) = r.current_nick() {
                actions.push(Action::Log(Level::Info, format!("leaving {room}: no longer configured")));
                actions.push(Action::Send(stanzas::leave(&room, nick, &r.from)));
            }
        }
        actions.extend(self.join_batch(now));
        actions
    }

    /// A presence from `room@service/nick`. `None` when it does not concern the bot's own
    /// membership (another occupant's presence, or not from a room the bot wants): Lua handles
    /// it as any other presence.
    pub fn on_presence(&mut self, presence: &PresenceFacts, now: Instant) -> Option<Vec<Action>> {
        let (room, nick) = occupant_parts(&presence.from)?;
        let r = self.rooms.get_mut(&room)?;
        let about_us = presence.has_status(110) || (nick.is_some() && nick.as_deref() == r.current_nick());
        let mut actions = match presence.presence_type.as_deref() {
            // Every presence the bot sends to a room it knows is about its membership, so every
            // error back is too; one for a nick it no longer asks for is a late answer to a
            // join it gave up on.
            Some("error") => {
                if !about_us {
                    return Some(Vec::new());
                }
                let condition = presence.error_condition.as_deref().unwrap_or("undefined-condition");
                r.fail(&room, Failure::of_condition(condition), &self.timing, now)
            }
            Some("unavailable") if about_us => {
                // 303: a nick change; the self-presence under the new nick follows.
                if presence.has_status(303) || r.current_nick().is_none() {
                    return Some(Vec::new());
                }
                let failure = Failure::of_status_codes(&presence.status_codes).unwrap_or(Failure::Dropped);
                r.fail(&room, failure, &self.timing, now)
            }
            None if about_us => {
                let nick = nick.unwrap_or_else(|| r.nick_to_try());
                if r.state == State::Left {
                    // Still in a room the bot left (its leave crossed a rejoin): leave again.
                    return Some(vec![Action::Send(stanzas::leave(&room, &nick, &r.from))]);
                }
                let mut actions = Vec::new();
                if !matches!(&r.state, State::Joined { nick: joined, .. } if *joined == nick) {
                    actions.push(Action::Log(Level::Info, format!("joined {room} as {nick:?}")));
                }
                // Only the answer to a join of the bot's own says whether that join created the
                // room: a 201 on any other self-presence (a room may send as many as it likes)
                // asks for nothing.
                let answers_our_join = matches!(r.state, State::Joining { .. });
                r.open_pending = answers_our_join && presence.has_status(201);
                r.failures = 0;
                r.state = State::Joined { nick, next_ping: now + self.timing.ping_interval, ping: None };
                if std::mem::take(&mut r.remember_on_join) {
                    r.remembered = true;
                    actions.push(Action::StoreRemembered);
                }
                if std::mem::take(&mut r.push_waiting) {
                    actions.push(Action::RoomReady { room: room.clone(), from: r.from.clone() });
                }
                actions
            }
            _ => return None,
        };
        // A form to send, or a place freed by a failure.
        actions.extend(self.send_room_iqs(now));
        Some(actions)
    }

    /// A message of type `error` from a room: `not-acceptable` is the room saying the bot is not
    /// in it (it refused something the bot said), so rejoin.
    pub fn on_error_message(&mut self, message: &MessageFacts, now: Instant) -> Vec<Action> {
        let Some((room, _)) = occupant_parts(&message.from) else { return Vec::new() };
        let Some(r) = self.rooms.get_mut(&room) else { return Vec::new() };
        if message.error_condition.as_deref() == Some("not-acceptable") && matches!(r.state, State::Joined { .. }) {
            return r.fail(&room, Failure::Dropped, &self.timing, now);
        }
        Vec::new()
    }

    /// A presence the bot sends (a webhook's reply or a push), after the policy check, with its
    /// `from` set. To a room (it carries the MUC join element, or goes to a room or a service
    /// the bot knows): available joins and remembers the room, and is made a join the room
    /// accepts; unavailable leaves and forgets it. One occupant per room: a presence to a room
    /// from another JID than the one in it is left alone.
    pub fn on_own_presence(&mut self, presence: &mut Element, now: Instant) -> Vec<Action> {
        let Some(to) = presence.attr("to").and_then(|to| jid::prep(to).ok()) else { return Vec::new() };
        if to.node.is_none() {
            return Vec::new();
        }
        let room = to.bare();
        let from = presence.attr("from").unwrap_or(&self.host).to_owned();
        let known_service = self.rooms.keys().any(|r| r.rsplit('@').next() == Some(to.domain.as_str()));
        if !(self.rooms.contains_key(&room) || known_service || stanzas::is_join(presence)) {
            return Vec::new();
        }
        if self.rooms.get(&room).is_some_and(|r| r.from != from && r.current_nick().is_some()) {
            return vec![Action::Log(Level::Debug, format!("{from} is not the bot's occupant in {room}: not tracked"))];
        }
        match presence.attr("type") {
            None => {
                let Some(nick) = to.resource else { return Vec::new() };
                let r = self.rooms.entry(room.clone()).or_insert_with(|| Room::new(&nick, &from, false));
                if matches!(&r.state, State::Joined { nick: joined, .. } if *joined == nick) {
                    return Vec::new(); // a presence update to a room it is in
                }
                stanzas::make_join(presence);
                r.remember_on_join = !r.configured;
                r.from = from;
                r.nick = nick.clone();
                r.nick_attempt = 1;
                r.state = State::Joining { since: now, nick: nick.clone() };
                vec![Action::Log(Level::Info, format!("joining {room} as {nick:?} (the bot's presence)"))]
            }
            Some("unavailable") => {
                let Some(r) = self.rooms.get_mut(&room) else { return Vec::new() };
                r.state = State::Left;
                r.remember_on_join = false;
                let mut actions = vec![Action::Log(Level::Info, format!("leaving {room} (the bot's presence)"))];
                if std::mem::take(&mut r.remembered) {
                    actions.push(Action::StoreRemembered);
                }
                actions
            }
            _ => Vec::new(),
        }
    }

    /// The answer to the self-ping `id` sent to `room` (see [`Action::SelfPing`]).
    pub fn on_ping_answer(&mut self, room: &str, id: &str, answer: &PingAnswer, now: Instant) -> Vec<Action> {
        let Some(r) = self.rooms.get_mut(room) else { return Vec::new() };
        let State::Joined { ping, next_ping, .. } = &mut r.state else { return Vec::new() };
        if ping.as_ref().is_none_or(|p| p.id != id) {
            return Vec::new(); // the answer to an older ping
        }
        // XEP-0410: a result, or our own client-side refusal relayed by the room, means the
        // room delivered the ping to us; not-acceptable and the rest mean we are not in it;
        // a remote server that cannot be reached tells nothing, and we rejoin to be sure.
        let failure = match answer {
            PingAnswer::Result => None,
            PingAnswer::Error { condition, from_occupant: true }
                if condition == "service-unavailable" || condition == "feature-not-implemented" =>
            {
                None
            }
            PingAnswer::Timeout => Some(Failure::NoAnswer),
            PingAnswer::Error { condition, .. } if condition.starts_with("remote-server-") => Some(Failure::NoAnswer),
            PingAnswer::Error { .. } => Some(Failure::Dropped),
        };
        let mut actions = match failure {
            None => {
                *ping = None;
                *next_ping = now + self.timing.ping_interval;
                Vec::new()
            }
            Some(failure) => r.fail(room, failure, &self.timing, now),
        };
        // The ping's place among the rooms' iqs is free: a self-ping or a form waiting for one goes.
        actions.extend(self.send_room_iqs(now));
        actions
    }

    /// Time passed: joins that got no answer fail, retries that are due join (in the next
    /// batch), joined rooms that are due a self-ping get one (within the rooms' iq budget), and a
    /// self-ping unanswered for `ping_timeout` fails.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut forgotten = Vec::new();
        for (room, r) in self.rooms.iter_mut() {
            if r.next_deadline(&self.timing).is_none_or(|deadline| now < deadline) {
                continue;
            }
            let due = match &r.state {
                State::Joining { .. } | State::Joined { ping: Some(_), .. } => Due::Fail(Failure::NoAnswer),
                State::Retrying { .. } if r.is_transient() => Due::Forget,
                State::Retrying { .. } => Due::Join,
                // A self-ping: sent below, as the budget allows.
                State::Joined { ping: None, .. } | State::Idle | State::Stopped(_) | State::Left => continue,
            };
            match due {
                Due::Fail(failure) => actions.extend(r.fail(room, failure, &self.timing, now)),
                // A room a push or a presence asked for and that never let the bot in: the next
                // push or presence asks again; nothing else does.
                Due::Forget => {
                    actions.push(Action::Log(
                        Level::Info,
                        format!(
                            "not rejoining {room}: the bot was never in it; a push or a presence to it joins again"
                        ),
                    ));
                    forgotten.push(room.clone());
                }
                Due::Join => r.state = State::Idle,
            }
        }
        for room in forgotten {
            self.rooms.remove(&room);
        }
        // A form whose answer never came back here (Lua's own timeout reports it; not across a
        // reload) frees its place after the same time.
        let timeout = self.timing.open_room_timeout;
        self.open_iqs.retain(|_, sent| now < *sent + timeout);
        actions.extend(self.send_room_iqs(now));
        if self.next_batch().is_some_and(|at| at <= now) {
            actions.extend(self.join_batch(now));
        }
        actions
    }

    /// When [`Rooms::tick`] next has something to do: Lua sets its timer for then.
    pub fn next_tick(&self) -> Option<Instant> {
        // A self-ping due while the rooms' iqs are all waiting goes when an answer (reported to
        // `on_ping_answer` or `on_open_room_answer`) or a timeout below frees a place: no tick
        // for it, or the timer would fire again at once, forever.
        let budget_full = self.room_iqs_in_flight() >= ROOM_IQS;
        let rooms = self.rooms.values().filter_map(|r| match &r.state {
            State::Joined { ping: None, .. } if budget_full => None,
            _ => r.next_deadline(&self.timing),
        });
        let forms = self.open_iqs.values().map(|sent| *sent + self.timing.open_room_timeout);
        rooms.chain(forms).chain(self.next_batch()).min()
    }

    /// A push of a `groupchat` message to `room`.
    /// `from` is the push's own `from` (checked by the policy), if it has one: a room the bot is
    /// not in yet is joined from it.
    pub fn route_push(&mut self, room: &str, from: Option<&str>, now: Instant) -> PushRoute {
        let Some(room) = bare_room(room) else {
            return PushRoute::NotARoom(format!("{room:?} is not a room JID (room@service)"));
        };
        let joining_from = from.unwrap_or(&self.host);
        let r = self.rooms.entry(room.clone()).or_insert_with(|| Room::new(&self.default_nick, joining_from, false));
        match &r.state {
            State::Retrying { after, .. } => return PushRoute::Refuse(after.clone()),
            State::Stopped(failure) => return PushRoute::Refuse(failure.clone()),
            _ => {}
        }
        if let Some(from) = from.filter(|from| *from != r.from) {
            if r.current_nick().is_some() {
                return PushRoute::OtherOccupant { joined_as: r.from.clone() };
            }
            r.from = from.to_owned();
        }
        let mut actions = Vec::new();
        match &r.state {
            State::Joined { .. } => return PushRoute::Send { from: r.from.clone() },
            State::Joining { .. } | State::Retrying { .. } | State::Stopped(_) => {}
            State::Idle | State::Left => {
                r.remember_on_join = !r.configured && !r.remembered;
                actions.push(Action::Log(Level::Info, format!("joining {room} as {:?} for a push", r.nick_to_try())));
                actions.push(r.join(&room, now));
            }
        }
        r.push_waiting = true;
        PushRoute::Wait(actions)
    }

    /// The bot's place in `room` (a bare JID), when it is in it.
    pub fn occupant(&self, room: &str) -> Option<Occupant> {
        let r = self.rooms.get(room)?;
        match &r.state {
            State::Joined { nick, .. } => {
                Some(Occupant { room: room.to_owned(), nick: nick.clone(), from: r.from.clone() })
            }
            _ => None,
        }
    }

    pub(super) fn own_message_ids(&self, room: &str) -> &[String] {
        self.rooms.get(room).map_or(&[], |r| &r.own_message_ids)
    }

    pub(super) fn note_own_message(&mut self, room: &str, ids: impl Iterator<Item = String>) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        r.own_message_ids.extend(ids);
        let excess = r.own_message_ids.len().saturating_sub(OWN_MESSAGE_IDS);
        r.own_message_ids.drain(..excess);
    }

    /// How many rooms the bot wants or has been in.
    pub fn count(&self) -> usize {
        self.rooms.len()
    }

    /// Whether `room` (a bare JID) is one the bot wants or has been in.
    pub fn knows(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// The state of `room` (a bare JID), when the bot knows it: what the tests look at.
    #[cfg(test)]
    pub fn state(&self, room: &str) -> Option<&State> {
        self.rooms.get(room).map(|r| &r.state)
    }

    /// On unload (not a reload, which hands the state over): leaves every room the bot is in or
    /// joining, keeping the remembered set for the next start.
    pub fn leave_all(&mut self) -> Vec<Action> {
        // Nothing is joined again after this: no batches.
        self.started = false;
        let mut actions = Vec::new();
        for (room, r) in self.rooms.iter_mut() {
            if let Some(nick) = r.current_nick() {
                actions.push(Action::Send(stanzas::leave(room, nick, &r.from)));
                r.state = State::Idle;
            }
        }
        actions
    }
}

/// What [`Rooms::tick`] does for a room whose deadline passed.
enum Due {
    Fail(Failure),
    /// Forget a room that never let the bot in.
    Forget,
    /// Join in the next batch.
    Join,
}

/// `room@service` prepared; `None` for anything else (no node, or a nick).
fn bare_room(text: &str) -> Option<String> {
    let jid = jid::prep(text).ok()?;
    (jid.node.is_some() && jid.resource.is_none()).then(|| jid.bare())
}

/// `room@service/nick` as the bare room and the nick (none for what the room itself sends).
pub(super) fn occupant_parts(text: &str) -> Option<(String, Option<String>)> {
    let jid = jid::prep(text).ok().filter(|jid| jid.node.is_some())?;
    Some((jid.bare(), jid.resource))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::facts::MUC;

    const ROOM: &str = "dev@conference.localhost";

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn rooms_for(list: &[&str]) -> Rooms {
        let options = RoomOptions::parse(
            "component_post_",
            "bot.localhost",
            Some(list.iter().map(|r| r.to_string()).collect()),
            None,
            None,
        )
        .unwrap();
        Rooms::new("bot.localhost", &options, Timing::default())
    }

    fn presence(from: &str, presence_type: Option<&str>, codes: &[u16], condition: Option<&str>) -> PresenceFacts {
        PresenceFacts {
            from: from.into(),
            presence_type: presence_type.map(Into::into),
            status_codes: codes.to_vec(),
            error_condition: condition.map(Into::into),
        }
    }

    fn self_presence(nick: &str) -> PresenceFacts {
        presence(&format!("{ROOM}/{nick}"), None, &[110], None)
    }

    /// The stanzas among `actions`, serialized.
    fn sent(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(stanza) | Action::SelfPing { iq: stanza, .. } | Action::OpenRoom { iq: stanza, .. } => {
                    Some(stanza.to_xml())
                }
                _ => None,
            })
            .collect()
    }

    fn join_xml(nick: &str) -> String {
        format!(
            "<presence to='{ROOM}/{nick}' from='bot.localhost'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
        )
    }

    /// A room joined as `bot` at `now`.
    fn joined(now: Instant) -> Rooms {
        let mut rooms = rooms_for(&[ROOM]);
        rooms.start(now);
        rooms.on_presence(&self_presence("bot"), now).unwrap();
        rooms
    }

    fn is_retrying(rooms: &Rooms, at: Instant) -> bool {
        matches!(rooms.state(ROOM), Some(State::Retrying { at: when, .. }) if *when == at)
    }

    #[test]
    fn start_joins_configured_rooms_without_history() {
        let now = Instant::now();
        let mut rooms = rooms_for(&[ROOM, "ops@conference.localhost/Help Bot"]);
        let actions = rooms.start(now);
        assert_eq!(
            sent(&actions),
            vec![
                join_xml("bot"),
                format!(
                    "<presence to='ops@conference.localhost/Help Bot' from='bot.localhost'>\
                     <x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
                ),
            ]
        );
        assert!(rooms.start(now).is_empty(), "joined once");
        let actions = rooms.on_presence(&self_presence("bot"), now).unwrap();
        assert_eq!(actions, vec![Action::Log(Level::Info, format!("joined {ROOM} as \"bot\""))]);
        assert_eq!(
            rooms.occupant(ROOM),
            Some(Occupant { room: ROOM.into(), nick: "bot".into(), from: "bot.localhost".into() })
        );
        assert_eq!(rooms.occupant("ops@conference.localhost"), None);
    }

    #[test]
    fn other_occupants_presence_is_not_ours() {
        let now = Instant::now();
        let mut rooms = joined(now);
        assert_eq!(rooms.on_presence(&presence(&format!("{ROOM}/alice"), None, &[], None), now), None);
        assert_eq!(
            rooms.on_presence(&presence(&format!("{ROOM}/alice"), Some("unavailable"), &[307], None), now),
            None
        );
        assert_eq!(rooms.on_presence(&presence("elsewhere@conference.localhost/bot", None, &[110], None), now), None);
        assert!(rooms.occupant(ROOM).is_some());
    }

    #[test]
    fn a_new_room_is_opened() {
        let now = Instant::now();
        let mut rooms = rooms_for(&[ROOM]);
        rooms.start(now);
        let actions = rooms.on_presence(&presence(&format!("{ROOM}/bot"), None, &[110, 201], None), now).unwrap();
        assert_eq!(
            sent(&actions),
            vec![format!(
                "<iq type='set' id='room-config-1' to='{ROOM}' from='bot.localhost'>\
                 <query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
            )]
        );
    }

    #[test]
    fn a_nick_conflict_joins_with_a_suffix() {
        let now = Instant::now();
        let mut rooms = rooms_for(&[ROOM]);
        rooms.start(now);
        let conflict = |nick: &str| presence(&format!("{ROOM}/{nick}"), Some("error"), &[], Some("conflict"));
        assert_eq!(sent(&rooms.on_presence(&conflict("bot"), now).unwrap()), vec![join_xml("bot_2")]);
        assert_eq!(sent(&rooms.on_presence(&conflict("bot_2"), now).unwrap()), vec![join_xml("bot_3")]);
        rooms.on_presence(&self_presence("bot_3"), now).unwrap();
        assert_eq!(rooms.occupant(ROOM).unwrap().nick, "bot_3");
    }

    #[test]
    fn every_nick_taken_retries_later_not_in_a_loop() {
        let now = Instant::now();
        let mut rooms = rooms_for(&[ROOM]);
        rooms.start(now);
        let mut nick = "bot".to_string();
        for n in 2..=MAX_NICK_ATTEMPTS {
            let actions = rooms
                .on_presence(&presence(&format!("{ROOM}/{nick}"), Some("error"), &[], Some("conflict")), now)
                .unwrap();
            nick = format!("bot_{n}");
            assert_eq!(sent(&actions), vec![join_xml(&nick)]);
        }
        let actions =
            rooms.on_presence(&presence(&format!("{ROOM}/{nick}"), Some("error"), &[], Some("conflict")), now).unwrap();
        assert!(sent(&actions).is_empty());
        assert!(is_retrying(&rooms, now + secs(5)));
        assert_eq!(sent(&rooms.tick(now + secs(5))), vec![join_xml("bot")], "starts over from the nick");
    }

    #[test]
    fn ban_and_kick_stop_until_reload() {
        for code in [301, 307] {
            let now = Instant::now();
            let mut rooms = joined(now);
            let actions = rooms
                .on_presence(&presence(&format!("{ROOM}/bot"), Some("unavailable"), &[code, 110], None), now)
                .unwrap();
            assert!(sent(&actions).is_empty());
            assert!(matches!(&actions[..], [Action::Log(Level::Warn, _)]));
            assert!(matches!(rooms.state(ROOM), Some(State::Stopped(_))));
            assert_eq!(rooms.next_tick(), None);
            assert!(rooms.tick(now + secs(86_400)).is_empty());
            let options = RoomOptions::parse("component_post_", "bot.localhost", Some(vec![ROOM.into()]), None, None);
            let actions = rooms.reconfigure(&options.unwrap(), now + secs(100));
            assert_eq!(sent(&actions), vec![join_xml("bot")], "a reload tries again");
        }
    }

    #[test]
    fn password_and_members_only_never_loop() {
        for (condition, failure) in
            [("not-authorized", Failure::PasswordRequired), ("registration-required", Failure::MembersOnly)]
        {
            let now = Instant::now();
            let mut rooms = rooms_for(&[ROOM]);
            rooms.start(now);
            rooms.on_presence(&presence(&format!("{ROOM}/bot"), Some("error"), &[], Some(condition)), now).unwrap();
            assert_eq!(rooms.state(ROOM), Some(&State::Stopped(failure)));
            assert_eq!(rooms.next_tick(), None);
        }
    }

    #[test]
    fn rejoins_back_off_doubling_up_to_five_minutes() {
        let mut now = Instant::now();
        let mut rooms = rooms_for(&[ROOM]);
        rooms.start(now);
        let not_found = presence(&format!("{ROOM}/bot"), Some("error"), &[], Some("item-not-found"));
        for wait in [5, 10, 20, 40, 80, 160, 300, 300, 300] {
            rooms.on_presence(&not_found, now).unwrap();
            assert!(is_retrying(&rooms, now + secs(wait)), "{wait}");
            assert!(rooms.tick(now + secs(wait) - Duration::from_millis(1)).is_empty());
            now += secs(wait);
            assert_eq!(rooms.next_tick(), Some(now));
            assert_eq!(sent(&rooms.tick(now)), vec![join_xml("bot")]);
        }
        rooms.on_presence(&self_presence("bot"), now).unwrap();
        rooms.on_presence(&presence(&format!("{ROOM}/bot"), Some("unavailable"), &[110, 332], None), now).unwrap();
        assert!(is_retrying(&rooms, now + secs(5)), "joining resets the backoff");
    }

    #[test]
    fn a_join_without_answer_is_retried() {
        let now = Instant::now();
        let mut rooms = rooms_for(&[ROOM]);
        rooms.start(now);
        assert_eq!(rooms.next_tick(), Some(now + secs(30)));
        assert!(rooms.tick(now + secs(29)).is_empty());
        rooms.tick(now + secs(30));
        assert_eq!(rooms.state(ROOM), Some(&State::Retrying { at: now + secs(35), after: Failure::NoAnswer }));
    }

    #[test]
    fn dropped_or_shut_down_is_rejoined() {
        for codes in [&[110, 332][..], &[110, 333], &[110], &[]] {
            let now = Instant::now();
            let mut rooms = joined(now);
            rooms.on_presence(&presence(&format!("{ROOM}/bot"), Some("unavailable"), codes, None), now).unwrap();
            assert!(is_retrying(&rooms, now + secs(5)), "{codes:?}");
            assert_eq!(sent(&rooms.tick(now + secs(5))), vec![join_xml("bot")]);
        }
    }

    #[test]
    fn a_nick_change_is_followed() {
        let now = Instant::now();
        let mut rooms = joined(now);
        let change = presence(&format!("{ROOM}/bot"), Some("unavailable"), &[110, 303], None);
        assert_eq!(rooms.on_presence(&change, now), Some(vec![]));
        rooms.on_presence(&self_presence("robot"), now).unwrap();
        assert_eq!(rooms.occupant(ROOM).unwrap().nick, "robot");
    }

    fn ping_id(actions: &[Action]) -> String {
        match actions {
            [Action::SelfPing { room, id, .. }] if room == ROOM => id.clone(),
            other => panic!("expected one self-ping, got {other:?}"),
        }
    }

    #[test]
    fn self_ping_every_five_minutes() {
        let now = Instant::now();
        let mut rooms = joined(now);
        assert_eq!(rooms.next_tick(), Some(now + secs(300)));
        assert!(rooms.tick(now + secs(299)).is_empty());
        let actions = rooms.tick(now + secs(300));
        assert_eq!(
            sent(&actions),
            vec![format!(
                "<iq type='get' id='room-ping-1' to='{ROOM}/bot' from='bot.localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            )]
        );
        let id = ping_id(&actions);
        assert!(rooms.tick(now + secs(301)).is_empty(), "one ping at a time");
        assert!(rooms.on_ping_answer(ROOM, &id, &PingAnswer::Result, now + secs(301)).is_empty());
        assert_eq!(rooms.next_tick(), Some(now + secs(601)));
        let id = ping_id(&rooms.tick(now + secs(601)));
        let relayed = PingAnswer::Error { condition: "service-unavailable".into(), from_occupant: true };
        assert!(rooms.on_ping_answer(ROOM, &id, &relayed, now + secs(602)).is_empty());
        assert!(rooms.occupant(ROOM).is_some(), "our own side refused the ping: still in the room");
    }

    #[test]
    fn a_failed_self_ping_rejoins() {
        let answers = [
            PingAnswer::Error { condition: "not-acceptable".into(), from_occupant: false },
            PingAnswer::Error { condition: "item-not-found".into(), from_occupant: false },
            PingAnswer::Error { condition: "service-unavailable".into(), from_occupant: false },
            PingAnswer::Error { condition: "remote-server-not-found".into(), from_occupant: false },
            PingAnswer::Timeout,
        ];
        for answer in answers {
            let now = Instant::now();
            let mut rooms = joined(now);
            let id = ping_id(&rooms.tick(now + secs(300)));
            assert!(rooms.on_ping_answer(ROOM, "room-ping-0", &answer, now + secs(301)).is_empty(), "stale id");
            rooms.on_ping_answer(ROOM, &id, &answer, now + secs(301));
            assert!(is_retrying(&rooms, now + secs(306)), "{answer:?}");
            assert_eq!(sent(&rooms.tick(now + secs(306))), vec![join_xml("bot")]);
        }
    }

    #[test]
    fn an_unanswered_self_ping_rejoins() {
        let now = Instant::now();
        let mut rooms = joined(now);
        ping_id(&rooms.tick(now + secs(300)));
        assert_eq!(rooms.next_tick(), Some(now + secs(360)));
        rooms.tick(now + secs(360));
        assert_eq!(rooms.state(ROOM), Some(&State::Retrying { at: now + secs(365), after: Failure::NoAnswer }));
    }

    #[test]
    fn refused_groupchat_rejoins() {
        let now = Instant::now();
        let mut rooms = joined(now);
        let refusal = MessageFacts {
            from: ROOM.into(),
            message_type: Some("error".into()),
            error_condition: Some("not-acceptable".into()),
            ..Default::default()
        };
        rooms.on_error_message(&refusal, now);
        assert!(is_retrying(&rooms, now + secs(5)));
    }

    #[test]
    fn the_bots_presence_joins_remembers_and_leaves() {
        let now = Instant::now();
        let mut rooms = rooms_for(&[]);
        let room = "games@conference.example.org";
        let mut join = Element::new("presence")
            .with_attr("to", &format!("{room}/Quiz"))
            .with_attr("from", "bot.localhost")
            .with_child(Element::new("x").with_attr("xmlns", MUC));
        let actions = rooms.on_own_presence(&mut join, now);
        assert!(!actions.contains(&Action::StoreRemembered), "not before the room lets the bot in");
        assert_eq!(rooms.remembered(), vec![]);
        assert_eq!(
            join.to_xml(),
            format!(
                "<presence to='{room}/Quiz' from='bot.localhost'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
            )
        );
        let actions = rooms.on_presence(&presence_from(room, "Quiz"), now).unwrap();
        assert!(actions.contains(&Action::StoreRemembered));
        assert_eq!(
            rooms.remembered(),
            vec![RememberedRoom { room: room.into(), nick: "Quiz".into(), from: "bot.localhost".into() }]
        );
        assert_eq!(rooms.occupant(room).unwrap().nick, "Quiz");
        // A presence update to a room the bot is in changes nothing.
        let mut away =
            Element::new("presence").with_attr("to", &format!("{room}/Quiz")).with_attr("from", "bot.localhost");
        assert!(rooms.on_own_presence(&mut away, now).is_empty());
        assert!(!crate::room::stanzas::is_join(&away));
        let mut leave = away.clone().with_attr("type", "unavailable");
        let actions = rooms.on_own_presence(&mut leave, now);
        assert!(actions.contains(&Action::StoreRemembered));
        assert_eq!(rooms.remembered(), vec![]);
        assert_eq!(rooms.state(room), Some(&State::Left));
        // The room confirms; a later self-presence (a crossed rejoin) is answered by leaving.
        let gone = presence(&format!("{room}/Quiz"), Some("unavailable"), &[110], None);
        assert_eq!(rooms.on_presence(&gone, now), Some(vec![]));
        assert_eq!(rooms.next_tick(), None);
    }

    fn presence_from(room: &str, nick: &str) -> PresenceFacts {
        presence(&format!("{room}/{nick}"), None, &[110], None)
    }

    #[test]
    fn a_presence_to_a_user_is_not_a_join() {
        let now = Instant::now();
        let mut rooms = joined(now);
        let mut directed =
            Element::new("presence").with_attr("to", "alice@localhost/phone").with_attr("from", "bot.localhost");
        assert!(rooms.on_own_presence(&mut directed, now).is_empty());
        assert!(!crate::room::stanzas::is_join(&directed));
        // The same service as a room the bot is in: a join, even without the MUC element.
        let mut other_room =
            Element::new("presence").with_attr("to", "ops@conference.localhost/bot").with_attr("from", "bot.localhost");
        assert!(!rooms.on_own_presence(&mut other_room, now).is_empty());
        assert!(crate::room::stanzas::is_join(&other_room));
    }

    #[test]
    fn one_occupant_per_room() {
        let now = Instant::now();
        let mut rooms = joined(now);
        let mut second =
            Element::new("presence").with_attr("to", &format!("{ROOM}/alice")).with_attr("from", "alice@bot.localhost");
        let actions = rooms.on_own_presence(&mut second, now);
        assert!(matches!(&actions[..], [Action::Log(Level::Debug, _)]));
        assert_eq!(rooms.occupant(ROOM).unwrap().from, "bot.localhost");
    }

    #[test]
    fn remembered_rooms_survive_a_restart() {
        let now = Instant::now();
        let mut rooms = rooms_for(&[ROOM]);
        let stored = vec![
            RememberedRoom {
                room: "Games@Conference.example.org".into(),
                nick: "Quiz".into(),
                from: "quiz@bot.localhost".into(),
            },
            RememberedRoom { room: "x@conference.localhost".into(), nick: "n".into(), from: "other.host".into() },
            RememberedRoom { room: "conference.localhost".into(), nick: "n".into(), from: "bot.localhost".into() },
        ];
        let actions = rooms.load_remembered(stored);
        assert_eq!(actions.iter().filter(|a| matches!(a, Action::Log(Level::Warn, _))).count(), 2);
        let joins = sent(&rooms.start(now));
        assert_eq!(joins.len(), 2);
        assert!(joins.contains(&format!(
            "<presence to='games@conference.example.org/Quiz' from='quiz@bot.localhost'>\
             <x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
        )));
        assert_eq!(
            rooms.remembered(),
            vec![RememberedRoom {
                room: "games@conference.example.org".into(),
                nick: "Quiz".into(),
                from: "quiz@bot.localhost".into()
            }]
        );
    }

    #[test]
    fn a_reload_hands_over_without_flicker() {
        let now = Instant::now();
        let old = joined(now);
        let mut new = old.clone();
        let same = RoomOptions::parse("component_post_", "bot.localhost", Some(vec![ROOM.into()]), None, None).unwrap();
        assert!(new.reconfigure(&same, now).is_empty());
        assert!(new.occupant(ROOM).is_some());

        let mut new = old.clone();
        let renamed =
            RoomOptions::parse("component_post_", "bot.localhost", Some(vec![format!("{ROOM}/Helper")]), None, None);
        assert_eq!(sent(&new.reconfigure(&renamed.unwrap(), now)), vec![join_xml("Helper")]);

        let mut new = old.clone();
        let none = RoomOptions::parse("component_post_", "bot.localhost", None, None, None).unwrap();
        assert_eq!(
            sent(&new.reconfigure(&none, now)),
            vec![format!("<presence to='{ROOM}/bot' from='bot.localhost' type='unavailable'/>")]
        );
        assert!(!new.knows(ROOM));
    }

    #[test]
    fn a_push_joins_first_then_is_sent() {
        let now = Instant::now();
        let mut rooms = rooms_for(&[]);
        let PushRoute::Wait(actions) = rooms.route_push(ROOM, None, now) else { panic!("should wait") };
        assert!(!actions.contains(&Action::StoreRemembered), "not before the room lets the bot in");
        assert_eq!(sent(&actions), vec![join_xml("bot")]);
        assert_eq!(rooms.route_push(ROOM, None, now), PushRoute::Wait(vec![]), "already joining");
        let actions = rooms.on_presence(&self_presence("bot"), now).unwrap();
        assert!(actions.contains(&Action::RoomReady { room: ROOM.into(), from: "bot.localhost".into() }));
        assert!(actions.contains(&Action::StoreRemembered));
        assert_eq!(rooms.remembered().len(), 1);
        assert_eq!(rooms.route_push(ROOM, None, now), PushRoute::Send { from: "bot.localhost".into() });
        assert_eq!(
            rooms.route_push(ROOM, Some("alerts@bot.localhost"), now),
            PushRoute::OtherOccupant { joined_as: "bot.localhost".into() }
        );
        assert!(matches!(rooms.route_push("not a room", None, now), PushRoute::NotARoom(_)));
        assert!(matches!(rooms.route_push(&format!("{ROOM}/nick"), None, now), PushRoute::NotARoom(_)));
    }

    #[test]
    fn a_push_joins_from_its_own_jid() {
        let now = Instant::now();
        let mut rooms = rooms_for(&[]);
        let PushRoute::Wait(actions) = rooms.route_push(ROOM, Some("alerts@bot.localhost"), now) else {
            panic!("should wait")
        };
        assert_eq!(
            sent(&actions),
            vec![format!(
                "<presence to='{ROOM}/bot' from='alerts@bot.localhost'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
            )]
        );
        rooms.on_presence(&self_presence("bot"), now).unwrap();
        assert_eq!(rooms.remembered()[0].from, "alerts@bot.localhost");
    }

    #[test]
    fn a_push_to_a_room_that_refuses_gets_its_status() {
        let cases = [
            (Some("forbidden"), 403),
            (Some("item-not-found"), 404),
            (Some("remote-server-timeout"), 504),
            (None, 504), // no answer within the join timeout
        ];
        for (condition, status) in cases {
            let now = Instant::now();
            let mut rooms = rooms_for(&[]);
            assert!(matches!(rooms.route_push(ROOM, None, now), PushRoute::Wait(_)));
            let actions = match condition {
                Some(c) => {
                    rooms.on_presence(&presence(&format!("{ROOM}/bot"), Some("error"), &[], Some(c)), now).unwrap()
                }
                None => rooms.tick(now + secs(30)),
            };
            let failed: Vec<u16> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::RoomFailed { room, failure } if room == ROOM => Some(failure.push_status()),
                    _ => None,
                })
                .collect();
            assert_eq!(failed, vec![status], "{condition:?}");
            // The next push is answered at once, without asking the room again.
            match rooms.route_push(ROOM, None, now + secs(1)) {
                PushRoute::Refuse(failure) => assert_eq!(failure.push_status(), status),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Whatever keeps a room asked for by a push or a presence of the bot's from letting it in
    /// (no such room, a refusal that would pass, no answer, a server that cannot be reached),
    /// the room is never stored and never rejoined on its own: the next push asks again.
    #[test]
    fn a_room_is_remembered_only_once_joined() {
        let room = "typo@conference.localhost";
        let answers: [Option<&str>; 4] =
            [Some("item-not-found"), Some("remote-server-not-found"), Some("service-unavailable"), None];
        for answer in answers {
            for by_presence in [false, true] {
                let now = Instant::now();
                let mut rooms = rooms_for(&[]);
                let mut actions = if by_presence {
                    let mut join = Element::new("presence")
                        .with_attr("to", &format!("{room}/bot"))
                        .with_attr("from", "bot.localhost")
                        .with_child(Element::new("x").with_attr("xmlns", MUC));
                    rooms.on_own_presence(&mut join, now)
                } else {
                    let PushRoute::Wait(actions) = rooms.route_push(room, None, now) else { panic!("should wait") };
                    actions
                };
                let case = format!("{answer:?}, by presence: {by_presence}");
                actions.extend(
                    match answer {
                        Some(c) => {
                            rooms.on_presence(&presence(&format!("{room}/bot"), Some("error"), &[], Some(c)), now)
                        }
                        None => Some(rooms.tick(now + secs(30))),
                    }
                    .unwrap(),
                );
                let retry = rooms.next_tick().expect("a retry is due");
                actions.extend(rooms.tick(retry));
                assert!(!actions.contains(&Action::StoreRemembered), "{case}: {actions:?}");
                assert_eq!(rooms.remembered(), vec![], "{case}");
                assert!(
                    sent(&actions).iter().filter(|s| s.starts_with("<presence")).count() <= 1,
                    "{case}: {actions:?}"
                );
                assert!(!rooms.knows(room), "{case}: forgotten");
                assert_eq!(rooms.next_tick(), None, "{case}: nothing more to do");
                // The next push asks the room again.
                let PushRoute::Wait(actions) = rooms.route_push(room, None, retry) else { panic!("should wait") };
                assert_eq!(sent(&actions).len(), 1, "{case}");
            }
        }
    }

    fn many_rooms(count: usize) -> Vec<String> {
        (0..count).map(|n| format!("room{n}@conference.localhost")).collect()
    }

    /// The joins among `actions`, checked to be at most one batch.
    fn batch_of_joins(actions: &[Action]) -> Vec<String> {
        let joins: Vec<String> = sent(actions).into_iter().filter(|s| s.starts_with("<presence")).collect();
        assert!(joins.len() <= JOINS_PER_BATCH, "{} joins in one turn", joins.len());
        joins
    }

    #[test]
    fn thousands_of_rooms_are_joined_in_paced_batches() {
        let list = many_rooms(5000);
        let mut rooms = rooms_for(&list.iter().map(String::as_str).collect::<Vec<_>>());
        let pace = Timing::default().join_pace;
        let mut now = Instant::now();
        let mut joined = std::collections::BTreeSet::new();
        let mut actions = rooms.start(now);
        let mut turns = 1;
        loop {
            for join in batch_of_joins(&actions) {
                assert!(joined.insert(join), "each room joined once");
            }
            if joined.len() == list.len() {
                break;
            }
            let next = rooms.next_tick().expect("more batches");
            assert_eq!(next, now + pace);
            assert!(batch_of_joins(&rooms.tick(next - Duration::from_millis(1))).is_empty(), "not before its time");
            now = next;
            actions = rooms.tick(now);
            turns += 1;
        }
        assert_eq!(turns, list.len().div_ceil(JOINS_PER_BATCH));
    }

    #[test]
    fn retries_of_many_rooms_are_paced_too() {
        let list = many_rooms(100);
        let mut rooms = rooms_for(&list.iter().map(String::as_str).collect::<Vec<_>>());
        let mut now = Instant::now();
        let mut joins = batch_of_joins(&rooms.start(now)).len();
        while joins < list.len() {
            now = rooms.next_tick().unwrap();
            joins += batch_of_joins(&rooms.tick(now)).len();
        }
        // No room answers: every join fails after the join timeout, and every rejoin is due 5 s
        // later, within half a second of each other.
        let mut rejoins = 0;
        while rejoins < 2 * list.len() {
            now = rooms.next_tick().unwrap();
            rejoins += batch_of_joins(&rooms.tick(now)).len();
        }
    }

    /// A room answering a self-presence with status 201 ("created") the bot did not cause: no
    /// owner iq for it, however many come. Only the answer to the bot's own join may ask for
    /// one, once.
    #[test]
    fn an_unsolicited_201_asks_for_nothing() {
        let now = Instant::now();
        let mut rooms = joined(now);
        let created = presence(&format!("{ROOM}/bot"), None, &[110, 201], None);
        for _ in 0..300 {
            assert_eq!(sent(&rooms.on_presence(&created, now).unwrap()), Vec::<String>::new());
        }
        let mut rooms = rooms_for(&[ROOM]);
        rooms.start(now);
        assert_eq!(sent(&rooms.on_presence(&created, now).unwrap()).len(), 1, "the bot's join created it");
        assert_eq!(sent(&rooms.on_presence(&created, now).unwrap()), Vec::<String>::new(), "once per join");
    }

    /// Whatever the rooms do (hundreds of rooms created by the bot's joins, every self-ping due
    /// at once, no answers), the iqs they have waiting stay within their share of Prosody's
    /// `send_iq` table, and the pushes' share is apart: a room never evicts a pushed iq.
    #[test]
    fn the_rooms_iqs_stay_within_their_share() {
        let pushes = usize::try_from(crate::config::MAX_PUSH_IQS).unwrap();
        assert!(pushes + ROOM_IQS < SEND_IQ_TRACKED, "pushes {pushes} + rooms {ROOM_IQS}");
        let list = many_rooms(200);
        let mut rooms = rooms_for(&list.iter().map(String::as_str).collect::<Vec<_>>());
        let mut now = Instant::now();
        let mut joins = batch_of_joins(&rooms.start(now)).len();
        while joins < list.len() {
            now = rooms.next_tick().unwrap();
            joins += batch_of_joins(&rooms.tick(now)).len();
        }
        // Every join created its room: forms to open them, at most ROOM_IQS waiting at once.
        let mut waiting: Vec<String> = Vec::new();
        let mut opened = std::collections::BTreeSet::new();
        let mut note = |actions: Vec<Action>, waiting: &mut Vec<String>| {
            for action in actions {
                match action {
                    Action::OpenRoom { room, id, .. } => {
                        assert!(opened.insert(room), "one form per join");
                        waiting.push(id);
                    }
                    Action::SelfPing { id, .. } => waiting.push(id),
                    _ => {}
                }
            }
            assert!(waiting.len() <= ROOM_IQS, "{} room iqs waiting", waiting.len());
        };
        for room in &list {
            let actions = rooms.on_presence(&presence(&format!("{room}/bot"), None, &[110, 201], None), now).unwrap();
            note(actions, &mut waiting);
        }
        assert_eq!(waiting.len(), ROOM_IQS);
        while let Some(id) = waiting.pop() {
            let actions = rooms.on_open_room_answer(&id, now);
            note(actions, &mut waiting);
        }
        assert_eq!(opened.len(), list.len(), "every room opened in the end");
        // Every self-ping due at once: ROOM_IQS go, and the timer is not asked to fire again
        // before one of them can be answered or time out.
        now += secs(300);
        let actions = rooms.tick(now);
        let pings: Vec<(String, String)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::SelfPing { room, id, .. } => Some((room.clone(), id.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(pings.len(), ROOM_IQS);
        assert!(rooms.next_tick().unwrap() > now, "no tick for pings that cannot go yet");
        // An answer frees a place for the next one.
        let (room, id) = &pings[0];
        let next = rooms.on_ping_answer(room, id, &PingAnswer::Result, now);
        assert_eq!(next.iter().filter(|a| matches!(a, Action::SelfPing { .. })).count(), 1);
    }

    #[test]
    fn own_message_ids_are_bounded() {
        let mut rooms = joined(Instant::now());
        rooms.note_own_message(ROOM, (0..100).map(|n| n.to_string()));
        let kept = rooms.own_message_ids(ROOM);
        assert_eq!(
            (kept.len(), kept.first().map(String::as_str), kept.last().map(String::as_str)),
            (64, Some("36"), Some("99"))
        );
    }

    #[test]
    fn leave_all_on_unload_keeps_the_remembered_set() {
        let now = Instant::now();
        let mut rooms = joined(now);
        rooms.route_push("games@conference.localhost", None, now);
        rooms.on_presence(&presence_from("games@conference.localhost", "bot"), now).unwrap();
        let leaves = sent(&rooms.leave_all());
        assert_eq!(leaves.len(), 2);
        assert_eq!(rooms.next_tick(), None, "no joins after leaving");
        assert_eq!(rooms.remembered().len(), 1);
    }
}
