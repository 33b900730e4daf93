//! A message from a room, read as `room::lua` reads it: parsed within the reply limits, the quote
//! of a XEP-0461 reply stripped from its body by its XEP-0428 fallback ranges, its room facts
//! read and judged in both groupchat modes, its request fields written as JSON.
//!
//! Invariants: no input panics; the stripped body is a subsequence of the body, never longer,
//! and exactly the body without the code points of the ranges honoured; a fallback honoured
//! marks at most `MAX_HONOURED_RANGES` ranges (a bound on the work, as the README states it);
//! the bot's own messages, history and (in `mentions` mode) messages that do not mention the
//! bot are never POSTed; the request fields are valid JSON.
//!
//! The input is either raw XML (when it starts with `<`), or bytes that choose a message:
//! its body, its fallback ranges (numbers near the body's length, huge, negative, malformed),
//! sender, type and the other children the room logic reads.
#![no_main]

use component_http_native::rich::RequestFields;
use component_http_native::room::{classify, GroupchatMode, MessageFacts, Occupant, RoomView, Treatment};
use component_http_native::stanza::{escape_into, Element, Node};
use component_http_native::xml::{parse_stanza, ParseLimits};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const ROOM: &str = "dev@conference.localhost";
const BOT_NICK: &str = "Bot";
/// The README's bound on the ranges of a reply's fallback: with more, the body is kept whole.
const MAX_HONOURED_RANGES: usize = 16;
const REPLY: &str = "urn:xmpp:reply:0";
const FALLBACK: &str = "urn:xmpp:fallback:0";
/// Few characters, so the fuzzer finds bodies and nicks that meet: ASCII, 2-, 3- and 4-byte
/// UTF-8, quote marks, line ends, what XML escapes, white space a nick may fold.
const ALPHABET: &[char] = &['a', 'B', 'o', 't', '>', ' ', '\n', '\u{e9}', '\u{a0}', '\u{3a3}', '\u{1F431}', '&', '<'];

fuzz_target!(|data: &[u8]| {
    let xml = if data.first() == Some(&b'<') {
        match std::str::from_utf8(data) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        }
    } else {
        match message(&mut Unstructured::new(data)) {
            Ok(xml) => xml,
            Err(_) => return,
        }
    };
    let Ok(element) = parse_stanza(&xml, ParseLimits::default()) else { return };
    check(&element);
});

fn check(element: &Element) {
    let body = own_body(element);
    let fields = RequestFields::read(element, None);
    let written = body.as_deref().map(|body| {
        let stripped = fields.body(body).into_owned();
        assert!(stripped.len() <= body.len(), "{stripped:?} is longer than {body:?}");
        assert!(is_subsequence(&stripped, body), "{stripped:?} is not taken from {body:?}");
        let ranges = reply_ranges(element);
        let expected = strip(body, &ranges);
        if stripped != *body {
            assert!(
                ranges.len() <= MAX_HONOURED_RANGES,
                "{} ranges honoured, more than {MAX_HONOURED_RANGES}",
                ranges.len()
            );
        }
        assert_eq!(stripped, expected, "ranges {ranges:?} over {body:?}");
        stripped
    });

    let facts = MessageFacts::read(element, written);
    let bot = Occupant { room: ROOM.into(), nick: BOT_NICK.into(), from: "room-bot@bot.localhost".into() };
    let own_message_ids = ["own-1".to_owned()];
    for mode in [GroupchatMode::All, GroupchatMode::Mentions] {
        for view in
            [RoomView::Unknown, RoomView::NotJoined, RoomView::Joined { bot: &bot, own_message_ids: &own_message_ids }]
        {
            let verdict = classify(&facts, view, mode);
            let Treatment::Room(room) = verdict else { continue };
            assert!(view != RoomView::Unknown, "a message from an unknown room judged as a room's: {facts:?}");
            if room.is_private() {
                continue;
            }
            assert_eq!(facts.message_type.as_deref(), Some("groupchat"));
            assert_ne!(room.nick, BOT_NICK, "the bot's own message POSTed: {facts:?}");
            assert!(!facts.delayed, "history POSTed: {facts:?}");
            if mode == GroupchatMode::Mentions {
                assert_eq!(room.mentioned, Some(true), "an unmentioned message POSTed in mentions mode: {facts:?}");
            }
        }
    }

    let mut json = b"{\"x\":0".to_vec();
    RequestFields::read(element, Some(ROOM)).write_json(&mut json);
    json.push(b'}');
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&json) {
        panic!("request fields {:?} are not JSON: {e}", String::from_utf8_lossy(&json));
    }
}

/// `<body/>` in the message's own namespace, as Prosody's `get_child_text("body")` reads it.
fn own_body(message: &Element) -> Option<String> {
    let own_ns = message.attr("xmlns");
    children(message).find(|c| c.name == "body" && c.attr("xmlns") == own_ns).map(text)
}

/// The ranges of a reply's fallback as the README defines them (code points; a `<body/>`
/// without `start` and `end` is the whole body; one whose numbers do not read is ignored).
fn reply_ranges(message: &Element) -> Vec<(usize, Option<usize>)> {
    if !children(message).any(|c| c.name == "reply" && c.attr("xmlns") == Some(REPLY) && c.attr("id").is_some()) {
        return Vec::new();
    }
    children(message)
        .filter(|c| c.name == "fallback" && c.attr("xmlns") == Some(FALLBACK) && c.attr("for") == Some(REPLY))
        .flat_map(|fallback| children(fallback).filter(|c| c.name == "body" && c.attr("xmlns") == Some(FALLBACK)))
        .filter_map(|body| match (body.attr("start"), body.attr("end")) {
            (None, None) => Some((0, None)),
            (Some(start), Some(end)) => Some((start.parse().ok()?, Some(end.parse().ok()?))),
            _ => None,
        })
        .collect()
}

