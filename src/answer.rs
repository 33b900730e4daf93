//! Reading the webhook's HTTP answer: which answers are replies, and the reply stanza a JSON
//! object (component_http) or an XML stanza (mod_rest) describes, addressed and checked by
//! [`crate::policy`]. Runs on the worker threads.
//!
//! A JSON object is made a stanza by [`element_from_json`]: the one mapping of
//! [`crate::jsonmap`] (component_http's seed contract and the community mod_rest's fields, in
//! the profile of the module) plus the message-writing rules of [`crate::rich`]. Pushes to
//! either module's endpoint speak the same ([`crate::inbound`]).

use std::borrow::Cow;

use serde_json::{Map, Value};

/// "a string", "an object", …: what a JSON value is, for messages (the mapping's own).
pub(crate) use crate::jsonmap::json_type;

use crate::config::{Config, Format};
use crate::conversation::RoomReply;
use crate::jsonmap::{self, Kind, Profile};
use crate::outcome::{self, status_error, Outcome, Reply, BAD_REPLY};
use crate::policy::{self, Sender};
use crate::stanza::{Element, Incoming};
use crate::xml::{parse_stanza, ParseLimits};

/// An HTTP answer, read to the end (its body only if it is a reply).
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header, as sent.
    pub content_type: Option<String>,
    /// The body, if the answer is a reply; empty otherwise.
    pub body: Vec<u8>,
    /// A `Retry-After` given in seconds.
    pub retry_after: Option<std::time::Duration>,
}

/// What a reply is checked against: the module's contract and the component's host.
#[derive(Debug, Clone, Copy)]
pub struct Contract<'a> {
    /// JSON (component_http) or XML (mod_rest).
    pub format: Format,
    /// The component's host: replies come from it and never go to it.
    pub host: &'a str,
    /// Whose JSON field names a JSON reply is read in.
    pub profile: Profile,
}

