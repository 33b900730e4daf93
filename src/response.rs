//! From the webhook's HTTP answer to the one outcome of a stanza: a reply, nothing, or an error.
//!
//! Runs on the worker threads, on owned data; the main thread only turns the finished
//! [`Completion`] into a Lua stanza table and sends it.

use serde_json::{Map, Value};

use crate::config::Format;
use crate::stanza::{error_reply, Element, Incoming};
use crate::xml::{parse_stanza, Limits};

/// An XMPP stanza error: type, defined condition, optional human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub error_type: &'static str,
    pub condition: &'static str,
    pub text: Option<&'static str>,
}

const fn err(error_type: &'static str, condition: &'static str, text: Option<&'static str>) -> StanzaError {
    StanzaError { error_type, condition, text }
}

pub const CONNECTION_FAILURE: StanzaError = err("cancel", "remote-server-timeout", Some("Connection failure"));
pub const TIMED_OUT: StanzaError = err("wait", "remote-server-timeout", Some("The webhook did not answer in time"));
pub const BAD_REPLY: StanzaError = err("cancel", "internal-server-error", Some("The webhook sent an invalid reply"));
pub const QUEUE_FULL: StanzaError =
    err("wait", "resource-constraint", Some("Too many stanzas are waiting for the webhook"));
pub const UNLOADED: StanzaError =
    err("wait", "service-unavailable", Some("The component was stopped before the webhook answered"));
pub const INTERNAL: StanzaError = err("cancel", "internal-server-error", None);

/// The stanza error a non-2xx HTTP status maps to.
pub fn status_error(status: u16) -> StanzaError {
    match status {
        400 => err("modify", "bad-request", None),
        401 => err("auth", "not-authorized", None),
        402 => err("auth", "forbidden", Some("Payment required")),
        403 => err("auth", "forbidden", None),
        404 => err("cancel", "item-not-found", None),
        410 => err("cancel", "gone", None),
        500 => err("cancel", "internal-server-error", None),
        501 => err("cancel", "feature-not-implemented", None),
        502 => err("cancel", "remote-server-timeout", Some("Bad gateway")),
        503 => err("wait", "remote-server-timeout", Some("Service temporarily unavailable")),
        504 => err("wait", "remote-server-timeout", Some("Gateway timeout")),
        _ => err("cancel", "service-unavailable", None),
    }
}

/// A log line for Prosody's log, at one of its levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// What the webhook said about one stanza, before the rules about what may be answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Reply(Element),
    NoReply,
    /// `reason` is for the operator's log: what went wrong and where.
    Error(StanzaError, String),
}

/// The finished result for one stanza: at most one stanza to send, at most one log line.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub send: Option<Element>,
    pub log: Option<(Level, String)>,
}

/// An HTTP answer, read to the end.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// A `Retry-After` given in seconds.
    pub retry_after: Option<std::time::Duration>,
}

/// Decides what an HTTP answer means for the stanza it answers (the JSON contract).
pub fn interpret(orig: &Incoming, answer: &HttpAnswer) -> Outcome {
    interpret_as(orig, answer, Format::Json)
}

