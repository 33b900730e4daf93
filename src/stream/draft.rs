//! The answer as it is being written, and when the user sees it: [`Draft`] holds the text so
//! far and decides which stanza is due when — the first message, the corrections that follow
//! it, the final one — and when the stream has run out of time. Time is always a parameter.
//!
//! # The schedule, and why
//!
//! - **The first message goes as soon as the text holds more than white space.** Language
//!   models often begin with a line break or a space, and a bubble with nothing in it is worse
//!   than none. It is not batched: the time to the first words is what users judge a bot by,
//!   and waiting would save no stanza (the corrections' pace, not the first message, sets how
//!   many there are). Pieces that arrive together are still one message, because the reader
//!   applies every piece of a read before it asks what is due, and an answer that arrives
//!   whole is one plain message ([`Stage::Whole`]), as if it had not been streamed.
//! - **Intermediate corrections** carry the whole text so far, only when it changed, never
//!   sooner than `stream_interval` after the stanza before. `stream_max_corrections` counts
//!   every correction of the answer, the final one included, so an answer is never more than
//!   `1 + stream_max_corrections` stanzas, whatever happens; one correction is always kept for
//!   the end.
//! - **Past the first half of the budget, the wait grows** so it lasts: the wait after a
//!   stanza is the longer of `stream_interval` and (time since the first message) / (the
//!   intermediate corrections left). Until about half of them are used (15 s at the defaults)
//!   the text moves every interval; after that the wait grows with the answer's age, so the
//!   budget is spent at a slowing pace instead of all in the first half minute; and with one
//!   left it is only used when the answer has doubled its age. At the defaults the last one
//!   falls well after `stream_timeout` (300 s): the text keeps moving for as long as a stream
//!   may last (tested). Estimating from elapsed time needs no guess of the answer's length;
//!   spreading the budget evenly over `stream_timeout` would show a 20 s answer only every
//!   10 s.
//! - **The final correction** goes when the stream ends, at once: the exact full text, without
//!   `no-store`, so archives and room history keep the answer the user saw last. It is sent
//!   when the text changed since the last stanza, and also when it did not but an
//!   intermediate correction was sent: those are `no-store`, so without a final one the
//!   archive would keep the first message's few words. Only when the first message already
//!   holds the exact answer is there nothing to correct ([`Finish::AlreadyFinal`]: a standalone
//!   `<active/>` ends the composing, and the message shows no "edited" mark).
//! - **A stream cut short** (reset, malformed, idle, too long) keeps the text so far, trailing
//!   white space trimmed, followed by a paragraph `(answer cut off)` ([`CUT_MARKER`]): plain
//!   words a reader cannot take for part of the answer, as `[…]` or `…` could be. With no text
//!   at all, nothing was sent, and the sender gets the error ([`Cut::outcome`]) as for any
//!   failed answer.
//! - **Deadlines.** The stream ends cut short when no piece arrived for the module's
//!   `timeout` (a keep-alive object `{}` counts; SSE comments do not, they are not events), or
//!   when it has lasted `stream_timeout` since its first byte.

use std::time::{Duration, Instant};

use super::options::StreamOptions;
use super::parse::Edit;
use crate::config::{Config, Profile};
use crate::outcome::{Outcome, StanzaError, BAD_REPLY, CONNECTION_FAILURE, TIMED_OUT};

/// What a stream cut short ends with, after the text so far (as a paragraph of its own).
pub const CUT_MARKER: &str = "(answer cut off)";

/// What bounds one stream: the stream options, and the module's own limits that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The stream options.
    pub stream: StreamOptions,
    /// `<prefix>timeout`: the longest silence between two pieces.
    pub idle: Duration,
    /// `<prefix>max_reply_size`: the longest the text may grow, in bytes.
    pub max_text: usize,
    /// Whose options these are, for the messages.
    pub profile: Profile,
}

impl Limits {
    /// The limits of a stream of the module `config` describes.
    pub fn of(config: &Config, stream: StreamOptions) -> Limits {
        Limits {
            stream,
            idle: config.timeout,
            max_text: usize::try_from(config.max_reply_size).unwrap_or(usize::MAX),
            profile: config.profile,
        }
    }
}

