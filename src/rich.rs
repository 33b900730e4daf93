//! Rich messages: what a message carries besides its text, and the rules for writing one that
//! are not field mappings. The fields themselves are rows of [`crate::jsonmap`], read and written
//! by its engine in both directions; this module keeps what the table cannot say:
//!
//! - reading ([`RequestFields`], written into the request body by [`crate::request`]): the
//!   `stanza_id` trust rule (only from the room that stamped it) and the body without the quote
//!   of the message a reply answers (XEP-0428 fallback, stripped in linear time);
//! - writing ([`compose`], called by [`crate::answer::element_from_json`] once the engine built
//!   the message): a file's body is its URL and the caption comes after it, a reaction is a
//!   message of its own with a `<store/>` hint, and a reply's `quote` is written into the body
//!   for older clients, marked as a fallback.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::jid;
use crate::jsonmap::{self, elements, text, Profile};
/// The namespaces of the rich fields, where other modules have always found them.
pub use crate::ns::{FALLBACK, OOB, REACTIONS};
use crate::ns::{HINTS, REPLY, STANZA_ID};
use crate::stanza::{Element, Incoming, Node};

/// The most reactions one reply or push may send in a message: the table's bound.
pub use crate::jsonmap::table::MAX_REACTIONS;

/// The fields of a stanza the bot gets, beyond those every request has (`to`, `from`, `kind`,
/// `id`, `type`, `body`, `stanza`), each present only when the stanza carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFields {
    /// What the mapping reads from the stanza, by field name.
    mapped: Map<String, Value>,
    /// The id the room archived the message under (XEP-0359), only from a room (see
    /// [`RequestFields::read`]).
    stanza_id: Option<String>,
    /// The parts of the body that quote the message answered (XEP-0428 fallback for
    /// XEP-0461), in code points, sorted.
    fallback: Vec<(usize, usize)>,
}

/// The fields every request writes itself, left out of the mapping's. `lang` too: an attribute
/// of the stanza, read from its start tag for every stanza or none ([`crate::request`]), not
/// only from those parsed here.
const OWN_FIELDS: [&str; 8] = ["to", "from", "kind", "id", "type", "lang", "body", "stanza"];

impl RequestFields {
    /// The fields of `incoming` in `profile`'s names. Its XML is parsed (on the worker thread)
    /// only when the stanza has a child other than `<body/>`, so a plain message costs one scan
    /// for `<`.
    pub fn of(incoming: &Incoming, profile: Profile) -> RequestFields {
        if !has_more_than_a_body(&incoming.xml) {
            return RequestFields::default();
        }
        let room =
            incoming.room.as_ref().filter(|room| !room.fields.is_private()).map(|room| room.fields.room.as_str());
        // The stanza was Prosody's, so it parses; deeper than the reply limits only if a
        // server let it through, and then it has no fields for us.
        let limits = crate::xml::ParseLimits { max_depth: crate::stanza::MAX_DEPTH, ..Default::default() };
        match crate::xml::parse_stanza(&incoming.xml, limits) {
            Ok(stanza) => RequestFields::read_as(&stanza, room, profile),
            Err(_) => RequestFields::default(),
        }
    }

    /// [`RequestFields::read_as`] in component_http's names.
    pub fn read(message: &Element, room: Option<&str>) -> RequestFields {
        RequestFields::read_as(message, room, Profile::ComponentHttp)
    }

    /// Reads the fields of `stanza`. `room` is the bare JID of the room the message was said
    /// in, if it was (a `groupchat` message from a room the bot is in).
    ///
    /// A `<stanza-id/>` is read as `stanza_id` only from a room, and only the one whose `by` is
    /// the room: the room stamps its archive id on every message it passes on and removes any
    /// other claiming to be by it (XEP-0359 §4; Prosody's mod_muc_mam does both). Outside rooms
    /// no stanza id can be trusted: nobody stamps messages sent to a component, and one claimed
    /// `by` a server or the component is whatever the sender wrote (`stanza_ids`, the
    /// community module's field, lists them all as written, `by` and all).
    pub fn read_as(stanza: &Element, room: Option<&str>, profile: Profile) -> RequestFields {
        let mut mapped = jsonmap::element_to_json(stanza, profile);
        for key in OWN_FIELDS {
            mapped.remove(key);
        }
        let mut fields = RequestFields { mapped, ..Default::default() };
        if let Some(room) = room {
            fields.stanza_id = elements(stanza)
                .filter(|e| e.name == "stanza-id" && in_ns(e, STANZA_ID))
                .find(|e| e.attr("by").and_then(|by| jid::prep(by).ok()).is_some_and(|by| by.to_string() == room))
                .and_then(|e| e.attr("id"))
                .map(Into::into);
        }
        if fields.mapped.contains_key("reply") {
            fields.fallback = fallback_ranges(stanza);
        }
        fields
    }