/// Decides what an HTTP answer means, in either contract: a `200` of the contract's type is
/// the reply; another `2xx` (or type) is accepted without a reply; the rest are errors.
pub fn interpret_as(orig: &Incoming, answer: &HttpAnswer, format: Format) -> Outcome {
    let content_type = answer.content_type.as_deref();
    let of_the_contract = match format {
        Format::Json => is_json(content_type),
        Format::Xml => is_xmpp_xml(content_type),
    };
    match answer.status {
        200 if of_the_contract => {
            if answer.body.iter().all(u8::is_ascii_whitespace) {
                return Outcome::NoReply;
            }
            let reply = match format {
                Format::Json => reply_from_json(orig, &answer.body),
                Format::Xml => reply_from_xml(orig, &answer.body),
            };
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

/// Builds the reply stanza of a webhook's XML answer (mod_rest's contract).
pub fn reply_from_xml(orig: &Incoming, body: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the stanza is not UTF-8".to_string())?;
    let reply = parse_stanza(text, Limits::default())?;
    address(reply, orig, None, None)
}

/// Builds the reply stanza described by a webhook's JSON object.
pub fn reply_from_json(orig: &Incoming, body: &[u8]) -> Result<Element, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(format!("expected a JSON object, got {}", json_type(&value)));
    };
    let to = string_field(&fields, "to")?;
    let from = string_field(&fields, "from")?;
    let default_kind = if orig.name == "iq" { "iq" } else { "message" };
    let reply = element_from_json(&fields, default_kind)?;
    address(reply, orig, to, from)
}

/// The stanza a JSON object describes (`stanza`, or `kind`, `type` and `body`), before its
/// addresses are filled in.
pub fn element_from_json(fields: &Map<String, Value>, default_kind: &str) -> Result<Element, String> {
    let reply = if let Some(xml) = string_field(fields, "stanza")? {
        parse_stanza(xml, Limits::default()).map_err(|e| format!("'stanza': {e}"))?
    } else {
        let kind = string_field(fields, "kind")?.unwrap_or(default_kind);
        if !matches!(kind, "message" | "presence" | "iq") {
            return Err(format!("'kind' is \"{kind}\", expected message, presence or iq"));
        }
        let mut reply = Element::new(kind);
        match string_field(fields, "type")? {
            Some(t) => reply.set_attr("type", t),
            None if kind == "message" => reply.set_attr("type", "chat"),
            None => {}
        }
        if kind == "message" {
            if let Some(text) = body_text(fields.get("body")) {
                reply.push_element(Element::new("body").with_text(&text));
            }
        }
        reply
    };
    Ok(reply)
}

/// Fills in a reply's missing addresses — supplied ones win; missing ones answer the sender
/// from where it wrote to — and applies the rule that a webhook speaks only for its own
/// component, never for other users or hosts.
fn address(mut reply: Element, orig: &Incoming, to: Option<&str>, from: Option<&str>) -> Result<Element, String> {
    fill_attr(&mut reply, "to", to.or(orig.from.as_deref()));
    fill_attr(&mut reply, "from", from.or(orig.to.as_deref()));
    let own_domain = orig.to.as_deref().map(jid_domain).unwrap_or("");
    let reply_from = reply.attr("from").unwrap_or("");
    if !jid_domain(reply_from).eq_ignore_ascii_case(own_domain) {
        return Err(format!("'from' {reply_from:?} is not on this component ({own_domain})"));
    }
    reply.check_xml()?;
    Ok(reply)
}

/// The domain part of `node@domain/resource` (a resource may itself contain `@` and `/`).
pub fn jid_domain(jid: &str) -> &str {
    let bare = jid.split_once('/').map_or(jid, |(bare, _)| bare);
    bare.split_once('@').map_or(bare, |(_, domain)| domain)
}

fn fill_attr(element: &mut Element, key: &str, value: Option<&str>) {
    if element.attr(key).is_none() {
        if let Some(value) = value {
            element.set_attr(key, value);
        }
    }
}

fn string_field<'a>(fields: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("'{key}' must be a string, got {}", json_type(other))),
    }
}

/// Body text: strings as they are, other values as their JSON text, `null` as no body.
fn body_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Applies the rules about what may be sent back, and phrases the log line.
///
/// - A stanza of type `error` is never answered (that is how error loops start).
/// - An iq `get`/`set` gets exactly one answer carrying its `id`: the webhook's reply made an
///   iq `result` (or `error`, if the webhook says so), an empty result when the webhook had
///   nothing to say, or the error.
/// - An iq `result`/`error`, and an iq without an id, is never answered.
pub fn complete(orig: &Incoming, outcome: Outcome) -> Completion {
    let stanza_type = orig.stanza_type.as_deref().unwrap_or("");
    let is_iq = orig.name == "iq";
    // An iq without an id cannot be answered (its sender could not match the answer; RFC 6120
    // 8.2.3). Prosody refuses such iqs from clients itself; they can still come from a
    // component or a remote server.
    let is_request = is_iq && matches!(stanza_type, "get" | "set") && orig.id.is_some();
    let answerable = stanza_type != "error" && (!is_iq || is_request);
    let what = describe(orig);
    match outcome {
        Outcome::Reply(_) if !answerable => Completion {
            send: None,
            log: Some((Level::Debug, format!("not answering {what}: the webhook's reply is dropped"))),
        },
        Outcome::Reply(reply) if is_request => Completion { send: Some(iq_response(orig, reply)), log: None },
        Outcome::Reply(reply) => Completion { send: Some(reply), log: None },
        Outcome::NoReply if is_request => Completion { send: Some(iq_response(orig, Element::new("iq"))), log: None },
        Outcome::NoReply => Completion { send: None, log: None },
        Outcome::Error(error, reason) => Completion {
            send: answerable.then(|| error_reply(orig, error.error_type, error.condition, error.text)),
            log: Some((Level::Warn, format!("{what}: {reason}"))),
        },
    }
}

