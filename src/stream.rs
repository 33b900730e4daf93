//! Streamed answers (issue 18): a webhook may answer `200` with `application/x-ndjson` or
//! `text/event-stream` instead of one JSON object, and the user watches the answer being
//! written: a first message, XEP-0308 corrections at a capped pace, and a final correction.
//!
//! | file | its job |
//! |---|---|
//! | [`parse`] | bytes as they arrive → pieces (`delta`, `body`, the first object's fields) |
//! | [`draft`] | the text so far, which stanza is due when, the stream's deadlines |
//! | [`stanzas`] | the first message, the corrections, the final one, chat states |
//! | [`ending`] | the stream's last completion: its final stanza, or the sender's error |
//! | [`options`] | `<prefix>stream_interval`, `<prefix>stream_max_corrections`, `<prefix>stream_timeout` |
//!
//! All of it is owned data and plain functions of the time passed in: no thread, no clock.
//!
//! # How to wire it
//!
//! A stream is one outcome that arrives in pieces: it keeps its worker, its line and its
//! deadlines, and the main thread still only sends ready stanzas, one completion each.
//!
//! **Options** (`config.rs`). Add `stream_interval`, `stream_max_corrections` and
//! `stream_timeout` to `SUFFIXES` (so `option_names` and the shim know them), a field
//! `Config::stream`, and in `from_lua_for`: `config.stream = StreamOptions::parse(profile.prefix,
//! number(options, &n("stream_interval"))?, number(options, &n("stream_max_corrections"))?,
//! number(options, &n("stream_timeout"))?)?`. Then `Limits::of(&config, config.stream)` gives a
//! stream its bounds (`<prefix>timeout` between pieces, `<prefix>max_reply_size` for a line and
//! for the text).
//!
//! **Recognising a stream** (`http.rs`, `attempt`). After the headers, before the body is read:
//! a `200` whose `Framing::of(content_type)` is `Some`, in the JSON contract only
//! (`config.profile.format == Format::Json`; mod_rest's XML answers are not streams), becomes a
//! new `Attempt::Stream { body: response.into_body(), framing }` and a new `Verdict::Stream`,
//! never retried. Every other answer is read as today.
//!
//! **Deadlines.** Today one `timeout_global` (what is left until the stanza's deadline) bounds
//! the whole exchange, body included, and ureq fixes it when the request is sent, before
//! anyone knows the answer is a stream. ureq 3.5's other timeouts do not help: each phase
//! budget (`recv_body`, …) runs from the end of the one before, not to an absolute time, and
//! `timeout_per_read` applies to every answer. So: a connector chained after
//! `DefaultConnector` (`DefaultConnector::default().chain(Clamp)`, in a new `http/clamp.rs`)
//! whose transport forwards everything but passes `await_input` and `transmit_output` a
//! `NextTimeout` cut down to a thread-local "read by" instant the worker sets. The worker sets
//! it to the stanza's deadline when the attempt starts (so a non-streamed answer keeps exactly
//! today's bound), and, once the answer is a stream, to `draft.deadline()` before each read (the
//! last piece plus `<prefix>timeout`, or the first byte plus `<prefix>stream_timeout`, whichever
//! is sooner). `timeout_global` becomes that deadline plus `stream_timeout`, a backstop only.
//! A read that times out then ends the stream with `draft.expired(now)` (the right message), and
//! any other read error with `Cut::broken`.
//!
//! **The worker** (a new `dispatch/stream.rs`, called from `run` on `Verdict::Stream`):
//!
//! 1. `Draft::new(&job.delivery_id, limits, now)` (the delivery id makes the message ids unique
//!    across restarts) and `Parser::new(framing, max_reply_size, &profile.option("max_reply_size"))`;
//!    the draft goes into the job's `InFlight` entry (a new field, under the state lock), with
//!    the template once it is known and `chat_states` (`limits.chat_states &&
//!    incoming.chat_states`, or `RoomReply::chat_states` in a room).
//! 2. Read up to 16 KiB, `parser.push` it (`parser.end()` at the end of the body), then, under
//!    the state lock, take every event: the first piece's `fields` make the template
//!    (`element_from_json(fields, "message")` then `answer.rs`'s private `address`, to be made
//!    `pub(crate)`, with `policy::check`; a refusal is `Cut::malformed`); each piece goes to
//!    `draft.on_piece` (an `Err` is the ending); `Event::End` is `Ending::Complete`; a parser
//!    error is `Cut::malformed`. All the events of one read are applied before anything is
//!    sent, so an answer that arrives whole is one message.
//! 3. No ending yet: `draft.poll(now)` → push `Completion { send:
//!    Some(stanzas::build(&template, &update, chat_states)), log: None }` through `Shared::push`
//!    (one completion per stanza, the usual wake-up byte); mark the entry's `composing` as
//!    `Sent` once the first message went (it carries `<composing/>`), so the keeper sends no
//!    standalone one; then `wake_keeper_by(draft.next_due())` and read on.
//! 4. An ending: remove the `InFlight` entry (if it is gone, `close` answered the stanza: just
//!    return), `draft.finish(&ending)`, `last_completion(...)`, and hand that to `Shared::answer`
//!    as every outcome is (its chat state is already in it, so `mark_active` adds none; after a
//!    `NoText` it adds the standalone `<active/>` as today), count it in the stats (a `Reply`,
//!    or the error), `release_line`. After `[DONE]` do not read on: drop the body.
//!
//! A stanza that may not be answered (`complete`'s rules: an `error` message), an iq and a
//! presence get no stream: an iq `get`/`set` is answered by exactly one stanza, so a stream
//! answering one is a refused reply (`BAD_REPLY`), and the body is dropped unread.
//!
//! **The keeper** (`keeper.rs`, next to the `<composing/>` loop over `in_flight`): for every
//! entry with a draft, `draft.poll(now)` → push the stanza as in 3., and `wake_at =
//! wake_at.min(draft.next_due())`. Corrections fall due while the worker is blocked in a read
//! (a piece at 0.7 s after the first message at 0.5 s is due at 1.5 s whether or not another
//! piece comes), and only the keeper is awake then. It never ends a stream: the worker does,
//! when its read returns at `draft.deadline()` at the latest, so there is one finisher
//! (`finish` takes the draft).
//!
//! **Unload and reload.** A reload (`reconfigure`) leaves streams alone: each keeps the
//! settings and limits it started with, new options apply to the next stream. `close`, for
//! every in-flight entry with a draft, takes it and ends it with `Ending::Cut(Cut::stopped())`
//! through `last_completion`, instead of the `UNLOADED` error: the user keeps the text so far
//! and the marker (or gets that error, if there was no text). Those completions are in what
//! `close` returns, so the Lua sends them before the module goes; the worker's read fails when
//! the clients are shut down, it finds its entry gone, and returns.
//!
//! **What must wait while an answer streams to a chat.** The job stays in flight until its
//! last completion, so its line (`sender`, `bot JID`) already holds that sender's next stanzas
//! to that bot. That does not cover everything that would land after the first message in the
//! same conversation, and XEP-0308 clients (Conversations) correct only the newest message:
//! another resource of the same user (another line; clients group chats by bare JID),
//! `ordered = false`, the push endpoint, and in a room every other occupant's line. So keep in
//! `State` a map of streaming chats, keyed by the template's `from` and the bare `to`, each with
//! the completions held for it: while a chat streams, any other completion that sends a
//! `message` with a `<body>` to it is held there (chat states, presences and iqs are not:
//! they move no message); the stream's last completion is pushed, then the held ones, in
//! order. A second stream to a busy chat simply does not `poll` until the chat is free: its
//! draft keeps the text, and its first message then carries everything so far. A push to a
//! streaming chat is handed to the client (`client:hold(stanza)`, true if held) instead of
//! `module:send`, answered `202` as now, and comes out of `drain` after the final correction;
//! bound the held ones by `<prefix>queue_size`, refusing the push with `503` past it.

pub mod draft;
pub mod ending;
pub mod options;
pub mod parse;
pub mod stanzas;

pub use draft::{Cut, Draft, Ending, Finish, Limits, Stage, Update, CUT_MARKER};
pub use ending::last_completion;
pub use options::StreamOptions;
pub use parse::{Edit, Event, Framing, Parser, Piece};