impl<'a> Contract<'a> {
    /// The contract of the module `config` describes.
    pub fn of(config: &'a Config) -> Contract<'a> {
        Contract { format: config.profile.format, host: &config.host, profile: Profile::of(&config.profile) }
    }

    /// Whether an answer of this status and type is read as a reply (the only answers whose
    /// body is read, and so the only ones `max_reply_size` applies to). component_http: a `200`
    /// of its format. mod_rest, as the community module: any status but `202` and `204` with a
    /// body of a type it reads (XML, JSON, or `text/plain`: a chat message's text).
    pub fn is_reply(&self, status: u16, content_type: Option<&str>) -> bool {
        if self.profile == Profile::Rest {
            return !matches!(status, 202 | 204)
                && (is_json(content_type) || is_xmpp_xml(content_type) || is_text(content_type));
        }
        status == 200
            && match self.format {
                Format::Json => is_json(content_type),
                Format::Xml => is_xmpp_xml(content_type),
            }
    }
}

/// mod_rest's reply rules (see [`Contract::is_reply`]): the body read by its own type; one that
/// is no reply to `orig` is refused on a `2xx`, and on another status leaves the status to say
/// what went wrong, as the community module does.
fn interpret_rest(orig: &Incoming, answer: &HttpAnswer, contract: Contract) -> Outcome {
    let success = (200..300).contains(&answer.status);
    let by_status = |note: Option<String>| match note {
        _ if success => Outcome::NoReply,
        None => Outcome::Error(status_error(answer.status), format!("webhook answered HTTP {}", answer.status)),
        Some(why) => Outcome::Error(
            status_error(answer.status),
            format!("webhook answered HTTP {} (its body is no reply: {why})", answer.status),
        ),
    };
    if answer.body.iter().all(u8::is_ascii_whitespace) {
        return by_status(None);
    }
    let content_type = answer.content_type.as_deref();
    let reply = if is_json(content_type) {
        reply_from_json(orig, &answer.body, contract.profile)
    } else if is_xmpp_xml(content_type) {
        reply_from_xml(&answer.body).map(Reply::from)
    } else if orig.name == "message" {
        // text/plain: a chat message's text.
        std::str::from_utf8(&answer.body)
            .map_err(|_| "the text is not UTF-8".to_owned())
            .map(|text| {
                Element::new("message").with_attr("type", "chat").with_child(Element::new("body").with_text(text))
            })
            .map(Reply::from)
    } else {
        return by_status(None); // a text answers a message only
    };
    match reply.and_then(|reply| address_reply(reply, orig, contract.host)) {
        Ok(reply) => Outcome::Reply(reply),
        Err(why) if success => Outcome::Error(BAD_REPLY, format!("webhook reply refused: {why}")),
        Err(why) => by_status(Some(why)),
    }
}

/// `text/plain`, with or without parameters.
fn is_text(content_type: Option<&str>) -> bool {
    is_media_type(content_type, "text/plain")
}

/// Decides what an HTTP answer means, in either contract: a `200` of the contract's type is
/// the reply; another `2xx` (or type) is accepted without a reply; the rest are errors.
pub fn interpret(orig: &Incoming, answer: &HttpAnswer, contract: Contract) -> Outcome {
    if contract.profile == Profile::Rest && contract.is_reply(answer.status, answer.content_type.as_deref()) {
        return interpret_rest(orig, answer, contract);
    }
    match answer.status {
        status if contract.is_reply(status, answer.content_type.as_deref()) => {
            if answer.body.iter().all(u8::is_ascii_whitespace) {
                return Outcome::NoReply;
            }
            let reply = match contract.format {
                Format::Json => reply_from_json(orig, &answer.body, contract.profile),
                Format::Xml => reply_from_xml(&answer.body).map(Reply::from),
            }
            .and_then(|reply| address_reply(reply, orig, contract.host));
            match reply {
                Ok(reply) => Outcome::Reply(reply),
                Err(why) => Outcome::Error(BAD_REPLY, format!("webhook reply refused: {why}")),
            }
        }
        200..=299 => Outcome::NoReply,
        status => Outcome::Error(status_error(status), format!("webhook answered HTTP {status}")),
    }
}

/// `application/json`, with or without parameters such as `; charset=utf-8`.
pub fn is_json(content_type: Option<&str>) -> bool {
    is_media_type(content_type, "application/json")
}

/// `application/xmpp+xml`, with or without parameters.
pub fn is_xmpp_xml(content_type: Option<&str>) -> bool {
    is_media_type(content_type, "application/xmpp+xml")
}

fn is_media_type(content_type: Option<&str>, wanted: &str) -> bool {
    let Some(content_type) = content_type else { return false };
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case(wanted)
}

/// The reply stanza of a webhook's XML answer (mod_rest's contract), before it is addressed.
fn reply_from_xml(body: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the stanza is not UTF-8".to_string())?;
    parse_stanza(text, ParseLimits::default())
}

/// The reply a webhook's JSON object describes, before it is addressed.
fn reply_from_json(orig: &Incoming, body: &[u8], profile: Profile) -> Result<Reply, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(format!("expected a JSON object, got {}", json_type(&value)));
    };
    reply_from_fields(orig, &fields, profile)
}

/// The reply a JSON object's fields describe, before it is addressed.
fn reply_from_fields(orig: &Incoming, fields: &Map<String, Value>, profile: Profile) -> Result<Reply, String> {
    let default_kind = if orig.name == "iq" { Kind::Iq } else { Kind::Message };
    let mut reply = element_from_json(fields, profile, default_kind)?;
    // A reply to a room message that names no type gets the room's default (see `address`),
    // not element_from_json's `chat`.
    if orig.room.is_some() && !fields.contains_key("type") && !fields.contains_key("stanza") {
        reply.stanza.remove_attr("type");
    }
    Ok(reply)
}

/// The message every stanza of a streamed answer is made from: the first object's
/// reply fields (without `delta` and `body`), addressed and checked as a one-object reply is.
/// Only a message can be streamed.
pub(crate) fn stream_template(orig: &Incoming, fields: &Map<String, Value>, host: &str) -> Result<Element, String> {
    // A file's body must be its URL, a reaction has none, a correction of another message and
    // a quote's fallback range would not follow a text that grows: none of them is streamed.
    for key in ["oob_url", "file", "reactions", "replace"] {
        if fields.get(key).is_some_and(|value| !value.is_null()) {
            return Err(format!("'{key}' cannot be used in a streamed answer"));
        }
    }
    if fields.get("reply").and_then(|reply| reply.get("quote")).is_some_and(|quote| !quote.is_null()) {
        return Err("'reply.quote' cannot be used in a streamed answer".into());
    }
    let template = address(reply_from_fields(orig, fields, Profile::ComponentHttp)?.stanza, orig, host)?;
    if template.name != "message" {
        return Err(format!("a streamed answer is a message, not a {}", template.name));
    }
    if template.attr("type") == Some("error") {
        return Err("a streamed answer cannot be an error".into());
    }
    Ok(template)
}