/// The response to an iq get/set: always an iq with the request's id and swapped addresses;
/// the webhook's iq keeps its payload and may choose `type="error"`.
fn iq_response(orig: &Incoming, reply: Element) -> Element {
    let mut response = if reply.name == "iq" { reply } else { Element::new("iq") };
    let response_type = if response.attr("type") == Some("error") { "error" } else { "result" };
    response.set_attr("type", response_type);
    match &orig.id {
        Some(id) => response.set_attr("id", id),
        None => response.remove_attr("id"),
    }
    fill_attr(&mut response, "to", orig.from.as_deref());
    fill_attr(&mut response, "from", orig.to.as_deref());
    response
}

/// A standalone XEP-0085 chat state notification (`composing`, `active`) from the JID the
/// message was sent to, to its sender.
pub fn chat_state(orig: &Incoming, state: &str) -> Element {
    let mut message = Element::new("message");
    fill_attr(&mut message, "to", orig.from.as_deref());
    fill_attr(&mut message, "from", orig.to.as_deref());
    message.set_attr("type", "chat");
    message.push_element(chat_state_element(state));
    message
}

fn chat_state_element(state: &str) -> Element {
    let mut element = Element::new(state);
    element.set_attr("xmlns", crate::stanza::CHAT_STATES);
    element
}

/// Adds `<active/>` to a chat reply that carries no chat state of its own; false if the
/// completion sends no such reply (then a standalone one may be due).
pub fn mark_active(completion: &mut Completion) -> bool {
    let Some(reply) = &mut completion.send else { return false };
    if reply.name != "message" || reply.attr("type") == Some("error") {
        return false;
    }
    let has_state = reply.children.iter().any(
        |child| matches!(child, crate::stanza::Node::Element(e) if e.attr("xmlns") == Some(crate::stanza::CHAT_STATES)),
    );
    if !has_state {
        reply.push_element(chat_state_element("active"));
    }
    true
}