    /// `body` as its author wrote it: without the quote of the message it answers. The quote is
    /// stripped only when its ranges fit this body (none past its end, reversed or overlapping)
    /// and are at most [`MAX_FALLBACK_RANGES`]; otherwise the body is kept whole. Linear in the
    /// body's length (see [`strip_ranges`]).
    pub fn body<'a>(&self, body: &'a str) -> Cow<'a, str> {
        if self.fallback.is_empty() {
            return Cow::Borrowed(body);
        }
        let total = body.chars().count();
        let ranges: Vec<(usize, usize)> =
            self.fallback.iter().map(|&(start, end)| (start, if end == WHOLE { total } else { end })).collect();
        // Ranges past the end, or overlapping, were not written for this body: keep it whole.
        // `fallback` is sorted, so neighbours are enough to find an overlap.
        let fits = ranges.iter().all(|&(start, end)| start <= end && end <= total)
            && ranges.windows(2).all(|pair| pair[0].1 <= pair[1].0);
        if !fits {
            return Cow::Borrowed(body);
        }
        Cow::Owned(strip_ranges(body, &ranges).0)
    }

    /// Appends the fields present as `,"key":value` to a JSON object being written (none of
    /// the names the caller writes itself: see [`RequestFields`]).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut put = |key: &str, value: &Value| {
            out.push(b',');
            // Writing a JSON value into a Vec cannot fail.
            serde_json::to_writer(&mut *out, key).expect("JSON string");
            out.push(b':');
            serde_json::to_writer(&mut *out, value).expect("JSON value");
        };
        for (key, value) in &self.mapped {
            put(key, value);
        }
        if let Some(id) = &self.stanza_id {
            put("stanza_id", &Value::String(id.clone()));
        }
    }
}

/// Whether serialized XML has a child other than `<body/>` (or any element nested in one): a
/// scan of its `<`, which is never in text or attribute values, escaped as they are.
fn has_more_than_a_body(xml: &str) -> bool {
    let mut tags = xml.match_indices('<').map(|(at, _)| &xml[at + 1..]);
    tags.next(); // the stanza itself
    tags.filter(|tag| !tag.starts_with('/'))
        .any(|tag| !(tag.starts_with("body") && tag[4..].starts_with(['>', '/', ' '])))
}

/// The end of a fallback range that is the whole body, however long.
const WHOLE: usize = usize::MAX;

/// The most XEP-0428 body ranges a reply's fallback may mark for its quote to be stripped. A
/// client quotes the message it answers once, in one range; a fallback with more is not
/// honoured (the body is POSTed whole), and reading stops at the first range past this.
pub const MAX_FALLBACK_RANGES: usize = 16;

/// The body ranges a XEP-0428 fallback for a reply marks, in code points, sorted: none when it
/// marks more than [`MAX_FALLBACK_RANGES`]. A `<body/>` without `start` and `end` is the whole
/// body.
pub fn fallback_ranges(message: &Element) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = elements(message)
        .filter(|e| e.name == "fallback" && in_ns(e, FALLBACK) && e.attr("for") == Some(REPLY))
        .flat_map(|fallback| elements(fallback).filter(|e| e.name == "body" && in_ns(e, FALLBACK)))
        .filter_map(|body| match (body.attr("start"), body.attr("end")) {
            (None, None) => Some((0, WHOLE)),
            (Some(start), Some(end)) => Some((start.parse().ok()?, end.parse().ok()?)),
            _ => None,
        })
        .take(MAX_FALLBACK_RANGES + 1)
        .collect();
    if ranges.len() > MAX_FALLBACK_RANGES {
        return Vec::new();
    }
    ranges.sort_unstable();
    ranges
}