/// The body without its quote, by the definition: none when the ranges are more than the
/// bound, reversed, past the end or overlapping; else every code point outside them.
fn strip(body: &str, ranges: &[(usize, Option<usize>)]) -> String {
    let total = body.chars().count();
    let mut ranges: Vec<(usize, usize)> =
        ranges.iter().map(|&(start, end)| (start, end.unwrap_or(usize::MAX))).collect();
    ranges.sort_unstable();
    let ranges: Vec<(usize, usize)> =
        ranges.into_iter().map(|(start, end)| (start, if end == usize::MAX { total } else { end })).collect();
    let fits = ranges.iter().all(|&(start, end)| start <= end && end <= total)
        && ranges.windows(2).all(|pair| pair[0].1 <= pair[1].0);
    if ranges.is_empty() || ranges.len() > MAX_HONOURED_RANGES || !fits {
        return body.to_owned();
    }
    // Linear: mark the quoted code points once, then keep the others.
    let mut quoted = vec![false; total];
    for (start, end) in ranges {
        quoted[start..end].iter_mut().for_each(|q| *q = true);
    }
    body.chars().zip(quoted).filter(|(_, q)| !q).map(|(c, _)| c).collect()
}

fn is_subsequence(part: &str, whole: &str) -> bool {
    let mut whole = whole.chars();
    part.chars().all(|c| whole.any(|w| w == c))
}

fn children(element: &Element) -> impl Iterator<Item = &Element> {
    element.children.iter().filter_map(|node| match node {
        Node::Element(e) => Some(e),
        Node::Text(_) => None,
    })
}

fn text(element: &Element) -> String {
    element
        .children
        .iter()
        .filter_map(|node| match node {
            Node::Text(t) => Some(t.as_str()),
            Node::Element(_) => None,
        })
        .collect()
}

/// A message chosen by the bytes, as XML.
fn message(u: &mut Unstructured) -> Result<String> {
    let body: String = (0..u.int_in_range(0..=40)?).map(|_| u.choose(ALPHABET).copied()).collect::<Result<_>>()?;
    let total = body.chars().count();
    let nick = *u.choose(&[BOT_NICK, "anna", "Bo", "b\u{f6}t", ""])?;
    let from = if nick.is_empty() { ROOM.to_owned() } else { format!("{ROOM}/{nick}") };
    let message_type = *u.choose(&["groupchat", "chat", "normal", "error", "headline", ""])?;
    let mut xml = format!("<message from='{from}' to='room-bot@bot.localhost' id='m1'");
    if !message_type.is_empty() {
        xml += &format!(" type='{message_type}'");
    }
    xml.push('>');
    if u.ratio(7, 8)? {
        xml += "<body>";
        escape_into(&mut xml, &body);
        xml += "</body>";
    }
    if u.ratio(3, 4)? {
        let id = *u.choose(&["own-1", "other", ""])?;
        let to =
            *u.choose(&["", " to='dev@conference.localhost/Bot'", " to='dev@conference.localhost/anna'", " to='!'"])?;
        xml += &format!("<reply xmlns='{REPLY}' id='{id}'{to}/>");
    }
    for _ in 0..u.int_in_range(0..=2)? {
        let target = if u.ratio(7, 8)? { REPLY } else { "urn:xmpp:reactions:0" };
        xml += &format!("<fallback xmlns='{FALLBACK}' for='{target}'>");
        for _ in 0..u.int_in_range(0..=20)? {
            xml += &match u.int_in_range(0..=9)? {
                0 => "<body/>".to_owned(),
                1 => format!("<body start='{}'/>", bound(u, total)?),
                2 => format!("<body start='{}' end='x'/>", bound(u, total)?),
                3 => "<body start='-1' end='2'/>".to_owned(),
                4 => format!("<body start='0' end='{}'/>", u64::MAX),
                5 => format!("<body start='+0' end='+{}'/>", bound(u, total)?),
                6 => format!("<body xmlns='urn:other' start='0' end='{}'/>", bound(u, total)?),
                _ => format!("<body start='{}' end='{}'/>", bound(u, total)?, bound(u, total)?),
            };
        }
        xml += "</fallback>";
    }
    if u.ratio(1, 8)? {
        xml += "<delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>";
    }
    if u.ratio(1, 8)? {
        xml += "<subject>s</subject>";
    }
    if u.ratio(1, 8)? {
        xml += "<reactions xmlns='urn:xmpp:reactions:0' id='own-1'><reaction>x</reaction></reactions>";
    }
    if u.ratio(1, 8)? {
        xml += &format!("<stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='s1'/>");
    }
    xml += "</message>";
    Ok(xml)
}

/// A range end near the body's (where the off-by-ones are), or anywhere.
fn bound(u: &mut Unstructured, total: usize) -> Result<usize> {
    Ok(if u.ratio(7, 8)? { u.int_in_range(0..=total + 2)? } else { u.arbitrary::<usize>()? })
}