/// The stanza a JSON object describes in `profile`'s field names, with the messages to send
/// right after it (a file's caption, what else a reaction said: [`crate::rich::compose`]),
/// which get the message's type and addresses once it is addressed ([`address_after`]).
///
/// - `stanza`, if given, is the stanza, parsed; `to`, `from` and `id` fill in the attributes it
///   lacks, and every other field is ignored;
/// - otherwise the fields are mapped ([`jsonmap::json_to_element`]: the kind is `kind`, else
///   the one the fields imply, else `default_kind`); a message without a `type` is `chat`.
///   component_http ignores a field it does not know, as it always has; mod_rest refuses it,
///   naming it, as the community module does not drop a field silently.
///
/// Defaults that depend on what is answered (the addresses, a room's type) are filled later.
pub fn element_from_json(fields: &Map<String, Value>, profile: Profile, default_kind: Kind) -> Result<Reply, String> {
    if let Some(xml) = string_field(fields, "stanza")? {
        let mut stanza = parse_stanza(xml, ParseLimits::default()).map_err(|e| format!("'stanza': {e}"))?;
        for key in ["to", "from", "id"] {
            if let Some(value) = string_field(fields, key)? {
                if stanza.attr(key).is_none() {
                    stanza.set_attr(key, value);
                }
            }
        }
        return Ok(Reply::from(stanza));
    }
    let fields = known_fields(fields, profile, default_kind)?;
    let mut stanza = jsonmap::json_to_element(&fields, profile, default_kind).map_err(|e| e.to_string())?;
    let mut after = Vec::new();
    if stanza.name == "message" {
        if stanza.attr("type").is_none() {
            // First, where a type given is written.
            stanza.attrs.insert(0, ("type".into(), "chat".into()));
        }
        after = crate::rich::compose(&mut stanza, &fields)?;
        crate::upload::attach(&mut stanza, &fields)?;
    }
    let reply = Reply { stanza, after };
    check_elements(&reply)?;
    Ok(reply)
}

/// The fields the mapping is given. mod_rest: all of them (the kind is inferred from them, and a
/// field it cannot map is refused). component_http, as its contract has always said: the kind
/// is `kind` or `default_kind`, and a field it does not know, or that is not for that kind, is
/// ignored.
fn known_fields(
    fields: &Map<String, Value>,
    profile: Profile,
    default_kind: Kind,
) -> Result<Cow<'_, Map<String, Value>>, String> {
    if profile == Profile::Rest {
        return Ok(Cow::Borrowed(fields));
    }
    let kind = match string_field(fields, "kind")? {
        None => default_kind,
        Some(name) => {
            Kind::from_name(name).ok_or_else(|| format!("'kind' is {name:?}, expected message, presence or iq"))?
        }
    };
    let known = |key: &String| jsonmap::rows(profile).any(|row| row.name == key.as_str() && row.kinds.has(kind));
    let kind_named = fields.get("kind").is_some_and(|kind| !kind.is_null());
    if fields.keys().all(known) && (kind_named || !fields.contains_key("type")) {
        return Ok(Cow::Borrowed(fields));
    }
    let mut kept: Map<String, Value> =
        fields.iter().filter(|(key, _)| known(key)).map(|(key, value)| (key.clone(), value.clone())).collect();
    // Named, so that a `type` of another kind is refused as such rather than choosing the kind.
    kept.insert("kind".into(), Value::String(kind.name().into()));
    Ok(Cow::Owned(kept))
}

/// Holds a reply built from JSON to the element limit a parsed `stanza` has, counting the
/// messages after it: each list of the mapping has its own bound (see [`crate::rich`]), and
/// this keeps any row, present or future, from handing Prosody's main thread more elements
/// than one `stanza` may have.
fn check_elements(reply: &Reply) -> Result<(), String> {
    let max = ParseLimits::default().max_elements;
    let mut pending: Vec<&Element> = std::iter::once(&reply.stanza).chain(&reply.after).collect();
    let mut count = 0usize;
    while let Some(element) = pending.pop() {
        count += 1;
        if count > max {
            return Err(format!("the reply makes more than {max} elements, a stanza's limit"));
        }
        pending.extend(element.children.iter().filter_map(|node| match node {
            crate::stanza::Node::Element(child) => Some(child),
            crate::stanza::Node::Text(_) => None,
        }));
    }
    Ok(())
}

