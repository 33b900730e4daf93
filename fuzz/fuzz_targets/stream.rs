//! A streamed answer, read as `dispatch/stream.rs` reads it: arbitrary bytes, NDJSON or
//! server-sent events, arriving in pieces split anywhere at times chosen by the input, fed to
//! the stream [`Parser`] and a [`Draft`], the due stanzas polled after each read and between
//! reads (as the keeper does), the stream ended by its end, an error, or its deadlines.
//!
//! Invariants: no input panics; the text the user sees last is exactly the concatenation of the
//! deltas since the last `body` (cut short: that text with its trailing white space trimmed,
//! then the marker); an answer is at most `1 + max_corrections` stanzas (and one `<active/>`),
//! the first one first, every later one a correction of it; no text grows past the size limit
//! (plus the marker); every stanza is XML an independent namespace-aware parser accepts.
//!
//! Input: byte 0 picks the framing and `max_corrections` (1 to 8); then, repeatedly, a chunk
//! header (two bytes: its length, 0 to 63, and the milliseconds before it arrives, in steps
//! that reach past `stream_interval`, the idle timeout and `stream_timeout`) and its bytes.
#![no_main]

use std::time::{Duration, Instant};

use component_http_native::config::COMPONENT_HTTP;
use component_http_native::stanza::Element;
use component_http_native::stream::{
    stanzas, Draft, Edit, EndStanza, Event, Framing, Limits, Parser, Stage, StreamEnd, StreamOptions, Update,
    CUT_MARKER,
};
use libfuzzer_sys::fuzz_target;

/// A small size limit, so the fuzzer reaches it.
const MAX_TEXT: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut rest)) = data.split_first() else { return };
    let framing = if head & 1 == 0 { Framing::Ndjson } else { Framing::Sse };
    let max_corrections = u32::from(head >> 1) % 8 + 1;
    let limits = Limits {
        stream: StreamOptions {
            interval: Duration::from_millis(1000),
            max_corrections,
            timeout: Duration::from_secs(60),
        },
        idle: Duration::from_secs(10),
        max_text: MAX_TEXT,
        first_message_grace: component_http_native::stream::FIRST_MESSAGE_GRACE,
        option_prefix: COMPONENT_HTTP.prefix,
    };
    let start = Instant::now();
    let mut now = start;
    let mut parser = Parser::new(framing, MAX_TEXT, "component_post_max_reply_size");
    let mut draft = Draft::new("d1", limits, now);
    let mut stream = Stream { sent: Vec::new(), model: String::new(), limits };
    let template = Element::new("message")
        .with_attr("type", "chat")
        .with_attr("to", "user@localhost/phone")
        .with_attr("from", "echo@bot.localhost");

    let ending = loop {
        let (chunk, wait) = match rest {
            [len, wait, tail @ ..] => {
                let len = usize::from(len % 64).min(tail.len());
                let (chunk, tail) = tail.split_at(len);
                rest = tail;
                (Some(chunk), Duration::from_millis(u64::from(*wait) * 250))
            }
            _ => (None, Duration::ZERO),
        };
        // The keeper, while the worker waits for the next read: what falls due meanwhile.
        let arrives = now + wait;
        while let Some(due) = draft.next_due().filter(|&due| due <= arrives && due < draft.deadline()) {
            now = due.max(now);
            let before = stream.sent.len();
            while let Some(update) = draft.poll(now) {
                stream.sent(update, &template);
            }
            if stream.sent.len() == before {
                break;
            }
        }
        // The worker's read is bounded by the draft's deadline: past it, the stream has run out
        // of time before this chunk came.
        if draft.deadline() <= arrives {
            now = draft.deadline().max(now);
            break StreamEnd::Cut(draft.expired(now).expect("the deadline passed"));
        }
        now = arrives;
        match chunk {
            Some(chunk) => parser.push(chunk),
            None => parser.end(),
        }
        let ending =
            apply(&mut parser, &mut draft, &mut stream, now).or_else(|| draft.expired(now).map(StreamEnd::Cut));
        if let Some(ending) = ending {
            break ending;
        }
        while let Some(update) = draft.poll(now) {
            stream.sent(update, &template);
        }
        if chunk.is_none() {
            // `end` always queues the end or an error, read above.
            unreachable!("the stream did not end at the end of its body");
        }
    };

    let blank = stream.model.trim().is_empty();
    let expected = match &ending {
        StreamEnd::Complete => stream.model.clone(),
        StreamEnd::Cut(_) => match stream.model.trim_end() {
            "" => CUT_MARKER.to_owned(),
            kept => format!("{kept}\n\n{CUT_MARKER}"),
        },
    };
    let first_sent = !stream.sent.is_empty();
    match draft.end_stanza(&ending) {
        EndStanza::Send(update) => {
            assert!(!blank || first_sent, "a blank answer sent whole: {update:?}");
            assert_eq!(update.stage, if first_sent { Stage::Final } else { Stage::Whole });
            assert_eq!(update.text, expected, "the last text is not the deltas' concatenation ({ending:?})");
            stream.sent(update, &template);
        }
        EndStanza::AlreadyFinal => {
            assert_eq!(ending, StreamEnd::Complete);
            assert_eq!(stream.sent.len(), 1, "only a lone first message can be final already");
            assert_eq!(stream.sent[0].text, expected, "the first message is not the exact answer");
            assert!(stanzas::active(&template, true).is_some());
        }
        EndStanza::NoText => {
            assert!(!first_sent && blank, "no final text after {:?}", stream.sent);
        }
    }
    let count = stream.sent.len();
    assert!(count <= 1 + max_corrections as usize, "{count} stanzas for at most {max_corrections} corrections");
});