/// Which stanza of the answer an [`Update`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The answer in one plain message: the stream ended before its first message was due.
    Whole,
    /// The first message, while the answer is being written.
    First,
    /// A correction while the answer is being written (`no-store`).
    Intermediate,
    /// The last correction: the final text.
    Final,
}

/// A stanza of the answer to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Which one it is.
    pub stage: Stage,
    /// Its own id.
    pub id: String,
    /// The first message's id, for a correction.
    pub replaces: Option<String>,
    /// The whole text the user should see.
    pub text: String,
}

/// Why a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The body ended, or `data: [DONE]`.
    Complete,
    /// It was cut short.
    Cut(Cut),
}

/// Why a stream was cut short, and the error its sender gets if there was no text at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The stanza error, when nothing was sent.
    pub error: StanzaError,
    /// What happened, for the log.
    pub why: String,
}

impl Cut {
    /// The connection broke (reset, closed, a transport error) before the stream ended.
    pub fn broken(why: &str) -> Cut {
        Cut { error: CONNECTION_FAILURE, why: format!("the connection broke: {why}") }
    }

    /// A line or event could not be read (the parser's message says what and where).
    pub fn malformed(why: &str) -> Cut {
        Cut { error: BAD_REPLY, why: why.to_owned() }
    }

    /// The outcome for a stream cut short before it had any text.
    pub fn outcome(&self) -> Outcome {
        Outcome::Error(self.error.clone(), format!("streamed answer cut off: {}", self.why))
    }
}

/// How a stream ends for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Send this: the final correction, or the whole answer in one message.
    Send(Update),
    /// The first message already shows the exact answer: no correction, only `<active/>`.
    AlreadyFinal,
    /// There was no text at all, and nothing was sent: the stream's outcome is the one of an
    /// answer without a reply (`Ending::Complete`) or its [`Cut::outcome`].
    NoText,
}

/// One streamed answer: its text so far, what was sent of it, and what is due next.
#[derive(Debug, Clone)]
pub struct Draft {
    limits: Limits,
    id_base: String,
    text: String,
    /// The text changed since the last stanza was sent (it may have changed back).
    changed: bool,
    started: Instant,
    last_piece: Instant,
    /// Since when the text holds more than white space, until the first message goes.
    has_words_since: Option<Instant>,
    first_sent_at: Option<Instant>,
    last_sent_at: Option<Instant>,
    /// The wait after the last stanza before an intermediate correction may follow it.
    wait: Duration,
    /// The text of the last stanza sent.
    sent_text: String,
    /// Stanzas sent, for their ids.
    sent: u32,
    intermediates: u32,
    finished: bool,
}

impl Draft {
    /// A stream whose first byte came at `now`; its stanzas get ids `<id_base>-0`,
    /// `<id_base>-1`, …, so `id_base` must be unique to the answer (the delivery id is).
    pub fn new(id_base: &str, limits: Limits, now: Instant) -> Draft {
        Draft {
            limits,
            id_base: id_base.to_owned(),
            text: String::new(),
            changed: false,
            started: now,
            last_piece: now,
            has_words_since: None,
            first_sent_at: None,
            last_sent_at: None,
            wait: limits.stream.interval,
            sent_text: String::new(),
            sent: 0,
            intermediates: 0,
            finished: false,
        }
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A piece arrived at `now` with this change to the text. A text that would grow past the
    /// size limit is refused (and left as it was): the stream is then cut short.
    pub fn on_piece(&mut self, edit: Option<Edit>, now: Instant) -> Result<(), Cut> {
        if self.finished {
            return Ok(());
        }
        self.last_piece = now;
        let grown = match &edit {
            Some(Edit::Append(delta)) => self.text.len() + delta.len(),
            Some(Edit::Replace(body)) => body.len(),
            None => 0,
        };
        if grown > self.limits.max_text {
            return Err(Cut::malformed(&format!(
                "the answer grew past {} bytes ({})",
                self.limits.max_text,
                self.limits.profile.option("max_reply_size")
            )));
        }
        match edit {
            Some(Edit::Append(delta)) if !delta.is_empty() => {
                self.text.push_str(&delta);
                self.changed = true;
            }
            Some(Edit::Replace(body)) if body != self.text => {
                self.text = body;
                self.changed = true;
            }
            _ => {}
        }
        if self.text.trim().is_empty() {
            self.has_words_since = None;
        } else if self.has_words_since.is_none() {
            self.has_words_since = Some(now);
        }
        Ok(())
    }

    /// When the next stanza is due (maybe already), if one is: the first message, or an
    /// intermediate correction of a changed text while the budget allows one.
    pub fn next_due(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let Some(last_sent_at) = self.last_sent_at else { return self.has_words_since };
        if !self.changed || self.intermediates_left() == 0 {
            return None;
        }
        Some(last_sent_at.checked_add(self.wait).unwrap_or(last_sent_at))
    }

    /// When the reader must look again at the latest: the next stanza due, or the end of the
    /// stream's time ([`Draft::expired`]).
    pub fn wake_at(&self) -> Instant {
        let deadline = self.deadline();
        self.next_due().map_or(deadline, |due| due.min(deadline))
    }

    /// The stanza due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<Update> {
        if self.next_due().is_none_or(|due| due > now) {
            return None;
        }
        let stage = if self.first_sent_at.is_none() {
            self.first_sent_at = Some(now);
            Stage::First
        } else if self.text == self.sent_text {
            // Changed, and back again: nothing to correct.
            self.changed = false;
            return None;
        } else {
            self.intermediates += 1;
            Stage::Intermediate
        };
        let update = self.update(stage, self.text.clone());
        self.changed = false;
        self.sent_text.clone_from(&self.text);
        self.last_sent_at = Some(now);
        let age = now.saturating_duration_since(self.first_sent_at.unwrap_or(now));
        let left = self.intermediates_left().max(1);
        self.wait = self.limits.stream.interval.max(age / left);
        Some(update)
    }