/// `text` without the code points in `ranges` (sorted, not overlapping, none past the end of
/// `text`: what [`RequestFields::body`] checked), and the work done: one step per code point
/// and per range, so the cost is linear in `text` whatever the ranges (a test holds it to that
/// count).
pub fn strip_ranges(text: &str, ranges: &[(usize, usize)]) -> (String, usize) {
    let mut kept = String::with_capacity(text.len());
    let mut steps = 0;
    let mut next = ranges.iter().peekable();
    for (i, c) in text.chars().enumerate() {
        steps += 1;
        // Ranges that ended before this code point are behind us for good: they are sorted.
        while next.peek().is_some_and(|&&(_, end)| end <= i) {
            next.next();
            steps += 1;
        }
        if next.peek().is_none_or(|&&(start, _)| start > i) {
            kept.push(c);
        }
    }
    (kept, steps)
}

/// The message-writing rules for `message`, a message the engine built from `fields` (a reply
/// or push object). Returns the messages to send right after it, in order, each with its
/// content only (the caller gives them the message's type and addresses):
///
/// - with `oob` (or `oob_url`), the body is the file's URL and a `body` other than it comes
///   after the file, as its caption: clients show a file inline only when the message's body
///   is exactly its URL;
/// - with `reply.quote` (and no file), the body starts with the quoted text, each line after
///   `> `, marked as a XEP-0428 fallback for the reply;
/// - with `reactions`, the message is a XEP-0444 reaction message, which carries nothing else:
///   a `<store/>` hint so archives keep it, and anything else the object said after it, in a
///   message of its own.
///
/// A `reply.quote` that is not a string is refused, naming it.
pub fn compose(message: &mut Element, fields: &Map<String, Value>) -> Result<Vec<Element>, String> {
    let quote = jsonmap::optional_string(fields.get("reply").and_then(|reply| reply.get("quote")), "'reply.quote'")?;
    let url = child(message, "x", OOB)
        .and_then(|x| elements(x).find(|e| e.name == "url" && e.attr("xmlns").is_none_or(|ns| ns == OOB)))
        .map(text);
    let mut caption = None;
    if let Some(url) = url {
        caption = body_text(message).filter(|body| *body != url);
        set_body(message, &url);
    } else if let Some(quote) = quote.filter(|quote| !quote.is_empty()) {
        let prefix: String = quote.lines().map(|line| format!("> {line}\n")).collect();
        let quoted = prefix.chars().count();
        let body = prefix + body_text(message).as_deref().unwrap_or("");
        set_body(message, &body);
        let range = Element::new("body").with_attr("start", "0").with_attr("end", &quoted.to_string());
        let fallback = Element::new("fallback").with_attr("xmlns", FALLBACK).with_attr("for", REPLY).with_child(range);
        let at = message.children.iter().position(|node| is(node, "reply", REPLY)).map_or(0, |at| at + 1);
        message.children.insert(at, Node::Element(fallback));
    }
    let mut after = Vec::new();
    if message.children.iter().any(|node| is(node, "reactions", REACTIONS)) {
        let (reactions, rest): (Vec<Node>, Vec<Node>) =
            std::mem::take(&mut message.children).into_iter().partition(|node| is(node, "reactions", REACTIONS));
        message.children = reactions;
        // Archives keep a message without a body only when told (XEP-0444 recommends it).
        message.push_element(Element::new("store").with_attr("xmlns", HINTS));
        if rest.iter().any(|node| matches!(node, Node::Element(_))) {
            let mut content = Element::new("message");
            content.children = rest;
            after.push(content);
        }
    }
    after.extend(caption.map(|text| Element::new("message").with_child(Element::new("body").with_text(&text))));
    Ok(after)
}

fn is(node: &Node, name: &str, ns: &str) -> bool {
    matches!(node, Node::Element(e) if e.name == name && in_ns(e, ns))
}

/// The message's own `<body/>` (in no other namespace).
fn body_index(message: &Element) -> Option<usize> {
    message
        .children
        .iter()
        .position(|node| matches!(node, Node::Element(e) if e.name == "body" && e.attr("xmlns").is_none()))
}

