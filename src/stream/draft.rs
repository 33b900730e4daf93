//! The answer as it is being written, and when the user sees it: [`Draft`] holds the text so
//! far and decides which stanza is due when — the first message, the corrections that follow
//! it, the final one — and when the stream has run out of time. Time is always a parameter.
//!
//! # The schedule, and why
//!
//! - **The first message goes [`FIRST_MESSAGE_GRACE`] (50 ms) after the text first holds
//!   more than white space.** Language models often begin with a line break or a space, and a
//!   bubble with nothing in it is worse than none. It is not batched beyond that: the time to
//!   the first words is what users judge a bot by, and waiting would save no stanza (the
//!   corrections' pace, not the first message, sets how many there are). The 50 ms are for the
//!   end of an answer that arrives whole: an NDJSON body's end shows only at the read after its
//!   last line, and without them that answer would be a first message and a standalone
//!   `<active/>` instead of one plain message ([`Stage::Whole`]), as if it had not been
//!   streamed. Short enough not to be seen, long enough for a read whose bytes are already
//!   there. Pieces that arrive together are one message too, because the reader applies every
//!   piece of a read before it asks what is due.
//! - **Intermediate corrections** carry the whole text so far, only when it changed, never
//!   sooner than `stream_interval` after the stanza before. `stream_max_corrections` counts
//!   every correction of the answer, the final one included, so an answer is never more than
//!   `1 + stream_max_corrections` stanzas, whatever happens; one correction is always kept for
//!   the end.
//! - **Past the first half of the budget, the wait grows** so the budget lasts: the wait after
//!   a stanza is the longer of `stream_interval` and (time since the first message) /
//!   (intermediate corrections left). That is the budget left spread evenly over the time
//!   left if the answer lasts twice its present age, the one estimate that needs no guess of
//!   its length. Until about half of the budget is used (15 s at the defaults) the text moves
//!   every interval, which covers the typical answer of a language model whole; after that the
//!   pace slows with the answer's age (a gap of 3 s at 25 s, 11 s at 45 s), and the last
//!   intermediate correction goes when the answer has doubled its age since the one before
//!   (225 s at the defaults). A longer answer shows its end with the final correction. Tested
//!   at these figures, and for a ten-hour stream. Spreading the budget evenly over
//!   `stream_timeout` instead would show a 20 s answer only every 10 s, and growing the
//!   interval from the start so the budget lasts exactly to `stream_timeout` would show it
//!   every 3 s: the common, short answers would pay for the rare, long ones.
//! - **The final correction** goes when the stream ends, at once: the exact full text, without
//!   `no-store`, so archives and room history keep the answer the user saw last. It is sent
//!   when the text changed since the last stanza, and also when it did not but an
//!   intermediate correction was sent: those are `no-store`, so without a final one the
//!   archive would keep the first message's few words. Only when the first message already
//!   holds the exact answer is there nothing to correct ([`EndStanza::AlreadyFinal`]: a standalone
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
use crate::outcome::{Outcome, StanzaError, BAD_REPLY, CONNECTION_FAILURE, INTERNAL, TIMED_OUT, UNLOADED};

/// How long the first message waits after the first words (see the module docs).
pub const FIRST_MESSAGE_GRACE: Duration = Duration::from_millis(50);

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
    /// How long the first message waits after the first words: [`FIRST_MESSAGE_GRACE`] (0 in
    /// tests of the schedule itself).
    pub first_message_grace: Duration,
    /// The prefix of the options of the module that reads the stream (`component_post_`,
    /// `rest_`), so its messages name the operator's options.
    pub option_prefix: &'static str,
}

impl Limits {
    fn option(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.option_prefix)
    }
}

/// Which stanza of the answer an [`Update`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The answer in one plain message: the stream ended before its first message went.
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
pub enum StreamEnd {
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

    /// The component stopped (unloaded, or its reload failed) while the answer streamed.
    pub fn stopped() -> Cut {
        Cut { error: UNLOADED, why: "the component stopped".into() }
    }

