//! Streamed answers: a webhook may answer `200` with `application/x-ndjson` or
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
//! # How it is wired
//!
//! A stream is one outcome that arrives in pieces: it keeps its worker, its line and its
//! deadlines, and the main thread still only sends ready stanzas, one completion each.
//!
//! - `http.rs` recognises a stream after the headers (a `200` whose `Content-Type` is a
//!   [`Framing`], in the JSON contract only) and hands the unread body to the worker, never
//!   retried. Reads are bounded by `http/clamp.rs`: the stanza's deadline until the answer is
//!   known to be a stream, then [`Draft::deadline`] before each read.
//! - `dispatch/stream.rs` (the worker): reads up to 16 KiB at a time, parses it with no lock
//!   held, applies every piece of a read under the stream's own lock, never the dispatcher's
//!   (the first object's fields make the template, through `answer::stream_template` and the
//!   policy), sends what [`Draft::poll`] says is due, and ends the stream with
//!   [`end_completion`]. The keeper polls the drafts, each under its own lock, while their
//!   workers wait in a read. `close` ends every stream with [`Cut::stopped`]. A piece costs
//!   work in proportion to its own size, whatever the text before it.
//! - While an answer streams to a conversation, the dispatcher holds every other message with a
//!   body for it (replies, and pushes through `Client:hold`) and sends them after its last
//!   stanza, `queue_size` of them at most in all (past that, a reply becomes the sender's
//!   `wait/resource-constraint`, a push is refused); a second stream to the same conversation
//!   shows its first message only then. A stanza waiting behind a stream in its sender's line
//!   is still answered by its own deadline.
//! - A panic on the worker or the keeper ends that stream alone (cut off, logged) and lets go
//!   of its conversation and its sender's line.
//! - A reload leaves streams alone: each keeps the settings it started with.

pub mod draft;
pub mod ending;
pub mod options;
pub mod parse;
pub mod stanzas;

pub use draft::{Cut, Draft, EndStanza, Limits, Stage, StreamEnd, Update, CUT_MARKER, FIRST_MESSAGE_GRACE};
pub use ending::end_completion;
pub use options::StreamOptions;
pub use parse::{Edit, Event, Framing, Parser, Piece};
