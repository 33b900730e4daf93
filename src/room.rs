//! Group chat rooms (XEP-0045): which rooms the bot is in and what it sends to stay
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
//! | [`lua`] | what Lua sees: the rooms userdata, actions as tables, the message filter `submit` uses |
//!
//! # How it is wired
//!
//! As below: [`lua`] makes the calls with `Instant::now()`, `lua/component_http.lib.lua`
//! performs the actions (`start_rooms`, `perform_room_actions`, `own_presence`, and the push
//! endpoint's `push_to_room`), and the room facts travel with the stanza as
//! [`crate::stanza::Incoming::room`] to the request ([`crate::request`]), the reply's defaults
//! ([`crate::answer`]) and the outcome ([`crate::outcome`]: no errors, chat states to the room).
//! Presence is hooked only once the component has a room.
//!
//! # The plan it was built to
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
//! **Actions.** Every call returns [`Action`]s, performed in order:
//! - `Send(stanza)` → `module:send(stanza)`;
//! - `SelfPing { room, id, iq }` → `module:send_iq(iq)`; its answer goes to
//!   `on_ping_answer(room, id, &PingAnswer::read(&answer, occupant_jid), now)`, a rejection
//!   without a stanza (the send_iq timeout) as `PingAnswer::Timeout`;
//! - `OpenRoom { room, id, iq, timeout }` → `module:send_iq(iq)`, logging an error answer, then
//!   `on_open_room_answer(id, now)` (the rooms' iqs are bounded: see `ROOM_IQS`);
//! - `Log(level, text)` → `module:log(level, "%s", text)`;
//! - `StoreRemembered` → write `remembered()` to `module:open_store()`;
//! - `RoomReady { room, from }` → send the pushes held for `room`, from `from`;
//! - `RoomFailed { room, failure }` → answer the pushes held for `room` with
//!   `failure.push_status()` and `failure.to_string()`.
//!
//! **Events → calls.** `now` is `Instant::now()`, taken by the native side when Lua calls in.
//! - `server-started` (or at load, when the server is already up): `start(now)`.
//! - A timer (`module:add_timer`) at `next_tick()`, re-armed after every call: `tick(now)`.
//! - `presence/host`, `presence/bare`, `presence/full`, before anything else handles or POSTs
//!   the presence: `on_presence(&PresenceFacts::read(&stanza), now)`. `Some(actions)`: it was
//!   about the bot's membership, so it is consumed (not POSTed, not answered as "always
//!   online"); `None`: handled as today.
//! - `message/host`, `message/bare`, `message/full`, before POSTing:
//!   `classify_message(&MessageFacts::read(&stanza, body), options.groupchat)`.
//!   [`Treatment::Room`] POSTs with the extra fields `type`, `room`, `nick` and `mentioned`
//!   (omitted when `None`), and keeps `Occupant::from` with the request for the reply;
//!   `Treatment::NotFromARoom` POSTs as today; `Treatment::Skip(why)` POSTs nothing (debug log).
//!   A message of type `error` also goes to `on_error_message(&facts, now)`.
//! - A presence from a webhook reply or a push, after `policy::check`, before sending:
//!   `on_own_presence(&mut stanza, now)` (it may add the MUC join element).
//! - A push with `type = "groupchat"`: `route_push(to, push_from, now)` → [`PushRoute`]:
//!   `Send { from }` (the push's `from` when it has none), `Wait(actions)` (perform them, hold
//!   the push until `RoomReady`/`RoomFailed` names the room), `Refuse(failure)`,
//!   `OtherOccupant` (409) or `NotARoom` (400).
//! - The answer to a room message (on the worker, from the kept [`RoomFields`] and occupant):
//!   [`RoomContext::reply`] gives `to`/`type`/`from` when the reply names none; an error
//!   outcome is never sent, only logged and counted; `<composing/>` only for a message that
//!   mentions the bot.
//! - `module.unload` that is not a reload: `leave_all()`.

pub mod facts;
pub mod failure;
pub mod lua;
pub mod membership;
pub mod mention;
pub mod message;
pub mod options;
pub mod stanzas;

pub use crate::conversation::{RoomContext, RoomReply};
pub use facts::{MessageFacts, PingAnswer, PresenceFacts};
pub use failure::Failure;
pub use membership::{Action, Occupant, PushRoute, RememberedRoom, Rooms, State, Timing};
pub use mention::mentions;
pub use message::{classify, RoomFields, RoomView, Skip, Treatment};
pub use options::{ConfiguredRoom, GroupchatMode, RoomOptions};