    /// A bug in the module broke the stream (a panic, caught): it ends like any cut.
    pub fn internal() -> Cut {
        Cut { error: INTERNAL, why: "internal error (a bug in mod_component_http)".into() }
    }

    /// The outcome for a stream cut short before it had any text.
    pub fn outcome(&self) -> Outcome {
        Outcome::Error(self.error.clone(), format!("streamed answer cut off: {}", self.why))
    }
}

/// How a stream ends for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStanza {
    /// Send this: the final correction, or the whole answer in one message.
    Send(Update),
    /// The first message already shows the exact answer: no correction, only `<active/>`.
    AlreadyFinal,
    /// There was no text at all, and nothing was sent: the stream's outcome is the one of an
    /// answer without a reply (`StreamEnd::Complete`) or its [`Cut::outcome`].
    NoText,
}

/// One streamed answer: its text so far, what was sent of it, and what is due next.
#[derive(Debug, Clone)]
pub struct Draft {
    limits: Limits,
    id_base: String,
    text: String,
    /// Where the text's trailing white space begins (0: it holds nothing else), kept per piece.
    content_end: usize,
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
}

impl Draft {
    /// A stream whose first byte came at `now`; its stanzas get ids `<id_base>-0`,
    /// `<id_base>-1`, …, so `id_base` must be unique to the answer (the delivery id is).
    pub fn new(id_base: &str, limits: Limits, now: Instant) -> Draft {
        Draft {
            limits,
            id_base: id_base.to_owned(),
            text: String::new(),
            content_end: 0,
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
        }
    }

    /// Whether the first message went.
    pub fn first_sent(&self) -> bool {
        self.first_sent_at.is_some()
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A piece arrived at `now` with this change to the text. A text that would grow past the
    /// size limit is refused (and left as it was): the stream is then cut short.
    pub fn on_piece(&mut self, edit: Option<Edit>, now: Instant) -> Result<(), Cut> {
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
                self.limits.option("max_reply_size")
            )));
        }
        // What is known of the text's white space is kept up to date from the piece alone:
        // looking at the whole text again for every piece would make a megabyte of trailing
        // spaces cost a megabyte per keep-alive.
        match edit {
            Some(Edit::Append(delta)) if !delta.is_empty() => {
                let end = content_end(&delta);
                if end > 0 {
                    self.content_end = self.text.len() + end;
                }
                self.text.push_str(&delta);
                self.changed = true;
            }
            Some(Edit::Replace(body)) if body != self.text => {
                self.content_end = content_end(&body);
                self.text = body;
                self.changed = true;
            }
            _ => {}
        }
        if self.content_end == 0 {
            self.has_words_since = None;
        } else if self.has_words_since.is_none() {
            self.has_words_since = Some(now);
        }
        Ok(())
    }

    /// When the next stanza is due (maybe already), if one is: the first message, or an
    /// intermediate correction of a changed text while the budget allows one.
    pub fn next_due(&self) -> Option<Instant> {
        let Some(last_sent_at) = self.last_sent_at else {
            return self
                .has_words_since
                .map(|since| since.checked_add(self.limits.first_message_grace).unwrap_or(since));
        };
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
        let (total, idle) = (self.limits.stream.timeout, self.limits.idle);
        if now.saturating_duration_since(self.started) >= total {
            let why = format!("it lasted {} s ({})", total.as_secs_f64(), self.limits.option("stream_timeout"));
            Some(Cut { error: TIMED_OUT, why })
        } else if now.saturating_duration_since(self.last_piece) >= idle {
            let why = format!("no piece for {} s ({})", idle.as_secs_f64(), self.limits.option("timeout"));
            Some(Cut { error: TIMED_OUT, why })
        } else {
            None
        }
    }

    /// The stream ended: what the user gets last. It takes the draft, so whoever ends the
    /// stream (the reader at the end of the body, or whoever found its time ran out) does it
    /// once.
    pub fn end_stanza(mut self, ending: &StreamEnd) -> EndStanza {
        let blank = self.content_end == 0;
        let text = match ending {
            StreamEnd::Complete => std::mem::take(&mut self.text),
            StreamEnd::Cut(_) => match &self.text[..self.content_end] {
                "" => CUT_MARKER.to_owned(),
                kept => format!("{kept}\n\n{CUT_MARKER}"),
            },
        };
        if self.first_sent_at.is_none() {
            return if blank { EndStanza::NoText } else { EndStanza::Send(self.update(Stage::Whole, text)) };
        }
        if ending == &StreamEnd::Complete && self.intermediates == 0 && text == self.sent_text {
            return EndStanza::AlreadyFinal;
        }
        EndStanza::Send(self.update(Stage::Final, text))
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

    /// When the stream's time runs out unless a piece comes first: the bound of the reader's
    /// next read.
    pub fn deadline(&self) -> Instant {
        let total = self.started.checked_add(self.limits.stream.timeout);
        let idle = self.last_piece.checked_add(self.limits.idle);
        match (total, idle) {
            (Some(total), Some(idle)) => total.min(idle),
            (Some(at), None) | (None, Some(at)) => at,
            (None, None) => self.started,
        }
    }
}

