//! Reading a streamed answer as it arrives: bytes are pushed in chunks of any size, whole
//! pieces come out. Two framings, one piece format:
//!
//! - NDJSON (`application/x-ndjson`): one JSON object per line. Lines end with LF; a CR before
//!   it is JSON whitespace and so harmless; blank lines are skipped.
//! - Server-sent events (`text/event-stream`, as the HTML standard reads them): lines end with
//!   CR, LF or CRLF; `data:` lines are joined with LF into the event's data, which a blank line
//!   dispatches; `event:`, `id:`, `retry:` and other fields, and `:` comments, are skipped; data
//!   that is exactly `[DONE]` ends the stream (as OpenAI-style APIs send it).
//!
//! Each line (NDJSON) or event (SSE) is one JSON object: `{"delta": "more text"}` appends,
//! `{"body": "…"}` replaces the whole text so far, and one with neither (say `{}`) changes
//! nothing but shows the stream is alive. The first object may also carry the other reply
//! fields (`to`, `from`, `type`, …), handed over as they are for [`crate::answer`]'s mapping;
//! in later objects they are ignored, as unknown keys are in a one-object reply.
//!
//! The first thing wrong ends the stream with an error saying what and where (line or event
//! number, never the content), for the log; the pieces before it still count.

use std::collections::VecDeque;

use serde_json::{Map, Value};

use crate::jsonmap::json_type;
use crate::stanza::check_text;

/// How a streamed body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/x-ndjson`: one object per line.
    Ndjson,
    /// `text/event-stream`: one object per event's data.
    Sse,
}

impl Framing {
    /// The framing a `Content-Type` announces (parameters and case aside), if it is a stream.
    pub fn of(content_type: Option<&str>) -> Option<Framing> {
        let media_type = content_type?.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case("application/x-ndjson") {
            Some(Framing::Ndjson)
        } else if media_type.eq_ignore_ascii_case("text/event-stream") {
            Some(Framing::Sse)
        } else {
            None
        }
    }
}

/// How one piece changes the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `delta`: appended to the text so far.
    Append(String),
    /// `body`: the whole text so far, replacing it.
    Replace(String),
}

/// One object of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The change to the text; `None` for an object without `delta` or `body` (a keep-alive,
    /// or a first object that only addresses the reply).
    pub edit: Option<Edit>,
    /// On the first object only: its other reply fields (`to`, `from`, `type`, …), without
    /// `delta` and `body`, for `answer::element_from_json`. Empty if it had none.
    pub fields: Option<Map<String, Value>>,
}

/// What the parser has for the reader.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An object.
    Piece(Piece),
    /// The stream is over: `data: [DONE]`, or the end of the body after [`Parser::end`].
    End,
}

/// Turns the bytes of a streamed body into [`Event`]s. Memory is bounded by the line limit
/// plus the chunk being pushed.
#[derive(Debug)]
pub struct Parser {
    framing: Framing,
    /// The longest line (NDJSON), or the longest data of one event (SSE), in bytes.
    limit: usize,
    /// The option that sets `limit`, named in the error.
    limit_option: String,
    /// The line being read, without its line end.
    line: Vec<u8>,
    /// The last line ended with CR: a LF next (maybe in the next chunk) ends nothing more.
    after_cr: bool,
    /// Nothing was read yet: a leading byte order mark is dropped (SSE allows one; some
    /// servers write one before NDJSON too, where JSON would refuse it).
    at_start: bool,
    /// SSE: the data lines of the event being read, joined with LF; `None` before its first.
    data: Option<Vec<u8>>,
    /// Lines read (NDJSON) or events dispatched (SSE), for error messages.
    count: u64,
    /// Objects read: the first carries the reply fields.
    objects: u64,
    ready: VecDeque<Result<Event, String>>,
    /// An error or the end was queued: later bytes are not read.
    stopped: bool,
}

impl Parser {
    /// A parser for `framing` whose lines (NDJSON) or event data (SSE) may be at most `limit`
    /// bytes long, the limit set by the option `limit_option` (`…max_reply_size`).
    pub fn new(framing: Framing, limit: usize, limit_option: &str) -> Parser {
        Parser {
            framing,
            limit,
            limit_option: limit_option.to_owned(),
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            data: None,
            count: 0,
            objects: 0,
            ready: VecDeque::new(),
            stopped: false,
        }
    }