/// What was sent of the answer, and the text it must end with.
struct Stream {
    sent: Vec<Update>,
    /// The text so far by the pieces' definition: `delta`s appended, a `body` replacing it.
    model: String,
    limits: Limits,
}

impl Stream {
    fn sent(&mut self, update: Update, template: &Element) {
        let index = self.sent.len();
        match index {
            0 => assert!(matches!(update.stage, Stage::First | Stage::Whole), "{update:?} first"),
            _ => {
                assert!(matches!(update.stage, Stage::Intermediate | Stage::Final), "{update:?} after the first");
                assert_eq!(update.replaces.as_deref(), Some(self.sent[0].id.as_str()), "corrects the first");
            }
        }
        assert!(self.sent.last().is_none_or(|last| last.stage != Stage::Final), "after the final: {update:?}");
        assert_eq!(update.id, format!("d1-{index}"));
        assert!(update.text.len() <= self.limits.max_text + CUT_MARKER.len() + 2, "{} bytes", update.text.len());
        if matches!(update.stage, Stage::First | Stage::Whole) {
            assert!(!update.text.trim().is_empty(), "a first message without words: {update:?}");
        }
        for chat_states in [false, true] {
            let written = stanzas::build(template, &update, chat_states).to_xml();
            if let Err(e) = roxmltree::Document::parse(&written) {
                panic!("sent {written:?}, which a namespace-aware parser refuses: {e}");
            }
        }
        self.sent.push(update);
    }
}

/// Every event of a read, as `apply_events` does it; the ending, if it came.
fn apply(parser: &mut Parser, draft: &mut Draft, stream: &mut Stream, now: Instant) -> Option<StreamEnd> {
    while let Some(event) = parser.next_event() {
        let piece = match event {
            Ok(Event::Piece(piece)) => piece,
            Ok(Event::End) => return Some(StreamEnd::Complete),
            Err(why) => return Some(StreamEnd::Cut(component_http_native::stream::Cut::malformed(&why))),
        };
        let edit = piece.edit.clone();
        if let Err(cut) = draft.on_piece(piece.edit, now) {
            return Some(StreamEnd::Cut(cut));
        }
        match edit {
            Some(Edit::Append(delta)) => stream.model.push_str(&delta),
            Some(Edit::Replace(body)) => stream.model = body,
            None => {}
        }
        assert_eq!(draft.text(), stream.model, "the draft's text is not the pieces'");
        assert!(stream.model.len() <= MAX_TEXT);
    }
    None
}