/// Where `text` ends without its trailing white space (as [`str::trim_end`] sees it), so 0 when
/// it is all white space.
fn content_end(text: &str) -> usize {
    #[cfg(test)]
    tests::SCANNED.with(|scanned| scanned.set(scanned.get() + text.len()));
    text.trim_end().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, COMPONENT_HTTP};

    const DEFAULTS: Limits = Limits {
        stream: StreamOptions {
            interval: Duration::from_secs(1),
            max_corrections: 30,
            timeout: Duration::from_secs(300),
        },
        idle: Duration::from_secs(30),
        max_text: 1 << 20,
        first_message_grace: Duration::ZERO,
        option_prefix: COMPONENT_HTTP.prefix,
    };

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn append(text: &str) -> Option<Edit> {
        Some(Edit::Append(text.into()))
    }

    /// What a reader and its timer do: before each piece, every stanza due earlier is sent
    /// when due; each piece is applied, then what is due at its arrival is sent. Returns the
    /// stanzas with the milliseconds since `start` they were sent at, and the draft.
    fn run(
        limits: Limits,
        start: Instant,
        pieces: impl IntoIterator<Item = (u64, Option<Edit>)>,
    ) -> (Vec<(u64, Update)>, Draft) {
        let mut draft = Draft::new("d1", limits, start);
        let mut sent = Vec::new();
        let ms = |t: Instant| t.duration_since(start).as_millis() as u64;
        for (arrives, edit) in pieces {
            let now = at(start, arrives);
            while let Some(due) = draft.next_due().filter(|due| *due < now) {
                sent.extend(draft.poll(due).map(|update| (ms(due), update)));
            }
            draft.on_piece(edit, now).unwrap();
            sent.extend(draft.poll(now).map(|update| (ms(now), update)));
        }
        (sent, draft)
    }

    thread_local! {
        /// Bytes handed to `content_end` on this thread: what looking for white space costs.
        pub(super) static SCANNED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn stages(sent: &[(u64, Update)]) -> Vec<(u64, Stage, usize)> {
        sent.iter().map(|(ms, update)| (*ms, update.stage, update.text.len())).collect()
    }

    #[test]
    fn the_first_message_goes_as_soon_as_there_are_words() {
        let start = Instant::now();
        let mut draft = Draft::new("d1", DEFAULTS, start);
        for (ms, piece) in [(100, "\n"), (200, " ")] {
            draft.on_piece(append(piece), at(start, ms)).unwrap();
            assert_eq!(draft.next_due(), None, "white space only");
        }
        draft.on_piece(append("Hi"), at(start, 300)).unwrap();
        assert_eq!(draft.next_due(), Some(at(start, 300)));
        let first = Update { stage: Stage::First, id: "d1-0".into(), replaces: None, text: "\n Hi".into() };
        assert_eq!(draft.poll(at(start, 300)), Some(first));
        assert_eq!(draft.next_due(), None, "nothing changed since");
        draft.on_piece(append(" there"), at(start, 400)).unwrap();
        assert_eq!(draft.next_due(), Some(at(start, 1300)), "one interval after the first message");
        assert_eq!(draft.poll(at(start, 1299)), None);
        let correction = Update {
            stage: Stage::Intermediate,
            id: "d1-1".into(),
            replaces: Some("d1-0".into()),
            text: "\n Hi there".into(),
        };
        assert_eq!(draft.poll(at(start, 1300)), Some(correction));
    }

    #[test]
    fn corrections_follow_the_schedule_and_keep_one_for_the_end() {
        // 5 corrections: the first message, then 4 intermediates, one kept for the end. The
        // wait after each is max(1 s, age / intermediates left): 0/4, 1/3, 2/2 → 1 s, then
        // 3/1 → 3 s, and none after the fourth.
        let limits = Limits { stream: StreamOptions { max_corrections: 5, ..DEFAULTS.stream }, ..DEFAULTS };
        let start = Instant::now();
        let (sent, draft) = run(limits, start, (0..100).map(|n| (n * 100, append("a"))));
        use Stage::*;
        assert_eq!(
            stages(&sent),
            [
                (0, First, 1),
                (1000, Intermediate, 11),
                (2000, Intermediate, 21),
                (3000, Intermediate, 31),
                (6000, Intermediate, 61)
            ]
        );
        assert!(sent.iter().skip(1).all(|(_, update)| update.replaces.as_deref() == Some("d1-0")));
        let ids: Vec<&str> = sent.iter().map(|(_, update)| update.id.as_str()).collect();
        assert_eq!(ids, ["d1-0", "d1-1", "d1-2", "d1-3", "d1-4"]);
        assert_eq!(draft.next_due(), None, "the budget is spent but for the final correction");
        let last = Update { stage: Final, id: "d1-5".into(), replaces: Some("d1-0".into()), text: "a".repeat(100) };
        assert_eq!(draft.end_stanza(&StreamEnd::Complete), EndStanza::Send(last));
    }

    #[test]
    fn one_correction_is_the_final_one() {
        let limits = Limits { stream: StreamOptions { max_corrections: 1, ..DEFAULTS.stream }, ..DEFAULTS };
        let start = Instant::now();
        let (sent, draft) = run(limits, start, (0..100).map(|n| (n * 100, append("a"))));
        assert_eq!(stages(&sent), [(0, Stage::First, 1)]);
        assert!(
            matches!(draft.end_stanza(&StreamEnd::Complete), EndStanza::Send(u) if u.stage == Stage::Final && u.id == "d1-1")
        );
    }

    #[test]
    fn the_cap_holds_for_very_long_streams() {
        // 20 pieces a second for ten hours: never more than 1 + max_corrections stanzas, never
        // two closer than the interval, and the final text exact.
        let start = Instant::now();
        let pieces = 20 * 3600 * 10;
        let (sent, draft) = run(DEFAULTS, start, (0..pieces).map(|n| (n * 50, append("x"))));
        assert_eq!(sent.len(), 30, "the first message and 29 intermediates");
        for pair in sent.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= 1000, "{:?} then {:?}", pair[0], pair[1]);
        }
        match draft.end_stanza(&StreamEnd::Complete) {
            EndStanza::Send(update) => {
                assert_eq!((update.stage, update.id.as_str()), (Stage::Final, "d1-30"));
                assert_eq!(update.text.len(), pieces as usize);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_pace_at_the_defaults() {
        // The benchmark's stream: the first piece after 0.5 s, then 20 a second for 20 s. The
        // first message and 15 intermediates a second apart; then, with 14 left at 15 s after
        // the first message, waits of 15/14 s, 16.07/13 s, 17.31/12 s.
        let start = Instant::now();
        let (sent, _) = run(DEFAULTS, start, (0..400).map(|n| (500 + n * 50, append("x"))));
        let times: Vec<u64> = sent.iter().map(|(ms, _)| *ms).collect();
        let every_second = (0..=15).map(|k| 500 + k * 1000);
        assert_eq!(times, every_second.chain([16_571, 17_807, 19_249]).collect::<Vec<_>>());
        // A stream as long as a stream may be (pieces every 50 ms from its first byte): the
        // waits grow with its age until the last intermediate, at twice the age of the one
        // before it.
        let (sent, draft) = run(DEFAULTS, start, (0..6000).map(|n| (n * 50, append("x"))));
        let times: Vec<u64> = sent.iter().map(|(ms, _)| *ms).collect();
        let slowing = [
            16_071, 17_307, 18_749, 20_454, 22_499, 24_999, 28_124, 32_142, 37_499, 44_999, 56_249, 74_999, 112_499,
            224_999,
        ];
        assert_eq!(times, (0..=15).map(|k| k * 1000).chain(slowing).collect::<Vec<_>>());
        assert_eq!(draft.next_due(), None);
        let cut = draft.expired(at(start, 300_000)).map(|cut| cut.why);
        assert_eq!(cut.as_deref(), Some("it lasted 300 s (component_post_stream_timeout)"));
    }

    #[test]
    fn the_final_correction_goes_when_the_archive_would_miss_the_answer() {
        let start = Instant::now();
        let whole = |text: &str| {
            EndStanza::Send(Update { stage: Stage::Whole, id: "d1-0".into(), replaces: None, text: text.into() })
        };
        let last = |id: &str, text: &str| {
            EndStanza::Send(Update {
                stage: Stage::Final,
                id: id.into(),
                replaces: Some("d1-0".into()),
                text: text.into(),
            })
        };
        // The first message already says it all: no correction, no "edited" mark.
        let (sent, draft) = run(DEFAULTS, start, [(0, append("Hi."))]);
        assert_eq!(sent.len(), 1);
        assert_eq!(draft.end_stanza(&StreamEnd::Complete), EndStanza::AlreadyFinal);
        // Changed since, even within the interval: the final correction has the exact text.
        let (_, draft) = run(DEFAULTS, start, [(0, append("Hi")), (10, append("."))]);
        assert_eq!(draft.end_stanza(&StreamEnd::Complete), last("d1-1", "Hi."));
        // Changed and back: nothing to correct.
        let replace = |text: &str| Some(Edit::Replace(text.into()));
        let (sent, draft) = run(DEFAULTS, start, [(0, append("Hi")), (10, replace("Ho")), (20, replace("Hi"))]);
        assert_eq!(sent.len(), 1);
        assert_eq!(draft.end_stanza(&StreamEnd::Complete), EndStanza::AlreadyFinal);
        // Unchanged since an intermediate correction, which archives do not keep: the final
        // one is sent all the same, so they keep the answer and not the first words.
        let (sent, draft) = run(DEFAULTS, start, [(0, append("Hi")), (10, append(".")), (1000, None), (5000, None)]);
        assert_eq!(stages(&sent), [(0, Stage::First, 2), (1000, Stage::Intermediate, 3)]);
        assert_eq!(draft.end_stanza(&StreamEnd::Complete), last("d1-2", "Hi."));
        // A body replaces the text so far.
        let (_, draft) = run(DEFAULTS, start, [(0, append("Hi")), (10, replace("Hello."))]);
        assert_eq!(draft.end_stanza(&StreamEnd::Complete), last("d1-1", "Hello."));
        // The whole answer before its first message went: one plain message.
        let draft = Draft::new("d1", DEFAULTS, start);
        let mut draft = draft;
        draft.on_piece(append("Hi"), start).unwrap();
        draft.on_piece(append(" there."), start).unwrap();
        assert_eq!(draft.end_stanza(&StreamEnd::Complete), whole("Hi there."));
        // No text at all, or only white space: nothing to send.
        let (sent, draft) = run(DEFAULTS, start, [(0, None), (10, append("\n  "))]);
        assert!(sent.is_empty());
        assert_eq!(draft.end_stanza(&StreamEnd::Complete), EndStanza::NoText);
    }

    #[test]
    fn a_cut_stream_keeps_its_text_and_says_so() {
        let start = Instant::now();
        let reset = StreamEnd::Cut(Cut::broken("connection reset by peer"));
        let (_, draft) = run(DEFAULTS, start, [(0, append("The capital of France is ")), (10, append("Par\n"))]);
        match draft.end_stanza(&reset) {
            EndStanza::Send(update) => {
                assert_eq!((update.stage, update.id.as_str()), (Stage::Final, "d1-1"));
                assert_eq!(update.text, "The capital of France is Par\n\n(answer cut off)");
            }
            other => panic!("{other:?}"),
        }
        // Even unchanged since the first message: the marker is the change.
        let (_, draft) = run(DEFAULTS, start, [(0, append("The"))]);
        assert!(matches!(draft.end_stanza(&reset), EndStanza::Send(u) if u.text == "The\n\n(answer cut off)"));
        // Before the first message went: one message, with the marker.
        let mut draft = Draft::new("d1", DEFAULTS, start);
        draft.on_piece(append("The"), start).unwrap();
        assert!(
            matches!(draft.end_stanza(&reset), EndStanza::Send(u) if u.stage == Stage::Whole && u.text == "The\n\n(answer cut off)")
        );
        // The text emptied by a body after the first message: the marker alone replaces it.
        let (_, draft) = run(DEFAULTS, start, [(0, append("The")), (10, Some(Edit::Replace(String::new())))]);
        assert!(matches!(draft.end_stanza(&reset), EndStanza::Send(u) if u.text == "(answer cut off)"));
        // No text: nothing was sent, the sender gets the error.
        let (_, draft) = run(DEFAULTS, start, [(0, append(" "))]);
        assert_eq!(draft.end_stanza(&reset), EndStanza::NoText);
        let StreamEnd::Cut(cut) = reset else { unreachable!() };
        assert_eq!(
            cut.outcome(),
            Outcome::Error(
                CONNECTION_FAILURE,
                "streamed answer cut off: the connection broke: connection reset by peer".into()
            )
        );
        assert_eq!(
            Cut::malformed("line 3: invalid JSON").outcome(),
            Outcome::Error(BAD_REPLY, "streamed answer cut off: line 3: invalid JSON".into())
        );
        assert_eq!(
            Cut::stopped().outcome(),
            Outcome::Error(UNLOADED, "streamed answer cut off: the component stopped".into())
        );
    }

    #[test]
    fn silence_and_length_end_the_stream() {
        let start = Instant::now();
        let mut draft = Draft::new("d1", DEFAULTS, start);
        assert_eq!(draft.wake_at(), at(start, 30_000), "the first piece is due within the timeout");
        assert_eq!(draft.expired(at(start, 29_999)), None);
        let idle = Some(Cut { error: TIMED_OUT, why: "no piece for 30 s (component_post_timeout)".into() });
        assert_eq!(draft.expired(at(start, 30_000)), idle);
        // A keep-alive piece counts.
        draft.on_piece(None, at(start, 20_000)).unwrap();
        assert_eq!(draft.expired(at(start, 30_000)), None);
        assert_eq!(draft.wake_at(), at(start, 50_000));
        // A stanza due comes first.
        draft.on_piece(append("a"), at(start, 21_000)).unwrap();
        assert_eq!(draft.wake_at(), at(start, 21_000));
        assert!(draft.poll(at(start, 21_000)).is_some());
        draft.on_piece(append("b"), at(start, 21_500)).unwrap();
        assert_eq!(draft.wake_at(), at(start, 22_000));
        assert!(draft.poll(at(start, 22_000)).is_some());
        // However lively, the stream ends at stream_timeout from its first byte.
        for s in 22..300 {
            draft.on_piece(None, at(start, s * 1000)).unwrap();
        }
        assert_eq!(draft.expired(at(start, 299_999)), None);
        let too_long = Some(Cut { error: TIMED_OUT, why: "it lasted 300 s (component_post_stream_timeout)".into() });
        assert_eq!(draft.expired(at(start, 300_000)), too_long);
        assert_eq!(draft.wake_at(), at(start, 300_000));
    }

    #[test]
    fn the_text_may_not_outgrow_the_reply_size_limit() {
        let limits = Limits { max_text: 10, ..DEFAULTS };
        let start = Instant::now();
        let mut draft = Draft::new("d1", limits, start);
        draft.on_piece(append("123456"), start).unwrap();
        let cut = draft.on_piece(append("78901"), start).unwrap_err();
        assert_eq!(
            cut,
            Cut { error: BAD_REPLY, why: "the answer grew past 10 bytes (component_post_max_reply_size)".into() }
        );
        assert_eq!(draft.text(), "123456", "the text before it is kept");
        draft.on_piece(Some(Edit::Replace("1234567890".into())), start).unwrap();
        assert!(draft.on_piece(Some(Edit::Replace("12345678901".into())), start).is_err());
        assert_eq!(draft.text(), "1234567890");
    }

    #[test]
    fn the_limits_of_a_module() {
        let mut config = Config::with_url("http://127.0.0.1:9/").unwrap();
        config.profile = crate::config::REST;
        let limits = config.stream_limits();
        assert_eq!((limits.idle, limits.max_text), (Duration::from_secs(30), 1 << 20));
        let draft = Draft::new("d1", limits, Instant::now());
        let why = draft.expired(Instant::now() + Duration::from_secs(300)).unwrap().why;
        assert_eq!(why, "it lasted 300 s (rest_stream_timeout)");
    }

    #[test]
    fn a_piece_costs_its_own_size_whatever_the_text_before_it() {
        // A word and a megabyte of trailing white space, then keep-alives and more white
        // space: the text is looked at only as far as each piece reaches, never whole again.
        for size in [1 << 18, 1 << 20] {
            let start = Instant::now();
            let mut draft = Draft::new("d1", Limits { max_text: 4 << 20, ..DEFAULTS }, start);
            let first = format!("a{}", " ".repeat(size));
            SCANNED.with(|scanned| scanned.set(0));
            draft.on_piece(append(&first), start).unwrap();
            let mut pieces = first.len();
            for n in 0..200 {
                let edit = if n % 2 == 0 { None } else { append(" \n") };
                pieces += edit.as_ref().map_or(0, |edit| match edit {
                    Edit::Append(text) | Edit::Replace(text) => text.len(),
                });
                draft.on_piece(edit, at(start, n)).unwrap();
            }
            let scanned = SCANNED.with(std::cell::Cell::get);
            assert!(scanned <= pieces, "{scanned} bytes looked at for {pieces} bytes of pieces");
            assert_eq!(
                draft.poll(start),
                Some(Update { stage: Stage::First, id: "d1-0".into(), replaces: None, text: draft.text().to_owned() })
            );
            // A body replacing it is looked at once, as it is a piece of its own size.
            let body = format!("  {}", " ".repeat(size));
            draft.on_piece(Some(Edit::Replace(body.clone())), start).unwrap();
            let cut = StreamEnd::Cut(Cut::broken("reset"));
            assert_eq!(
                draft.clone().end_stanza(&cut),
                EndStanza::Send(Update {
                    stage: Stage::Final,
                    id: "d1-1".into(),
                    replaces: Some("d1-0".into()),
                    text: CUT_MARKER.into()
                })
            );
            draft.on_piece(append("b\t "), start).unwrap();
            match draft.end_stanza(&cut) {
                EndStanza::Send(update) => assert_eq!(update.text, format!("{body}b\n\n{CUT_MARKER}")),
                other => panic!("{other:?}"),
            }
        }
    }
}