/// "message from a@b/c to bot.example (id x)", for log lines.
pub fn describe(orig: &Incoming) -> String {
    format!(
        "{} from {} to {} (id {})",
        orig.name,
        orig.from.as_deref().unwrap_or("?"),
        orig.to.as_deref().unwrap_or("?"),
        orig.id.as_deref().unwrap_or("none")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(name: &str, stanza_type: Option<&str>) -> Incoming {
        Incoming {
            name: name.into(),
            to: Some("echo@bot.localhost".into()),
            from: Some("user@localhost/phone".into()),
            id: Some("abc".into()),
            stanza_type: stanza_type.map(Into::into),
            xml: String::new(),
            body: None,
            chat_states: false,
        }
    }

    #[test]
    fn an_iq_without_an_id_is_never_answered() {
        let orig = Incoming { id: None, ..incoming("iq", Some("get")) };
        for outcome in [Outcome::NoReply, Outcome::Reply(Element::new("iq")), Outcome::Error(INTERNAL, "x".into())] {
            assert_eq!(complete(&orig, outcome).send, None);
        }
    }

    fn answer(status: u16, content_type: &str, body: &str) -> HttpAnswer {
        HttpAnswer {
            status,
            content_type: Some(content_type.into()),
            body: body.as_bytes().to_vec(),
            retry_after: None,
        }
    }

    fn sent(orig: &Incoming, answer: &HttpAnswer) -> Option<String> {
        complete(orig, interpret(orig, answer)).send.map(|e| e.to_xml())
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
        let nul = interpret(&msg, &answer(200, "application/json", r#"{"body":"a\u0000b"}"#));
        assert!(matches!(nul, Outcome::Error(BAD_REPLY, ref why) if why.contains("U+0000")), "{nul:?}");
        assert!(xml(r#"{"type":"normal","body":"x"}"#).contains("type='normal'"));
    }

    #[test]
    fn supplied_addresses_and_kind_are_kept() {
        let msg = incoming("message", None);
        let xml = sent(
            &msg,
            &answer(200, "application/json", r#"{"kind":"presence","to":"a@b","from":"x@BOT.localhost/r"}"#),
        )
        .unwrap();
        assert_eq!(xml, "<presence to='a@b' from='x@BOT.localhost/r'/>");
        let err = interpret(&msg, &answer(200, "application/json", r#"{"kind":"carrier-pigeon"}"#));
        assert!(matches!(err, Outcome::Error(BAD_REPLY, ref why) if why.contains("carrier-pigeon")));
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
        let bad = interpret(&msg, &answer(200, "application/json", r#"{"stanza":"<message>"}"#));
        assert!(matches!(bad, Outcome::Error(BAD_REPLY, _)));
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
            let outcome = interpret(&msg, &answer(200, "application/json", body));
            assert!(
                matches!(&outcome, Outcome::Error(BAD_REPLY, why) if why.contains("not on this component")),
                "{body}"
            );
        }
        for from in ["bot.localhost", "other@bot.localhost", "x@bot.localhost/a@b/c"] {
            let body = format!(r#"{{"from":"{from}","body":"x"}}"#);
            assert!(matches!(interpret(&msg, &answer(200, "application/json", &body)), Outcome::Reply(_)), "{from}");
        }
        assert_eq!(jid_domain("a@b/c@d/e"), "b");
    }

    #[test]
    fn only_200_json_replies() {
        let msg = incoming("message", None);
        assert_eq!(interpret(&msg, &answer(200, "text/plain", "{}")), Outcome::NoReply);
        assert_eq!(interpret(&msg, &answer(201, "application/json", r#"{"body":"x"}"#)), Outcome::NoReply);
        assert_eq!(interpret(&msg, &answer(204, "application/json", "")), Outcome::NoReply);
        assert_eq!(interpret(&msg, &answer(200, "application/json", " \n")), Outcome::NoReply);
        assert!(matches!(interpret(&msg, &answer(200, "application/json", "nope")), Outcome::Error(BAD_REPLY, _)));
        assert!(matches!(interpret(&msg, &answer(200, "application/json", "[1]")), Outcome::Error(BAD_REPLY, _)));
    }

    #[test]
    fn status_codes_map_to_stanza_errors() {
        let table = [
            (400, "modify", "bad-request", None),
            (401, "auth", "not-authorized", None),
            (402, "auth", "forbidden", Some("Payment required")),
            (403, "auth", "forbidden", None),
            (404, "cancel", "item-not-found", None),
            (410, "cancel", "gone", None),
            (500, "cancel", "internal-server-error", None),
            (501, "cancel", "feature-not-implemented", None),
            (502, "cancel", "remote-server-timeout", Some("Bad gateway")),
            (503, "wait", "remote-server-timeout", Some("Service temporarily unavailable")),
            (504, "wait", "remote-server-timeout", Some("Gateway timeout")),
            (418, "cancel", "service-unavailable", None),
            (302, "cancel", "service-unavailable", None),
        ];
        for (status, error_type, condition, text) in table {
            assert_eq!(status_error(status), StanzaError { error_type, condition, text }, "HTTP {status}");
        }
        let msg = incoming("message", Some("chat"));
        let done = complete(&msg, interpret(&msg, &answer(503, "text/plain", "")));
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
            "<iq to='user@localhost/phone' from='echo@bot.localhost' type='result' id='abc'><query xmlns='jabber:iq:version'><name>bot</name></query></iq>"
        );
        // A message-shaped reply still answers the iq, as an empty result.
        assert!(sent(&iq, &answer(200, "application/json", r#"{"kind":"message","body":"hi"}"#))
            .unwrap()
            .starts_with("<iq type='result' id='abc'"));
        assert!(sent(&iq, &answer(500, "text/plain", "")).unwrap().contains("type='error'"));
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
