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

pub mod draft;
pub mod ending;
pub mod options;
pub mod parse;
pub mod stanzas;

pub use draft::{Cut, Draft, Ending, Finish, Limits, Stage, Update, CUT_MARKER};
pub use ending::last_completion;
pub use options::StreamOptions;
pub use parse::{Edit, Event, Framing, Parser, Piece};