    /// Reads the next bytes of the body, as they came.
    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.at_start {
            // The byte order mark may itself arrive split: hold back a prefix of it.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            self.line.extend_from_slice(bytes);
            if BOM.starts_with(&self.line) {
                return;
            }
            let held = std::mem::take(&mut self.line);
            self.at_start = false;
            let rest = held.strip_prefix(BOM).unwrap_or(&held);
            return self.push_lines(rest);
        }
        self.push_lines(bytes);
    }

    fn push_lines(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.stopped {
            if std::mem::take(&mut self.after_cr) && bytes[0] == b'\n' {
                bytes = &bytes[1..];
                continue;
            }
            let end = match self.framing {
                Framing::Ndjson => bytes.iter().position(|&b| b == b'\n'),
                Framing::Sse => bytes.iter().position(|&b| b == b'\n' || b == b'\r'),
            };
            let (part, rest) = match end {
                Some(end) => (&bytes[..end], Some(&bytes[end..])),
                None => (bytes, None),
            };
            if self.line.len() + part.len() > self.limit {
                let what = match self.framing {
                    Framing::Ndjson => format!("line {}", self.count + 1),
                    Framing::Sse => format!("a line of event {}", self.count + 1),
                };
                self.fail(format!("{what} is longer than {} bytes ({})", self.limit, self.limit_option));
                return;
            }
            self.line.extend_from_slice(part);
            let Some(rest) = rest else { return };
            self.after_cr = rest[0] == b'\r';
            bytes = &rest[1..];
            let line = std::mem::take(&mut self.line);
            self.take_line(&line);
            // Keep the buffer's capacity for the next line, unless a long line grew it.
            if line.capacity() <= 4096 {
                self.line = line;
                self.line.clear();
            }
        }
    }

    /// The body ended. A last NDJSON line without its LF still counts; an SSE event without
    /// the blank line that dispatches it does not (as the HTML standard says), and the stream
    /// is then cut short, not complete.
    pub fn end(&mut self) {
        if self.stopped {
            return;
        }
        if self.at_start && !self.line.is_empty() {
            // Only part of a byte order mark came: no line to read.
            self.line.clear();
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.take_line(&line);
        }
        if self.stopped {
            return;
        }
        if self.data.is_some() {
            self.fail(format!(
                "the body ended inside event {}: no blank line after its data, so it is not read",
                self.count + 1
            ));
            return;
        }
        self.stopped = true;
        self.ready.push_back(Ok(Event::End));
    }

    /// The next event, or the error that stopped the stream; `None` until more is pushed.
    pub fn next_event(&mut self) -> Option<Result<Event, String>> {
        self.ready.pop_front()
    }

    fn fail(&mut self, why: String) {
        self.stopped = true;
        self.line = Vec::new();
        self.data = None;
        self.ready.push_back(Err(why));
    }

    fn take_line(&mut self, line: &[u8]) {
        match self.framing {
            Framing::Ndjson => {
                self.count += 1;
                if !line.iter().all(u8::is_ascii_whitespace) {
                    let what = format!("line {}", self.count);
                    self.take_object(line, &what);
                }
            }
            Framing::Sse => self.take_sse_line(line),
        }
    }

    fn take_sse_line(&mut self, line: &[u8]) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                self.count += 1;
                if data == b"[DONE]" {
                    self.stopped = true;
                    self.ready.push_back(Ok(Event::End));
                } else if !data.is_empty() {
                    let what = format!("event {}", self.count);
                    self.take_object(&data, &what);
                }
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field != b"data" {
            return;
        }
        let data = self.data.get_or_insert_with(Vec::new);
        let joined = data.len() + usize::from(!data.is_empty()) + value.len();
        if joined > self.limit {
            let event = self.count + 1;
            self.fail(format!("the data of event {event} is longer than {} bytes ({})", self.limit, self.limit_option));
            return;
        }
        if !data.is_empty() {
            data.push(b'\n');
        }
        data.extend_from_slice(value);
    }

    fn take_object(&mut self, text: &[u8], what: &str) {
        let piece = piece(text, self.objects == 0).map_err(|why| format!("{what}: {why}"));
        self.objects += 1;
        match piece {
            Ok(piece) => self.ready.push_back(Ok(Event::Piece(piece))),
            Err(why) => self.fail(why),
        }
    }
}

/// One object of the stream, checked: its text is text XML can carry, so every stanza built
/// from it is one Prosody can send.
fn piece(text: &[u8], first: bool) -> Result<Piece, String> {
    let value: Value = serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err(format!("expected a JSON object, got {}", json_type(&value)));
    };
    let delta = text_field(&mut fields, "delta")?;
    let body = text_field(&mut fields, "body")?;
    let edit = match (delta, body) {
        (Some(_), Some(_)) => return Err("it carries both 'delta' and 'body': send one of them".into()),
        (Some(delta), None) => Some(Edit::Append(delta)),
        (None, Some(body)) => Some(Edit::Replace(body)),
        (None, None) => None,
    };
    if !first {
        return Ok(Piece { edit, fields: None });
    }
    if fields.contains_key("stanza") {
        return Err("'stanza' cannot be streamed: a streamed answer is a message built from 'delta' and 'body'".into());
    }
    if let Some(Value::String(kind)) = fields.get("kind") {
        if kind != "message" {
            return Err(format!("'kind' is \"{kind}\": only a message can be streamed"));
        }
    }
    Ok(Piece { edit, fields: Some(fields) })
}

