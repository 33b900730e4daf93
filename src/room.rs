//! Group chat rooms (XEP-0045, issue 17): which rooms the bot is in and what it sends to stay
//! there, what a room message means for the webhook, and where the answer goes. Owned state and
//! pure functions on plain values; Lua does the sending and the storage.
//!
//! | file | its job |
//! |---|---|
//! | [`options`] | `<prefix>rooms`, `<prefix>nick`, `<prefix>groupchat` as validated values |
//! | [`facts`] | the few facts read from a presence, a message or a ping answer |
//! | [`membership`] | [`Rooms`], the membership state machine: joins, rejoins with backoff, self-pings |
//! | [`failure`] | why the bot is not in a room: retry or stop, and a waiting push's status |
//! | [`stanzas`] | joins, leaves, self-pings, the instant-room form |
//! | [`message`] | a room message: POSTed with `room`/`nick`/`mentioned`, or never |
//! | [`mention`] | whether a body names the bot |
//! | [`reply`] | the default `to`/`type`/`from` of an answer, and no errors into the room |
//!
//! # How to wire it
//!
//! **Load.** `RoomOptions::parse(profile.prefix, host, rooms, nick, groupchat)` with the raw
//! option values (`<prefix>rooms` as a list of strings); an `Err` is the load error, as for every
//! other option. Then `Rooms::new(host, &options, Timing::default())`, and
//! `load_remembered(...)` with the entries of `module:open_store()` (each a
//! [`RememberedRoom`]: `room`, `nick`, `from`).
//!
//! **Reload.** `module.save` hands the `Rooms` over (the userdata itself, or a `clone()`);
//! `module.restore` gives it to the new instance, which calls `reconfigure(&new_options, now)`
//! instead of `new` + `start`: no leave, no join, except where the configuration changed (and
//! rooms stopped by a ban or a refusal are tried again, as the issue asks of a reload).
//!
//! **Events → calls.** Every call returns [`Action`]s, performed in order:
//! `Send(stanza)` → `module:send`; `SelfPing { room, id, iq }` → `module:send_iq(iq)`, then
//! `on_ping_answer(room, id, answer, now)` with [`PingAnswer::read`] of the answer (or
//! `PingAnswer::Timeout` when the promise is rejected without a stanza); `OpenRoom { room, iq }` → `module:send_iq(iq)`, logging an error answer; `Log(level, text)` →
//! `module:log`; `StoreRemembered` → write `remembered()` to the store; `RoomReady { room, from }`
//! → send the pushes waiting for `room` from `from`; `RoomFailed { room, failure }` → answer them
//! with `failure.push_status()` and `failure.to_string()`.
//!
//! | Lua event | call |
//! |---|---|
//! | `server-started` (or at load when already started) | `start(now)` |
//! | a timer at `next_tick()` (re-armed after every call) | `tick(now)` |
//! | `presence/full`, `presence/bare`, `presence/host` | `on_presence(&PresenceFacts::read(&stanza), now)`: `Some(actions)` means the presence was about the bot's membership (do not POST it); `None`: handle it as today |
//! | a message of type `error` | `on_error_message(&facts, now)`, and it is not POSTed when `classify_message` says `Skip` |
//! | any other message | `classify_message(&MessageFacts::read(&stanza, body), mode)`: [`Verdict::Room`] adds `type`, `room`, `nick`, `mentioned` (omitted when `None`) to the request; `Verdict::NotFromARoom` POSTs as today; `Verdict::Skip(why)` POSTs nothing (log at debug) |
//! | a webhook reply or a push that is a presence, after `policy::check` | `on_own_presence(&mut stanza, now)` before sending: it may add the MUC join element |
//! | a push with `type = "groupchat"` | `route_push(to, push_from, now)`: [`PushRoute`] `Send { from }` (set `from` if the push has none), `Wait(actions)` (perform them, hold the push until `RoomReady`/`RoomFailed`), `Refuse(failure)`, `OtherOccupant` (409) or `NotARoom` (400) |
//! | the answer to a room message | [`RoomReply::defaults`] for `to`/`type`/`from` when the reply has none; no error stanza (`send_errors` is false), chat states only when `chat_states` |
//! | `module.unload` without a reload | `leave_all()` |
//!
//! `now` is `Instant::now()` taken by the native side when Lua calls in.

pub mod facts;
pub mod failure;
pub mod membership;
pub mod mention;
pub mod message;
pub mod options;
pub mod reply;
pub mod stanzas;

pub use facts::{MessageFacts, PingAnswer, PresenceFacts};
pub use failure::Failure;
pub use membership::{Action, Occupant, PushRoute, RememberedRoom, Rooms, State, Timing};
pub use mention::mentions;
pub use message::{classify, RoomFields, RoomView, Skip, Verdict};
pub use options::{ConfiguredRoom, GroupchatMode, RoomOptions};
pub use reply::RoomReply;