/// Gives the messages sent after a reply's stanza the type and addresses the stanza ended with
/// (defaults filled and prepared), and checks them like it.
pub fn address_after(reply: &mut Reply, host: &str, sender: Sender) -> Result<(), String> {
    for message in &mut reply.after {
        for key in ["type", "to", "from"] {
            match reply.stanza.attr(key) {
                Some(value) => message.set_attr(key, value),
                None => message.remove_attr(key),
            }
        }
        policy::check(message, host, sender).map_err(|refusal| refusal.message().to_owned())?;
    }
    Ok(())
}

/// [`address`] for a reply and the messages after it; an iq request is answered with one iq,
/// and nothing after it.
fn address_reply(reply: Reply, orig: &Incoming, host: &str) -> Result<Reply, String> {
    let after = if outcome::answers_request(orig) { Vec::new() } else { reply.after };
    let mut reply = Reply { stanza: address(reply.stanza, orig, host)?, after };
    address_after(&mut reply, host, Sender::Webhook)?;
    Ok(reply)
}

/// Fills in a reply's missing addresses (a reply answers the sender, from where it wrote to) and
/// checks it ([`policy::check`]). The answer to an iq `get`/`set` goes to its sender whatever
/// the webhook wrote, with the request's id.
fn address(reply: Element, orig: &Incoming, host: &str) -> Result<Element, String> {
    let mut reply = if outcome::answers_request(orig) {
        outcome::iq_response(orig, reply)
    } else {
        let mut reply = reply;
        if let (Some(room), "message") = (&orig.room, reply.name.as_str()) {
            room_defaults(
                &mut reply,
                &room.reply(orig.from.as_deref().unwrap_or_default(), orig.to.as_deref().unwrap_or_default()),
            );
        }
        for (key, default) in [("to", &orig.from), ("from", &orig.to)] {
            if let (None, Some(value)) = (reply.attr(key), default) {
                reply.set_attr(key, value);
            }
        }
        reply
    };
    policy::check(&mut reply, host, Sender::Webhook).map_err(|refusal| refusal.message().to_owned())?;
    Ok(reply)
}

/// The defaults of a reply to a room message ([`RoomReply`]): without a type, the
/// room's (`groupchat` for what was said in the room), unless it names another `to`; sent that
/// way, to the room and from the bot's occupant unless it says otherwise.
fn room_defaults(reply: &mut Element, defaults: &RoomReply) {
    if reply.attr("type").is_none() {
        let to_elsewhere = reply.attr("to").is_some_and(|to| to != defaults.to);
        reply.set_attr("type", if to_elsewhere { "chat" } else { defaults.reply_type });
    }
    if reply.attr("type") == Some(defaults.reply_type) {
        for (key, value) in [("to", &defaults.to), ("from", &defaults.from)] {
            if reply.attr(key).is_none() {
                reply.set_attr(key, value);
            }
        }
    }
}