/// `delta` or `body`: a string, or absent (`null` too, as in a one-object reply).
fn text_field(fields: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    let name = format!("'{key}'");
    let text = crate::jsonmap::optional_string(fields.get(key), &name)?.map(str::to_owned);
    fields.remove(key);
    if let Some(text) = &text {
        check_text(text, &name)?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1024;

    /// Everything the parser makes of `body` pushed in the given chunks, ended or not.
    fn events_of(framing: Framing, chunks: &[&[u8]], end: bool) -> Vec<Result<Event, String>> {
        let mut parser = Parser::new(framing, LIMIT, "component_post_max_reply_size");
        let mut events = Vec::new();
        for chunk in chunks {
            parser.push(chunk);
            events.extend(std::iter::from_fn(|| parser.next_event()));
        }
        if end {
            parser.end();
            events.extend(std::iter::from_fn(|| parser.next_event()));
        }
        events
    }

    fn whole(framing: Framing, body: &str) -> Vec<Result<Event, String>> {
        events_of(framing, &[body.as_bytes()], true)
    }

    /// The same events whichever way the body is split: at every byte boundary into two
    /// chunks, and byte by byte.
    fn same_at_every_split(framing: Framing, body: &str) -> Vec<Result<Event, String>> {
        let bytes = body.as_bytes();
        let expected = events_of(framing, &[bytes], true);
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(events_of(framing, &[a, b], true), expected, "split at {split} of {body:?}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(events_of(framing, &singles, true), expected, "byte by byte: {body:?}");
        expected
    }

    fn delta(text: &str) -> Result<Event, String> {
        Ok(Event::Piece(Piece { edit: Some(Edit::Append(text.into())), fields: None }))
    }

    fn first(edit: Option<Edit>, fields: &str) -> Result<Event, String> {
        let Value::Object(fields) = serde_json::from_str(fields).unwrap() else { panic!("not an object") };
        Ok(Event::Piece(Piece { edit, fields: Some(fields) }))
    }

    fn error(events: &[Result<Event, String>]) -> &str {
        match events.last() {
            Some(Err(why)) => why,
            other => panic!("no error at the end: {other:?}"),
        }
    }

    #[test]
    fn content_types_name_the_framing() {
        assert_eq!(Framing::of(Some("application/x-ndjson")), Some(Framing::Ndjson));
        assert_eq!(Framing::of(Some("Text/Event-Stream; charset=utf-8")), Some(Framing::Sse));
        assert_eq!(Framing::of(Some("application/json")), None);
        assert_eq!(Framing::of(Some("text/event-streams")), None);
        assert_eq!(Framing::of(None), None);
    }

    #[test]
    fn ndjson_at_every_split() {
        let body = "\u{feff}{\"type\":\"chat\",\"delta\":\"Hel\"}\r\n\n  \r\n{\"delta\":\"lo \u{263a}\"}\n{\"body\":\"Hi\"}\n{}\n{\"delta\":\"!\"}";
        assert_eq!(
            same_at_every_split(Framing::Ndjson, body),
            [
                first(Some(Edit::Append("Hel".into())), r#"{"type":"chat"}"#),
                delta("lo \u{263a}"),
                Ok(Event::Piece(Piece { edit: Some(Edit::Replace("Hi".into())), fields: None })),
                Ok(Event::Piece(Piece { edit: None, fields: None })),
                delta("!"),
                Ok(Event::End),
            ]
        );
    }

    #[test]
    fn sse_at_every_split() {
        let body = "\u{feff}: a comment\r\nevent: message\r\nid: 1\r\nretry: 10\r\ndata: {\"delta\":\"a\"}\r\n\r\n\
                    data:{\"delta\":\r\ndata: \"b\\nc\"}\r\r\
                    data\n\n\
                    data: {\"delta\"\ndata: :\"d\"}\n\n\
                    event: ping\n\n\
                    data: [DONE]\n\ndata: {\"delta\":\"after the end\"}\n\n";
        assert_eq!(
            same_at_every_split(Framing::Sse, body),
            [first(Some(Edit::Append("a".into())), "{}"), delta("b\nc"), delta("d"), Ok(Event::End)]
        );
    }

    #[test]
    fn nothing_comes_out_before_its_line_ends() {
        let events = events_of(Framing::Ndjson, &[b"{\"delta\":\"a\"}"], false);
        assert!(events.is_empty(), "{events:?}");
        let events = events_of(Framing::Sse, &[b"data: {\"delta\":\"a\"}\n"], false);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn the_end_of_the_body_ends_the_stream() {
        // A last NDJSON line without LF still counts.
        assert_eq!(
            whole(Framing::Ndjson, "{\"delta\":\"a\"}"),
            [first(Some(Edit::Append("a".into())), "{}"), Ok(Event::End)]
        );
        assert_eq!(whole(Framing::Ndjson, ""), [Ok(Event::End)]);
        assert_eq!(whole(Framing::Sse, ": only a comment"), [Ok(Event::End)]);
        // An SSE event is read at its blank line: one cut off before it is not.
        let cut = whole(Framing::Sse, "data: {\"delta\":\"a\"}\n\ndata: {\"delta\":\"b\"}\n");
        assert_eq!(cut[0], first(Some(Edit::Append("a".into())), "{}"));
        assert_eq!(error(&cut), "the body ended inside event 2: no blank line after its data, so it is not read");
    }

    #[test]
    fn malformed_objects_stop_the_stream_saying_where() {
        let events = whole(Framing::Ndjson, "{\"delta\":\"a\"}\n\n{\"delta\":\"b\"\n{\"delta\":\"c\"}\n");
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(error(&events).starts_with("line 3: invalid JSON: EOF while parsing an object"), "{events:?}");
        for (line, why) in [
            ("[1]", "line 1: expected a JSON object, got an array"),
            ("\"text\"", "line 1: expected a JSON object, got a string"),
            ("{\"delta\":5}", "line 1: 'delta' must be a string, got a number"),
            ("{\"delta\":[\"a\"]}", "line 1: 'delta' must be a string, got an array"),
            ("{\"body\":true}", "line 1: 'body' must be a string, got a boolean"),
            ("{\"delta\":\"a\",\"body\":\"b\"}", "line 1: it carries both 'delta' and 'body': send one of them"),
            ("{\"delta\":\"a\\u0000\"}", "line 1: 'delta' contains the character U+0000, which XML does not allow"),
            ("{\"kind\":\"iq\"}", "line 1: 'kind' is \"iq\": only a message can be streamed"),
            (
                "{\"stanza\":\"<message/>\"}",
                "line 1: 'stanza' cannot be streamed: a streamed answer is a message built from 'delta' and 'body'",
            ),
        ] {
            assert_eq!(whole(Framing::Ndjson, line), [Err(why.to_owned())], "{line}");
        }
        let events = whole(Framing::Sse, "data: {\"delta\":\"a\"}\n\ndata: {oops}\n\n");
        assert!(error(&events).starts_with("event 2: invalid JSON: key must be a string"), "{events:?}");
    }

    #[test]
    fn null_text_is_no_text_and_later_fields_are_ignored() {
        assert_eq!(
            whole(
                Framing::Ndjson,
                "{\"delta\":null,\"to\":\"a@b\"}\n{\"delta\":\"x\",\"to\":\"c@d\",\"kind\":\"iq\"}\n"
            ),
            [first(None, r#"{"to":"a@b"}"#), delta("x"), Ok(Event::End)]
        );
    }

    #[test]
    fn lines_over_the_limit_are_refused_before_they_are_read() {
        let huge = format!("{{\"delta\":\"{}\"}}\n", "x".repeat(LIMIT));
        // In one chunk or many, the line is refused as soon as it is too long.
        for events in [
            whole(Framing::Ndjson, &huge),
            events_of(Framing::Ndjson, &huge.as_bytes().chunks(7).collect::<Vec<_>>(), false),
        ] {
            assert_eq!(events, [Err(format!("line 1 is longer than {LIMIT} bytes (component_post_max_reply_size)"))]);
        }
        let fits = format!("{{\"delta\":\"{}\"}}\n", "x".repeat(LIMIT - 12));
        assert_eq!(whole(Framing::Ndjson, &fits).len(), 2);
        // SSE: one long line, or many short data lines of one event.
        let long_line = format!("data: {}\n\n", "x".repeat(LIMIT));
        assert_eq!(
            error(&whole(Framing::Sse, &long_line)),
            format!("a line of event 1 is longer than {LIMIT} bytes (component_post_max_reply_size)")
        );
        let many_lines = "data: xxxxxxxxxxxxxxx\n".repeat(LIMIT / 16 + 1) + "\n";
        assert_eq!(
            error(&whole(Framing::Sse, &many_lines)),
            format!("the data of event 1 is longer than {LIMIT} bytes (component_post_max_reply_size)")
        );
    }

    #[test]
    fn nothing_is_read_after_the_stream_stopped() {
        let mut parser = Parser::new(Framing::Ndjson, LIMIT, "x");
        parser.push(b"nope\n{\"delta\":\"a\"}\n");
        parser.end();
        let events: Vec<_> = std::iter::from_fn(|| parser.next_event()).collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(error(&events).starts_with("line 1: invalid JSON: "), "{events:?}");
    }
}