fn body_text(message: &Element) -> Option<String> {
    match &message.children[body_index(message)?] {
        Node::Element(body) => Some(text(body)),
        Node::Text(_) => None,
    }
}

/// Makes `text` the message's body: its own, or a new one first.
fn set_body(message: &mut Element, text: &str) {
    let body = Node::Element(Element::new("body").with_text(text));
    match body_index(message) {
        Some(at) => message.children[at] = body,
        None => message.children.insert(0, body),
    }
}

fn in_ns(element: &Element, ns: &str) -> bool {
    element.attr("xmlns") == Some(ns)
}

fn child<'a>(element: &'a Element, name: &str, ns: &str) -> Option<&'a Element> {
    elements(element).find(|e| e.name == name && in_ns(e, ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonmap::Kind;
    use crate::xml::{parse_stanza, ParseLimits};
    use serde_json::json;

    fn read(xml: &str, room: Option<&str>) -> RequestFields {
        RequestFields::read(&parse_stanza(xml, ParseLimits::default()).unwrap(), room)
    }

    /// The request fields this module's tests are about (the mapping writes more: `oob` beside
    /// `oob_url`, `fallback`, …, tested in `jsonmap`).
    fn json(fields: &RequestFields) -> Value {
        let mut out = b"{\"x\":0".to_vec();
        fields.write_json(&mut out);
        out.push(b'}');
        let mut value: Value = serde_json::from_slice(&out).unwrap();
        let object = value.as_object_mut().unwrap();
        object.retain(|key, _| ["oob_url", "replace", "reactions", "reply", "stanza_id"].contains(&key.as_str()));
        value
    }

    /// The message a reply object describes and those after it, or the refusal.
    fn build(fields: Value) -> Result<(String, Vec<String>), String> {
        let Value::Object(fields) = fields else { panic!("not an object") };
        let built = crate::answer::element_from_json(&fields, Profile::ComponentHttp, Kind::Message)?;
        built.stanza.check_xml()?;
        Ok((built.stanza.to_xml(), built.after.iter().map(Element::to_xml).collect()))
    }

    fn refusal(fields: Value) -> String {
        build(fields).expect_err("refused")
    }

    #[test]
    fn only_a_stanza_with_more_than_a_body_is_parsed() {
        for plain in [
            "<message type='chat' to='a@b'><body>a &lt;b&gt; c</body></message>",
            "<message><body/></message>",
            "<message><body xml:lang='en'>x</body></message>",
            "<message type='chat'/>",
            "<presence/>",
        ] {
            assert!(!has_more_than_a_body(plain), "{plain}");
        }
        for rich in [
            "<message><body>x</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            "<message><bodyguard/></message>",
            "<presence><show>away</show></presence>",
            "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
        ] {
            assert!(has_more_than_a_body(rich), "{rich}");
        }
    }

    #[test]
    fn a_plain_message_has_no_rich_fields() {
        let fields = read("<message type='chat'><body>hi</body></message>", None);
        assert_eq!(fields, RequestFields::default());
        assert_eq!(json(&fields), json!({}));
        assert_eq!(fields.body("hi"), "hi");
    }

    #[test]
    fn a_file_is_its_url() {
        let fields = read(
            "<message type='chat'><body>https://up.example/a/cat.jpg</body>\
             <x xmlns='jabber:x:oob'><url>https://up.example/a/cat.jpg</url></x></message>",
            None,
        );
        assert_eq!(json(&fields), json!({ "oob_url": "https://up.example/a/cat.jpg" }));
        // The url in another namespace is not the file's.
        let other = read("<message><x xmlns='jabber:x:oob'><url xmlns='urn:other'>u</url></x></message>", None);
        assert_eq!(json(&other).get("oob_url"), None);
    }

    #[test]
    fn a_correction_names_the_message_it_corrects() {
        let fields =
            read("<message><body>fixed</body><replace xmlns='urn:xmpp:message-correct:0' id='m1'/></message>", None);
        assert_eq!(json(&fields), json!({ "replace": "m1" }));
        assert_eq!(
            json(&read("<message><replace xmlns='urn:xmpp:message-correct:0'/></message>", None)).get("replace"),
            None
        );
    }

    #[test]
    fn reactions_are_the_id_and_the_emoji_in_order() {
        let fields = read(
            "<message><reactions xmlns='urn:xmpp:reactions:0' id='m1'><reaction>\u{1F44D}</reaction>\
             <reaction>\u{1F389}</reaction></reactions><store xmlns='urn:xmpp:hints'/></message>",
            None,
        );
        assert_eq!(json(&fields), json!({ "reactions": { "id": "m1", "reactions": ["\u{1F44D}", "\u{1F389}"] } }));
        // All taken back: an empty list, still a field.
        let none = read("<message><reactions xmlns='urn:xmpp:reactions:0' id='m1'/></message>", None);
        assert_eq!(json(&none), json!({ "reactions": { "id": "m1", "reactions": [] } }));
        assert_eq!(
            json(&read("<message><reactions xmlns='urn:xmpp:reactions:0'/></message>", None)).get("reactions"),
            None
        );
    }

    #[test]
    fn a_reply_names_what_it_answers_and_its_body_loses_the_quote() {
        // "> Anna wrote…\n" quoted, in code points: the emoji is one.
        let quote = "> \u{1F431} cat?\n";
        let body = format!("{quote}Yes, a cat.");
        let xml = format!(
            "<message type='chat'><body>{body}</body><reply xmlns='urn:xmpp:reply:0' to='anna@localhost/r' id='m1'/>\
             <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='{}'/></fallback></message>",
            quote.chars().count()
        );
        let fields = read(&xml, None);
        assert_eq!(json(&fields), json!({ "reply": { "id": "m1", "to": "anna@localhost/r" } }));
        assert_eq!(fields.body(&body), "Yes, a cat.");
        // No `to`: none in the field.
        let bare = read("<message><reply xmlns='urn:xmpp:reply:0' id='m1'/></message>", None);
        assert_eq!(json(&bare), json!({ "reply": { "id": "m1" } }));
    }

    #[test]
    fn a_fallback_that_does_not_fit_the_body_leaves_it_whole() {
        let with = |fallback: &str| {
            read(
                &format!("<message><reply xmlns='urn:xmpp:reply:0' id='m1'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'>{fallback}</fallback></message>"),
                None,
            )
        };
        assert_eq!(with("<body start='0' end='40'/>").body("short"), "short");
        assert_eq!(with("<body start='3' end='1'/>").body("short"), "short");
        assert_eq!(with("<body start='x' end='1'/>").body("short"), "short");
        assert_eq!(with("<body/>").body("all quote"), "", "a body without a range is all fallback");
        assert_eq!(with("<body start='0' end='2'/><body start='3' end='4'/>").body("abcdef"), "cef");
        // A fallback for something else is not the reply's.
        let other = read(
            "<message><reply xmlns='urn:xmpp:reply:0' id='m1'/><fallback xmlns='urn:xmpp:fallback:0' \
             for='urn:xmpp:reactions:0'><body start='0' end='2'/></fallback></message>",
            None,
        );
        assert_eq!(other.body("abc"), "abc");
    }

    /// A reply whose fallback marks `ranges` (`None` for a `<body/>` without a range).
    fn reply_with(ranges: &[Option<(usize, usize)>]) -> String {
        let bodies: String = ranges
            .iter()
            .map(|range| match range {
                Some((start, end)) => format!("<body start='{start}' end='{end}'/>"),
                None => "<body/>".into(),
            })
            .collect();
        format!(
            "<message><reply xmlns='urn:xmpp:reply:0' id='m1'/>\
             <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'>{bodies}</fallback></message>"
        )
    }

    /// The quote stripping as first written (every code point checked against every range):
    /// the definition the linear one must keep.
    fn naive_body(ranges: &[Option<(usize, usize)>], body: &str) -> String {
        let mut ranges: Vec<(usize, usize)> = ranges.iter().map(|r| r.unwrap_or((0, WHOLE))).collect();
        ranges.sort_unstable();
        let total = body.chars().count();
        let ranges: Vec<(usize, usize)> =
            ranges.iter().map(|&(start, end)| (start, if end == WHOLE { total } else { end })).collect();
        let fits = ranges.iter().all(|&(start, end)| start <= end && end <= total)
            && ranges.windows(2).all(|pair| pair[0].1 <= pair[1].0);
        if ranges.is_empty() || !fits {
            return body.to_owned();
        }
        let quoted = |i: usize| ranges.iter().any(|&(start, end)| (start..end).contains(&i));
        body.chars().enumerate().filter(|(i, _)| !quoted(*i)).map(|(_, c)| c).collect()
    }

    #[test]
    fn quote_stripping_keeps_its_definition_over_every_shape_of_ranges() {
        // A small xorshift: many generated cases, the same on every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let alphabet = ['a', 'b', '\u{e9}', '\u{1F431}', '\n', '>', ' '];
        let mut stripped = 0;
        for _ in 0..20_000 {
            let body: String = (0..next(10)).map(|_| alphabet[next(alphabet.len())]).collect();
            // Unsorted, overlapping, duplicate, reversed, empty, past the end, whole-body.
            let reach = body.chars().count() + 3;
            let ranges: Vec<Option<(usize, usize)>> =
                (0..next(5)).map(|_| if next(8) == 0 { None } else { Some((next(reach), next(reach))) }).collect();
            let fields = read(&reply_with(&ranges), None);
            let expected = naive_body(&ranges, &body);
            assert_eq!(fields.body(&body), expected, "{ranges:?} over {body:?}");
            stripped += usize::from(expected != body);
        }
        assert!(stripped > 1000, "the cases strip something often enough to mean something: {stripped}");
    }

    #[test]
    fn a_fallback_with_more_ranges_than_the_bound_is_not_honoured() {
        let body: String = "ab".repeat(64_000);
        // 5,000 ranges that fit the body: each quotes one code point.
        let many: Vec<Option<(usize, usize)>> = (0..5_000).map(|i| Some((2 * i, 2 * i + 1))).collect();
        let fields = read(&reply_with(&many), None);
        assert!(fields.fallback.len() <= MAX_FALLBACK_RANGES, "{} ranges kept", fields.fallback.len());
        assert!(matches!(fields.body(&body), Cow::Borrowed(b) if b == body), "kept whole");
        // At the bound they are honoured.
        let bound = &many[..MAX_FALLBACK_RANGES];
        let fields = read(&reply_with(bound), None);
        assert_eq!(fields.body(&body), naive_body(bound, &body));
        assert_eq!(fields.body(&body).chars().count(), body.chars().count() - MAX_FALLBACK_RANGES);
    }

    #[test]
    fn quote_stripping_is_one_step_per_code_point_and_per_range() {
        for len in [1_000, 128_000] {
            let body: String = "\u{1F431}b".repeat(len / 2);
            let ranges: Vec<(usize, usize)> = (0..MAX_FALLBACK_RANGES)
                .map(|i| (i * len / MAX_FALLBACK_RANGES, i * len / MAX_FALLBACK_RANGES + 3))
                .collect();
            let (kept, steps) = strip_ranges(&body, &ranges);
            assert_eq!(kept.chars().count(), len - 3 * MAX_FALLBACK_RANGES);
            assert!(steps <= len + ranges.len(), "{steps} steps for {len} code points");
        }
    }

    #[test]
    fn a_stanza_id_is_trusted_only_from_the_room_it_names() {
        const ROOM: &str = "dev@conference.localhost";
        let xml = "<message type='groupchat'><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='forged'/>\
                   <stanza-id xmlns='urn:xmpp:sid:0' by='dev@conference.localhost' id='s1'/><body>hi</body></message>";
        assert_eq!(json(&read(xml, Some(ROOM))), json!({ "stanza_id": "s1" }));
        assert_eq!(read(xml, None).stanza_id, None, "outside a room nobody vouches for one");
        assert_eq!(read(xml, Some("other@conference.localhost")).stanza_id, None);
    }

    #[test]
    fn the_request_fields_come_from_the_incoming_stanza() {
        let incoming = |xml: &str| Incoming { xml: xml.into(), ..Incoming::sample("message", Some("chat")) };
        let file = incoming("<message><x xmlns='jabber:x:oob'><url>https://u.example/f</url></x></message>");
        assert_eq!(json(&RequestFields::of(&file, Profile::ComponentHttp))["oob_url"], json!("https://u.example/f"));
        let presence =
            Incoming { name: "presence".into(), ..incoming("<presence><x xmlns='jabber:x:oob'/></presence>") };
        assert_eq!(RequestFields::of(&presence, Profile::ComponentHttp), RequestFields::default());
        let plain = incoming("<message><body>hi</body></message>");
        assert_eq!(RequestFields::of(&plain, Profile::ComponentHttp), RequestFields::default());
    }

    #[test]
    fn a_file_is_sent_as_its_url_and_its_caption_after_it() {
        let url = "https://files.example/cat.jpg";
        let file =
            format!("<message type='chat'><body>{url}</body><x xmlns='jabber:x:oob'><url>{url}</url></x></message>");
        assert_eq!(build(json!({ "oob_url": url })).unwrap(), (file.clone(), vec![]));
        assert_eq!(
            build(json!({ "oob_url": url, "body": "A cat." })).unwrap(),
            (file.clone(), vec!["<message><body>A cat.</body></message>".to_string()])
        );
        assert_eq!(build(json!({ "oob_url": url, "body": url })).unwrap(), (file, vec![]), "the body is the URL");
    }

    #[test]
    fn a_reaction_with_more_to_say_is_a_message_of_its_own_first() {
        let fields = json!({ "reactions": { "id": "m1", "reactions": ["\u{1F44D}"] },
                             "oob_url": "https://f.example/a", "body": "Same to you." });
        let (xml, after) = build(fields).unwrap();
        assert_eq!(
            xml,
            "<message type='chat'><reactions id='m1' xmlns='urn:xmpp:reactions:0'><reaction>\u{1F44D}</reaction>\
             </reactions><store xmlns='urn:xmpp:hints'/></message>"
        );
        assert_eq!(
            after,
            [
                "<message><body>https://f.example/a</body><x xmlns='jabber:x:oob'><url>https://f.example/a</url></x></message>",
                "<message><body>Same to you.</body></message>"
            ]
        );
    }

    #[test]
    fn a_file_url_must_be_absolute_http() {
        for url in ["https://a.example", "http://a.example:8080/x?y#z", "HTTPS://user@a.example/", "http://[::1]/x"] {
            assert!(build(json!({ "oob_url": url })).is_ok(), "{url}");
        }
        for url in [
            "",
            "/relative/cat.jpg",
            "ftp://a.example/x",
            "javascript:alert(1)",
            "https://",
            "https:///x",
            "https://a.example/a b",
            "https://a.example/\n",
            "https://:80/x",
        ] {
            assert!(
                refusal(json!({ "oob_url": url })).starts_with("'oob_url' must be an absolute http or https URL"),
                "{url:?}"
            );
        }
        assert_eq!(refusal(json!({ "oob_url": 7 })), "'oob_url' must be a string, got a number");
    }

    #[test]
    fn a_correction_replaces_the_message_with_that_id() {
        assert_eq!(
            build(json!({ "body": "fixed", "replace": "m1" })).unwrap().0,
            "<message type='chat'><body>fixed</body><replace id='m1' xmlns='urn:xmpp:message-correct:0'/></message>"
        );
        assert_eq!(refusal(json!({ "replace": ["m1"] })), "'replace' must be a string, got an array");
        assert_eq!(refusal(json!({ "replace": "" })), "'replace' is empty: it must be a message id");
    }

    #[test]
    fn the_reaction_list_is_bounded() {
        let list = |n: usize| json!({ "reactions": { "id": "m1", "reactions": vec!["\u{1F44D}"; n] } });
        let (xml, _) = build(list(MAX_REACTIONS)).unwrap();
        assert_eq!(xml.matches("<reaction>").count(), MAX_REACTIONS);
        // One past the bound and far past it alike: refused naming the field and the bound.
        for n in [MAX_REACTIONS + 1, 2 * MAX_REACTIONS, 200_000] {
            assert_eq!(
                refusal(list(n)),
                format!("'reactions.reactions' holds {n} reactions, more than the {MAX_REACTIONS} a message may carry")
            );
        }
    }

    #[test]
    fn reactions_are_a_reaction_message_kept_in_archives() {
        assert_eq!(
            build(json!({ "reactions": { "id": "m1", "reactions": ["\u{1F44D}", "\u{1F389}"] } })).unwrap().0,
            "<message type='chat'><reactions id='m1' xmlns='urn:xmpp:reactions:0'><reaction>\u{1F44D}</reaction>\
             <reaction>\u{1F389}</reaction></reactions><store xmlns='urn:xmpp:hints'/></message>"
        );
        let none = build(json!({ "reactions": { "id": "m1", "reactions": [] } })).unwrap().0;
        assert!(none.contains("<reactions id='m1' xmlns='urn:xmpp:reactions:0'/>"), "{none}");
        for (fields, why) in [
            (json!({ "reactions": "\u{1F44D}" }), "'reactions' must be an object, got a string"),
            (
                json!({ "reactions": { "reactions": ["x"] } }),
                "'reactions' needs an 'id': the id of the message reacted to",
            ),
            (json!({ "reactions": { "id": 1, "reactions": ["x"] } }), "'reactions.id' must be a string, got a number"),
            (json!({ "reactions": { "id": "m1" } }), "'reactions' needs 'reactions': an array of emoji"),
            (
                json!({ "reactions": { "id": "m1", "reactions": "x" } }),
                "'reactions.reactions' must be an array, got a string",
            ),
            (
                json!({ "reactions": { "id": "m1", "reactions": [""] } }),
                "'reactions.reactions' holds an empty reaction",
            ),
            (
                json!({ "reactions": { "id": "m1", "reactions": [" "] } }),
                "'reactions.reactions' holds an empty reaction",
            ),
            (
                json!({ "reactions": { "id": "m1", "reactions": [1] } }),
                "'reactions.reactions' holds a number, expected strings",
            ),
        ] {
            assert_eq!(refusal(fields), why);
        }
    }

    #[test]
    fn a_reply_carries_what_it_answers_and_a_quote_for_older_clients() {
        assert_eq!(
            build(json!({ "body": "Yes.", "reply": { "id": "m1", "to": "Anna@Localhost/r" } })).unwrap().0,
            "<message type='chat'><body>Yes.</body><reply id='m1' xmlns='urn:xmpp:reply:0' to='anna@localhost/r'/></message>"
        );
        let (xml, _) =
            build(json!({ "body": "Yes.", "reply": { "id": "m1", "quote": "A \u{1F431}?\nReally?" } })).unwrap();
        let quote = "> A \u{1F431}?\n> Really?\n";
        assert_eq!(
            xml,
            format!(
                "<message type='chat'><body>{}Yes.</body><reply id='m1' xmlns='urn:xmpp:reply:0'/>\
                 <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='{}'/></fallback></message>",
                quote.replace('>', "&gt;"),
                quote.chars().count()
            )
        );
        // The request side reads back what the reply side wrote.
        let back = read(&xml, None);
        assert_eq!(back.body(&format!("{quote}Yes.")), "Yes.");
        assert_eq!(json(&back)["reply"], json!({ "id": "m1" }));
        // A file's body must stay its URL: no quote there.
        let file = build(json!({ "oob_url": "https://a.example/f", "reply": { "id": "m1", "quote": "q" } })).unwrap().0;
        assert!(!file.contains("fallback") && file.contains("<reply id='m1'"), "{file}");
        for (fields, why) in [
            (json!({ "reply": "m1" }), "'reply' must be an object, got a string"),
            (json!({ "reply": {} }), "'reply' needs an 'id': the id of the message answered"),
            (json!({ "reply": { "id": 5 } }), "'reply.id' must be a string, got a number"),
            (json!({ "reply": { "id": "" } }), "'reply.id' is empty: it must be a message id"),
            (json!({ "reply": { "id": "m1", "to": true } }), "'reply.to' must be a string, got a boolean"),
            (json!({ "reply": { "id": "m1", "quote": 3 } }), "'reply.quote' must be a string, got a number"),
        ] {
            assert_eq!(refusal(fields), why);
        }
        assert!(refusal(json!({ "reply": { "id": "m1", "to": "@localhost" } }))
            .starts_with("'reply.to' \"@localhost\" is not a valid JID"));
    }
}