fn string_field<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    jsonmap::optional_string(fields.get(key), &format!("'{key}'"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::complete;

    const JSON: Contract = Contract { format: Format::Json, host: "bot.localhost", profile: Profile::ComponentHttp };

    fn incoming(name: &str, stanza_type: Option<&str>) -> Incoming {
        Incoming::sample(name, stanza_type)
    }

    fn answer(status: u16, content_type: &str, body: &str) -> HttpAnswer {
        HttpAnswer {
            status,
            content_type: Some(content_type.into()),
            body: body.as_bytes().to_vec(),
            retry_after: None,
        }
    }

    fn reply(orig: &Incoming, body: &str) -> Outcome {
        interpret(orig, &answer(200, "application/json", body), JSON)
    }

    fn sent(orig: &Incoming, answer: &HttpAnswer) -> Option<String> {
        complete(orig, interpret(orig, answer, JSON)).send.map(|e| e.to_xml())
    }

    fn refused_because(outcome: &Outcome) -> &str {
        match outcome {
            Outcome::Error(BAD_REPLY, why) => why,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_stream_template_is_a_plain_message() {
        let orig = incoming("message", Some("chat"));
        let fields = |json: &str| serde_json::from_str::<Map<String, Value>>(json).unwrap();
        let template = stream_template(&orig, &fields(r#"{"reply": {"id": "m1"}}"#), "bot.localhost").unwrap();
        assert!(template.to_xml().contains("<reply"), "{}", template.to_xml());
        for refused in [
            r#"{"oob_url": "https://f.example/a.png"}"#,
            r#"{"reactions": {"id": "m1", "reactions": ["x"]}}"#,
            r#"{"replace": "m1"}"#,
            r#"{"reply": {"id": "m1", "quote": "earlier"}}"#,
            r#"{"kind": "presence"}"#,
            r#"{"type": "error"}"#,
        ] {
            assert!(stream_template(&orig, &fields(refused), "bot.localhost").is_err(), "{refused}");
        }
    }

    #[test]
    fn echo_reply_swaps_addresses_and_defaults_to_chat() {
        let msg = incoming("message", Some("chat"));
        assert_eq!(
            sent(&msg, &answer(200, "application/json", r#"{"body":"Did you say hi?"}"#)).unwrap(),
            "<message type='chat' to='user@localhost/phone' from='echo@bot.localhost'><body>Did you say hi?</body></message>"
        );
    }

    #[test]
    fn charset_parameter_and_case_are_accepted() {
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("Application/JSON")));
        assert!(!is_json(Some("text/html")));
        assert!(!is_json(Some("application/jsonp")));
        assert!(!is_json(None));
    }

    #[test]
    fn body_values_become_text_and_null_means_absent() {
        let msg = incoming("message", None);
        let xml = |body: &str| sent(&msg, &answer(200, "application/json", body)).unwrap();
        assert!(xml(r#"{"body":42}"#).contains("<body>42</body>"));
        assert!(xml(r#"{"body":true}"#).contains("<body>true</body>"));
        assert!(xml(r#"{"body":{"a":1}}"#).contains("<body>{&quot;a&quot;:1}</body>"));
        assert!(!xml(r#"{"body":null}"#).contains("<body"));
        assert!(refused_because(&reply(&msg, r#"{"body":"a\u0000b"}"#)).contains("U+0000"));
        assert!(xml(r#"{"type":"normal","body":"x"}"#).contains("type='normal'"));
    }

    #[test]
    fn mod_rest_reads_a_reply_from_any_status_with_a_body_it_reads_and_text_as_a_chat_message() {
        const REST: Contract = Contract { format: Format::Xml, host: "bot.localhost", profile: Profile::Rest };
        let msg = incoming("message", Some("chat"));
        let iq = incoming("iq", Some("get"));
        let sent = |orig: &Incoming, status: u16, content_type: &str, body: &str| {
            complete(orig, interpret(orig, &answer(status, content_type, body), REST)).send.map(|e| e.to_xml())
        };
        let text = sent(&msg, 200, "text/plain; charset=utf-8", "Yes, this is bot").unwrap();
        assert!(text.contains("type='chat'") && text.contains("<body>Yes, this is bot</body>"), "{text}");
        // JSON whatever the configured format, and on any status.
        let json = sent(&msg, 200, "application/json", r#"{"body": "in JSON"}"#).unwrap();
        assert!(json.contains("<body>in JSON</body>"), "{json}");
        let teapot =
            sent(&msg, 418, "application/xmpp+xml", "<message><body>short and stout</body></message>").unwrap();
        assert!(teapot.contains("<body>short and stout</body>"), "{teapot}");
        let error =
            r#"{"type": "error", "error": {"type": "cancel", "condition": "item-not-found", "text": "no such thing"}}"#;
        let not_found = sent(&iq, 404, "application/json", error).unwrap();
        assert!(not_found.contains("type='error'") && not_found.contains("<item-not-found"), "{not_found}");
        // A body that is no reply leaves the status to speak on an error, and is refused on a 2xx.
        let broken = sent(&msg, 500, "application/json", "{oops").unwrap();
        assert!(broken.contains("<internal-server-error"), "{broken}");
        assert!(matches!(
            interpret(&msg, &answer(200, "application/json", "{oops"), REST),
            Outcome::Error(BAD_REPLY, _)
        ));
        // 202 and 204 never carry a reply; a text answers a message only.
        assert_eq!(sent(&msg, 202, "text/plain", "ignored"), None);
        assert_eq!(sent(&msg, 204, "application/json", r#"{"body": "x"}"#), None);
        let pong = sent(&iq, 200, "text/plain", "pong").unwrap();
        assert!(pong.contains("type='result'") && !pong.contains("pong"), "{pong}");
        // component_http keeps its contract: a text answer is no reply.
        assert_eq!(complete(&msg, interpret(&msg, &answer(200, "text/plain", "x"), JSON)).send, None);
    }

    #[test]
    fn supplied_addresses_and_kind_are_kept_prepared() {
        let msg = incoming("message", None);
        let xml = sent(
            &msg,
            &answer(200, "application/json", r#"{"kind":"presence","to":"a@b","from":"x@BOT.localhost/r"}"#),
        )
        .unwrap();
        assert_eq!(xml, "<presence to='a@b' from='x@bot.localhost/r'/>");
        assert!(refused_because(&reply(&msg, r#"{"kind":"carrier-pigeon"}"#)).contains("carrier-pigeon"));
    }

    #[test]
    fn stanza_field_is_parsed_and_missing_addresses_filled() {
        let msg = incoming("message", None);
        let xml = sent(
            &msg,
            &answer(
                200,
                "application/json",
                r#"{"stanza":"<message to='other@localhost'><body>raw</body></message>"}"#,
            ),
        )
        .unwrap();
        assert_eq!(xml, "<message to='other@localhost' from='echo@bot.localhost'><body>raw</body></message>");
        assert!(matches!(reply(&msg, r#"{"stanza":"<message>"}"#), Outcome::Error(BAD_REPLY, _)));
    }

    #[test]
    fn replies_may_only_come_from_the_component() {
        let msg = incoming("message", None);
        for body in [
            r#"{"from":"admin@localhost","body":"x"}"#,
            r#"{"from":"bot.localhost.evil.example"}"#,
            r#"{"stanza":"<message from='someone@localhost/r'/>"}"#,
            r#"{"from":"evil.example/bot.localhost"}"#,
        ] {
            assert!(refused_because(&reply(&msg, body)).contains("not on this component"), "{body}");
        }
        for from in ["bot.localhost", "other@bot.localhost", "x@bot.localhost/a@b/c"] {
            let body = format!(r#"{{"from":"{from}","body":"x"}}"#);
            assert!(matches!(reply(&msg, &body), Outcome::Reply(_)), "{from}");
        }
    }

    #[test]
    fn the_host_decides_not_the_address_the_stanza_came_to() {
        // Found by review: a reply to "@localhost" bounced back to the component as a request
        // whose `to` was "@localhost"; "own domain" taken from that let the next reply speak
        // as the admin. The module's host decides.
        let bounced = Incoming { to: Some("@localhost".into()), ..incoming("message", Some("chat")) };
        let impersonation = r#"{"from":"admin@localhost","to":"alice@localhost","body":"Send me your password."}"#;
        assert!(refused_because(&reply(&bounced, impersonation)).contains("not on this component"));
        let elsewhere = Incoming { to: Some("x@localhost".into()), ..incoming("message", Some("chat")) };
        assert!(refused_because(&reply(&elsewhere, impersonation)).contains("not on this component"));
        // And the first step of that chain is refused too.
        let msg = incoming("message", Some("chat"));
        assert!(refused_because(&reply(&msg, r#"{"to":"@localhost","body":"x"}"#)).contains("not a valid JID"));
    }

    #[test]
    fn replies_to_the_component_itself_are_refused() {
        let msg = incoming("message", Some("chat"));
        for to in ["bot.localhost", "echo@bot.localhost", "other@Bot.Localhost/r"] {
            let body = format!(r#"{{"to":"{to}","body":"loop"}}"#);
            assert!(refused_because(&reply(&msg, &body)).contains("come back to the webhook"), "{to}");
        }
    }

    #[test]
    fn an_iq_reply_prosody_cannot_handle_is_refused() {
        // Found by review: this made Prosody's mod_iq raise, and the rest of the batch was lost.
        let msg = incoming("message", Some("chat"));
        assert!(refused_because(&reply(&msg, r#"{"kind":"iq","type":"get","to":"localhost"}"#)).contains("payload"));
        assert!(refused_because(&reply(&msg, r#"{"kind":"iq","to":"localhost"}"#)).contains("type"));
    }

    #[test]
    fn only_200_json_replies() {
        let msg = incoming("message", None);
        let with = |status, content_type, body| interpret(&msg, &answer(status, content_type, body), JSON);
        assert_eq!(with(200, "text/plain", "{}"), Outcome::NoReply);
        assert_eq!(with(201, "application/json", r#"{"body":"x"}"#), Outcome::NoReply);
        assert_eq!(with(204, "application/json", ""), Outcome::NoReply);
        assert_eq!(with(200, "application/json", " \n"), Outcome::NoReply);
        assert!(matches!(with(200, "application/json", "nope"), Outcome::Error(BAD_REPLY, _)));
        assert!(matches!(with(200, "application/json", "[1]"), Outcome::Error(BAD_REPLY, _)));
        assert!(JSON.is_reply(200, Some("application/json")));
        assert!(!JSON.is_reply(404, Some("application/json")));
        assert!(!JSON.is_reply(200, Some("text/html")));
    }

    #[test]
    fn http_errors_become_stanza_errors() {
        let msg = incoming("message", Some("chat"));
        let done = complete(&msg, interpret(&msg, &answer(503, "text/plain", ""), JSON));
        assert!(done.send.unwrap().to_xml().contains("<error type='wait'><remote-server-timeout"));
        assert!(done.log.unwrap().1.contains("HTTP 503"));
    }

    #[test]
    fn error_stanzas_are_never_answered() {
        let msg = incoming("message", Some("error"));
        assert_eq!(sent(&msg, &answer(500, "text/plain", "")), None);
        assert_eq!(sent(&msg, &answer(200, "application/json", r#"{"body":"x"}"#)), None);
    }

    #[test]
    fn iq_get_always_gets_exactly_one_response_with_its_id() {
        let iq = incoming("iq", Some("get"));
        assert_eq!(
            sent(&iq, &answer(204, "text/plain", "")).unwrap(),
            "<iq type='result' id='abc' to='user@localhost/phone' from='echo@bot.localhost'/>"
        );
        let payload = r#"{"stanza":"<iq><query xmlns='jabber:iq:version'><name>bot</name></query></iq>"}"#;
        assert_eq!(
            sent(&iq, &answer(200, "application/json", payload)).unwrap(),
            "<iq type='result' id='abc' to='user@localhost/phone' from='echo@bot.localhost'><query xmlns='jabber:iq:version'><name>bot</name></query></iq>"
        );
        // A message-shaped reply still answers the iq, as an empty result.
        assert!(sent(&iq, &answer(200, "application/json", r#"{"kind":"message","body":"hi"}"#))
            .unwrap()
            .starts_with("<iq type='result' id='abc'"));
        assert!(sent(&iq, &answer(500, "text/plain", "")).unwrap().contains("type='error'"));
    }

    #[test]
    fn the_answer_to_an_iq_goes_to_the_one_who_asked() {
        // Found by review: a `to` in the reply used to win, sending the answer elsewhere.
        let iq = incoming("iq", Some("get"));
        let redirected =
            r#"{"stanza":"<iq to='other@localhost' from='x@bot.localhost' id='mine'><q xmlns='urn:q'/></iq>"}"#;
        assert_eq!(
            sent(&iq, &answer(200, "application/json", redirected)).unwrap(),
            "<iq to='user@localhost/phone' from='echo@bot.localhost' id='abc' type='result'><q xmlns='urn:q'/></iq>"
        );
        let json = r#"{"kind":"iq","to":"other@localhost"}"#;
        assert!(sent(&iq, &answer(200, "application/json", json)).unwrap().contains("to='user@localhost/phone'"));
    }

    #[test]
    fn a_file_with_a_caption_is_two_messages_addressed_alike() {
        let msg = incoming("message", Some("chat"));
        let url = "https://files.example/cat.jpg";
        let body = format!(r#"{{"oob_url":"{url}","body":"A cat.","to":"Carol@Localhost"}}"#);
        let Outcome::Reply(sent) = reply(&msg, &body) else { panic!("not a reply") };
        assert_eq!(
            sent.stanza.to_xml(),
            format!(
                "<message type='chat' to='carol@localhost' from='echo@bot.localhost'><body>{url}</body>\
                 <x xmlns='jabber:x:oob'><url>{url}</url></x></message>"
            )
        );
        assert_eq!(
            sent.after.iter().map(Element::to_xml).collect::<Vec<_>>(),
            ["<message type='chat' to='carol@localhost' from='echo@bot.localhost'><body>A cat.</body></message>"]
        );
        // An iq is answered with one iq: a caption has no place there.
        let iq = incoming("iq", Some("get"));
        let mut outcome = interpret(&iq, &answer(200, "application/json", &body), JSON);
        assert!(matches!(&outcome, Outcome::Reply(r) if r.after.is_empty()), "{outcome:?}");
        assert_eq!(outcome::take_after(&iq, &mut outcome), []);
        assert_eq!(
            complete(&iq, outcome).send.unwrap().to_xml(),
            "<iq to='user@localhost/phone' type='result' id='abc' from='echo@bot.localhost'/>"
        );
        let mut outcome = reply(&msg, &body);
        assert_eq!(outcome::take_after(&msg, &mut outcome).len(), 1);
    }

    #[test]
    fn a_malformed_rich_field_is_refused_naming_it() {
        let msg = incoming("message", Some("chat"));
        for (body, field) in [
            (r#"{"oob_url":"ftp://x.example/f"}"#, "'oob_url'"),
            (r#"{"replace":7}"#, "'replace'"),
            (r#"{"reactions":{"id":"m1","reactions":[""]}}"#, "'reactions.reactions'"),
            (r#"{"reply":{"id":["m1"]}}"#, "'reply.id'"),
        ] {
            let outcome = reply(&msg, body);
            let why = refused_because(&outcome);
            assert!(why.starts_with(&format!("webhook reply refused: {field}")), "{why}");
        }
        // Unknown fields stay ignored; a stanza is sent as it is.
        assert!(matches!(reply(&msg, r#"{"body":"x","sticker":{"id":1}}"#), Outcome::Reply(_)));
        let raw = r#"{"stanza":"<message><body>raw</body></message>","reactions":"ignored"}"#;
        assert!(matches!(reply(&msg, raw), Outcome::Reply(_)));
    }

    #[test]
    fn a_rest_json_reply_speaks_the_community_names_and_refuses_what_it_cannot_map() {
        let rest = Contract { profile: Profile::Rest, ..JSON };
        let msg = incoming("message", Some("chat"));
        let with = |body: &str| interpret(&msg, &answer(200, "application/json", body), rest);
        let Outcome::Reply(away) = with(r#"{"kind": "presence", "show": "away"}"#) else { panic!("not a reply") };
        assert_eq!(
            away.stanza.to_xml(),
            "<presence to='user@localhost/phone' from='echo@bot.localhost'><show>away</show></presence>"
        );
        assert_eq!(
            refused_because(&with(r#"{"body": "x", "sticker": 1}"#)),
            "webhook reply refused: 'sticker' is not a field this module knows"
        );
        // The same object to component_http: the field it does not know is ignored, as always.
        assert!(matches!(reply(&msg, r#"{"body": "x", "sticker": 1}"#), Outcome::Reply(_)));
    }

    #[test]
    fn a_built_reply_is_held_to_the_element_limit_of_a_parsed_one() {
        let max = ParseLimits::default().max_elements;
        // Every field, every list at its bound: well within the limit.
        let fullest = serde_json::json!({
            "body": "b", "oob_url": "https://f.example/a", "replace": "m0",
            "reactions": { "id": "m1", "reactions": vec!["x"; crate::rich::MAX_REACTIONS] },
            "reply": { "id": "m2", "to": "a@localhost", "quote": "q" },
        });
        let Value::Object(fields) = fullest else { unreachable!() };
        assert!(check_elements(&element_from_json(&fields, Profile::ComponentHttp, Kind::Message).unwrap()).is_ok());
        // However a reply is built, one element past the limit (counting the messages after
        // it) is refused, as a `stanza` of that many is.
        let mut wide = Reply { stanza: Element::new("message"), after: Vec::new() };
        for _ in 1..max {
            wide.stanza.push_element(Element::new("x"));
        }
        assert_eq!(check_elements(&wide), Ok(()));
        wide.after.push(Element::new("message"));
        assert_eq!(check_elements(&wide), Err(format!("the reply makes more than {max} elements, a stanza's limit")));
        let parsed = format!("<message>{}</message>", "<x/>".repeat(max));
        assert_eq!(parse_stanza(&parsed, ParseLimits::default()), Err(format!("more than {max} elements")));
    }

    #[test]
    fn iq_results_and_errors_are_never_answered() {
        for t in ["result", "error"] {
            let iq = incoming("iq", Some(t));
            assert_eq!(sent(&iq, &answer(204, "text/plain", "")), None);
            assert_eq!(sent(&iq, &answer(500, "text/plain", "")), None);
            assert_eq!(sent(&iq, &answer(200, "application/json", r#"{"kind":"iq"}"#)), None);
        }
    }
}