    /// Why the stream must end at `now`, if its time ran out: too long in total, or silent for
    /// longer than the module's `timeout`.
    pub fn expired(&self, now: Instant) -> Option<Cut> {
        if self.finished {
            return None;
        }
        let profile = self.limits.profile;
        let (total, idle) = (self.limits.stream.timeout, self.limits.idle);
        if now.saturating_duration_since(self.started) >= total {
            let why = format!("it lasted {} s ({})", total.as_secs_f64(), profile.option("stream_timeout"));
            Some(Cut { error: TIMED_OUT, why })
        } else if now.saturating_duration_since(self.last_piece) >= idle {
            let why = format!("no piece for {} s ({})", idle.as_secs_f64(), profile.option("timeout"));
            Some(Cut { error: TIMED_OUT, why })
        } else {
            None
        }
    }

    /// The stream ended: what the user gets last. Nothing is due after this.
    pub fn finish(&mut self, ending: &Ending) -> Finish {
        if self.finished {
            return Finish::NoText;
        }
        self.finished = true;
        let blank = self.text.trim().is_empty();
        let text = match ending {
            Ending::Complete => std::mem::take(&mut self.text),
            Ending::Cut(_) => match self.text.trim_end() {
                "" => CUT_MARKER.to_owned(),
                kept => format!("{kept}\n\n{CUT_MARKER}"),
            },
        };
        if self.first_sent_at.is_none() {
            return if blank { Finish::NoText } else { Finish::Send(self.update(Stage::Whole, text)) };
        }
        if ending == &Ending::Complete && self.intermediates == 0 && text == self.sent_text {
            return Finish::AlreadyFinal;
        }
        Finish::Send(self.update(Stage::Final, text))
    }

    fn intermediates_left(&self) -> u32 {
        // The final correction is always kept in reserve.
        self.limits.stream.max_corrections.saturating_sub(1).saturating_sub(self.intermediates)
    }

    fn update(&mut self, stage: Stage, text: String) -> Update {
        let id = format!("{}-{}", self.id_base, self.sent);
        self.sent += 1;
        let replaces = matches!(stage, Stage::Intermediate | Stage::Final).then(|| format!("{}-0", self.id_base));
        Update { stage, id, replaces, text }
    }

    /// When the stream's time runs out, as things stand.
    fn deadline(&self) -> Instant {
        let total = self.started.checked_add(self.limits.stream.timeout);
        let idle = self.last_piece.checked_add(self.limits.idle);
        match (total, idle) {
            (Some(total), Some(idle)) => total.min(idle),
            (Some(at), None) | (None, Some(at)) => at,
            (None, None) => self.started,
        }
    }
}
