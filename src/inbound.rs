//! A stanza pushed over HTTP — mod_rest's `POST /rest`, component_http's push endpoint — checked
//! and made a stanza to route, or refused with the HTTP status a client can act on. Nothing is
//! routed when a push is refused.

use serde_json::Value;

use crate::answer::{address_after, element_from_json, is_json, is_xmpp_xml};
use crate::config::Format;
use crate::jsonmap::{Kind, Profile};
use crate::outcome::Reply;
use crate::policy::{self, Sender};
use crate::stanza::Element;
use crate::xml::{parse_stanza, ParseLimits};

/// Why a push was refused: the HTTP status and a message for the client.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status to answer with (400, 403, 413, 415).
    pub status: u16,
    /// What was wrong, for the client.
    pub message: String,
}

impl Refusal {
    /// A refusal with `status`, saying `message`.
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into() }
    }
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal::new(status, message)
}

/// The stanza a push asks to send as the component `host`.
///
/// - `application/xmpp+xml` (always) or `application/json` (when `json` names the profile whose
///   field names it is read in: the shape of a webhook reply) or, then too, `multipart/form-data`
///   (the same fields as form fields, and a `file` part: [`crate::upload::multipart`]), else 415;
/// - at most `max_size` bytes, else 413;
/// - one `message`, `presence` or `iq`, without an XML declaration or an `xmlns` attribute, within
///   the parser's limits, that [`policy::check`] accepts, else 400 (an iq `get` or `set` may
///   leave its `id` to the push endpoint);
/// - with a `to`, else 400; but sent as an account (`host` is `user@domain`: mod_rest on a
///   VirtualHost), an absent `to` is the account itself, as a client's stanza without one is;
/// - `from` defaults to `host`; one not on it is refused with 403.
///
/// A JSON message may be followed by more (a file's caption: see [`Reply`]), checked alike.
pub fn stanza_from_push(
    body: &[u8],
    content_type: Option<&str>,
    host: &str,
    json: Option<Profile>,
    max_size: usize,
) -> Result<Reply, Refusal> {
    if body.len() > max_size {
        return Err(refuse(413, format!("the stanza is larger than {max_size} bytes")));
    }
    let push = if is_xmpp_xml(content_type) {
        Reply::from(from_xml(body)?)
    } else if let (Some(profile), true) = (json, is_json(content_type)) {
        from_json(body, profile)?
    } else if let (Some(profile), true) = (json, crate::upload::multipart::is_form(content_type)) {
        from_form(body, content_type.unwrap_or_default(), profile, max_size)?
    } else {
        let wanted = if json.is_some() {
            "application/xmpp+xml, application/json or multipart/form-data"
        } else {
            "application/xmpp+xml"
        };
        return Err(refuse(415, format!("Content-Type must be {wanted}")));
    };
    finish(push, host)
}

/// The stanza mod_rest's request `fields` describe (in the community module's names: see
/// [`crate::rest`]), sent as `host`, checked as [`stanza_from_push`] checks a push.
pub fn stanza_from_rest_fields(fields: &serde_json::Map<String, Value>, host: &str) -> Result<Reply, Refusal> {
    let push = element_from_json(fields, Profile::Rest, Kind::Message).map_err(|e| refuse(400, e))?;
    finish(push, host)
}

/// Addresses and checks a push read from its body or fields (see [`stanza_from_push`]).
fn finish(mut push: Reply, host: &str) -> Result<Reply, Refusal> {
    let stanza = &mut push.stanza;
    if stanza.attr("to").is_none_or(str::is_empty) {
        if !host.contains('@') {
            return Err(refuse(400, "the stanza has no 'to'"));
        }
        stanza.set_attr("to", host);
    }
    if stanza.attr("from").is_none() {
        stanza.set_attr("from", host);
    }
    policy::check(stanza, host, Sender::Push).map_err(|refusal| match refusal {
        policy::Violation::Invalid(why) => refuse(400, why),
        policy::Violation::NotOurs(why) => refuse(403, why),
    })?;
    address_after(&mut push, host, Sender::Push).map_err(|why| refuse(400, why))?;
    Ok(push)
}

fn from_xml(body: &[u8]) -> Result<Element, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| refuse(400, "the stanza is not UTF-8"))?;
    if text.trim_start().starts_with("<?") {
        return Err(refuse(400, "no XML declaration or processing instruction, please: just the stanza"));
    }
    let stanza = parse_stanza(text, ParseLimits::default()).map_err(|e| refuse(400, e))?;
    if stanza.attr("xmlns").is_some() {
        return Err(refuse(400, "the stanza must not have an xmlns attribute (jabber:client is implied)"));
    }
    Ok(stanza)
}

fn from_json(body: &[u8], profile: Profile) -> Result<Reply, Refusal> {
    let value: Value = serde_json::from_slice(body).map_err(|e| refuse(400, format!("invalid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(refuse(400, "expected a JSON object"));
    };
    element_from_json(&fields, profile, Kind::Message).map_err(|e| refuse(400, e))
}

/// A push written as a form (`curl -F file=@chart.png -F to=… -F body=…`): its fields are read
/// as a JSON push's, and its `file` part is the message's file.
fn from_form(body: &[u8], content_type: &str, profile: Profile, max_size: usize) -> Result<Reply, Refusal> {
    let form = crate::upload::multipart::read_form(body, content_type, max_size).map_err(|e| refuse(400, e))?;
    let mut push = element_from_json(&form.fields, profile, Kind::Message).map_err(|e| refuse(400, e))?;
    if let Some(file) = form.file {
        crate::upload::attach_file(&mut push.stanza, file).map_err(|e| refuse(400, e))?;
    }
    Ok(push)
}

/// The format a push is answered in (the stanza of a `202`, an iq's answer, a refusal's reason):
/// the one of `application/json` and `application/xmpp+xml` that the request's `Accept` prefers
/// (by its `q` values; wildcards prefer neither), else the one the request is written in, else
/// XML. Only a module whose push endpoint speaks both asks (mod_rest).
pub fn answer_format(content_type: Option<&str>, accept: Option<&str>) -> Format {
    let (mut json, mut xml) = (None::<f32>, None::<f32>);
    for range in accept.unwrap_or("").split(',') {
        let mut parts = range.split(';');
        let media_type = parts.next().unwrap_or("").trim();
        let quality = parts
            .filter_map(|param| param.split_once('='))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, q)| q.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0));
        let slot = if media_type.eq_ignore_ascii_case("application/json") {
            &mut json
        } else if media_type.eq_ignore_ascii_case("application/xmpp+xml") {
            &mut xml
        } else {
            continue;
        };
        *slot = Some(slot.map_or(quality, |q| q.max(quality)));
    }
    let (json, xml) = (json.unwrap_or(0.0), xml.unwrap_or(0.0));
    if json > xml {
        Format::Json
    } else if xml > json {
        Format::Xml
    } else if is_json(content_type) {
        Format::Json
    } else {
        Format::Xml
    }
}

/// Compares a given secret with the expected one in time that does not depend on where they
/// differ (only on the given one's length).
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut differ = u8::from(given.len() != expected.len());
    for (i, &b) in given.iter().enumerate() {
        differ |= b ^ expected.get(i).copied().unwrap_or(!b);
    }
    differ == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "rest.example.net";
    const XML: Option<&str> = Some("application/xmpp+xml");

    fn push(body: &str, content_type: Option<&str>) -> Result<String, (u16, String)> {
        stanza_from_push(body.as_bytes(), content_type, HOST, Some(Profile::ComponentHttp), 1024)
            .map(|push| push.stanza.to_xml())
            .map_err(|r| (r.status, r.message))
    }

    #[test]
    fn a_valid_push_gets_the_component_as_sender() {
        assert_eq!(
            push("<message type='chat' to='user@example.org'><body>Hello!</body></message>", XML).unwrap(),
            "<message type='chat' to='user@example.org' from='rest.example.net'><body>Hello!</body></message>"
        );
        let json = push(r#"{"to":"u@example.org","body":"hi"}"#, Some("application/json; charset=utf-8")).unwrap();
        assert_eq!(json, "<message type='chat' to='u@example.org' from='rest.example.net'><body>hi</body></message>");
        let bot = push(r#"<iq type='get' to='example.net' from='bot@rest.example.net/x' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"#, XML).unwrap();
        assert!(bot.contains("from='bot@rest.example.net/x'"), "{bot}");
        // The push endpoint gives a get or set its id.
        assert!(push(r#"<iq type='get' to='example.net'><ping xmlns='urn:xmpp:ping'/></iq>"#, XML).is_ok());
        // In JSON, `id` names the stanza's id, and an iq's payload comes in `stanza`.
        const JSON: Option<&str> = Some("application/json");
        let json = push(r#"{"to":"u@example.org","id":"m1","body":"hi"}"#, JSON).unwrap();
        assert_eq!(
            json,
            "<message type='chat' to='u@example.org' id='m1' from='rest.example.net'><body>hi</body></message>"
        );
        let iq = r#"{"to":"example.net","id":"p1","stanza":"<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>"}"#;
        assert_eq!(
            push(iq, JSON).unwrap(),
            "<iq type='get' to='example.net' id='p1' from='rest.example.net'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        let own =
            r#"{"to":"example.net","id":"p1","stanza":"<iq type='get' id='mine'><ping xmlns='urn:xmpp:ping'/></iq>"}"#;
        assert!(push(own, JSON).unwrap().contains("id='mine'"), "a stanza's own id wins");
        assert_eq!(push(r#"{"to":"u@example.org","id":5}"#, JSON).unwrap_err().0, 400);
    }

    #[test]
    fn refusals_carry_the_status_a_client_can_act_on() {
        let status = |body: &str, ct: Option<&str>| push(body, ct).unwrap_err().0;
        assert_eq!(status("<message to='a@b'/>", Some("text/xml")), 415);
        assert_eq!(status("<message to='a@b'/>", None), 415);
        assert_eq!(status(&format!("<message to='a@b'><body>{}</body></message>", "x".repeat(2000)), XML), 413);
        assert_eq!(status("<message to='a@b'>", XML), 400);
        assert_eq!(status("<message to='a@b'/><message to='a@b'/>", XML), 400);
        assert_eq!(status("<?xml version='1.0'?><message to='a@b'/>", XML), 400);
        assert_eq!(status("<message xmlns='jabber:client' to='a@b'/>", XML), 400);
        assert_eq!(status("<foo to='a@b'/>", XML), 400);
        assert_eq!(status("<message/>", XML), 400);
        assert_eq!(status("<!DOCTYPE x [<!ENTITY a 'b'>]><message to='a@b'>&a;</message>", XML), 400);
        assert_eq!(status("<message to='a@b' from='admin@example.net'/>", XML), 403);
        assert_eq!(status(r#"{"to":"a@b","from":"admin@localhost"}"#, Some("application/json")), 403);
        assert_eq!(status(r#"{"to": 7}"#, Some("application/json")), 400);
        assert_eq!(status("[]", Some("application/json")), 400);
        // Found by review: these went through (a traceback, a 202, an instant 504).
        assert_eq!(status("<iq to='example.net'/>", XML), 400);
        assert_eq!(status("<iq type='bogus' to='example.net' id='1'/>", XML), 400);
        assert_eq!(status("<iq type='get' to='example.net' id='1'/>", XML), 400);
        // Nor to the component itself (a loop through the webhook), nor to an unparsable JID.
        assert_eq!(status("<message to='rest.example.net'/>", XML), 400);
        assert_eq!(status("<message to='bot@rest.example.net'/>", XML), 400);
        assert_eq!(status("<message to='@example.net'/>", XML), 400);
        assert_eq!(status(r#"{"to":"a@b","from":"@rest.example.net"}"#, Some("application/json")), 400);
        // Found by review: a default namespace XML reserves, and a name with a second colon.
        assert_eq!(status("<message to='a@b'><x xmlns='http://www.w3.org/2000/xmlns/'/></message>", XML), 400);
        assert_eq!(status("<message to='a@b'><a:b:c xmlns:a='urn:x'/></message>", XML), 400);
        // Found by review: 100,000 attributes cost the main thread 22 s (a quadratic check).
        let attributes: String = (0..100_000).map(|i| format!(" a{i}='v'")).collect();
        let wide = format!("<message to='a@b'{attributes}/>");
        let refusal = stanza_from_push(wide.as_bytes(), XML, HOST, Some(Profile::ComponentHttp), 1 << 21).unwrap_err();
        assert_eq!((refusal.status, refusal.message.contains("more than 64 attributes")), (400, true));
        let xml_only = stanza_from_push(br#"{"to":"a@b"}"#, Some("application/json"), HOST, None, 1024);
        assert_eq!(xml_only.unwrap_err().status, 415);
    }

    #[test]
    fn a_push_is_answered_as_it_asks_else_as_it_was_written() {
        const JSON: Option<&str> = Some("application/json; charset=utf-8");
        let format = answer_format;
        // No Accept: the request's own format; XML when it has none the endpoint reads.
        assert_eq!(format(JSON, None), Format::Json);
        assert_eq!(format(XML, None), Format::Xml);
        assert_eq!(format(None, None), Format::Xml);
        assert_eq!(format(Some("text/plain"), None), Format::Xml);
        // Accept decides when it prefers one of the two.
        assert_eq!(format(XML, Some("application/json")), Format::Json);
        assert_eq!(format(JSON, Some("application/xmpp+xml")), Format::Xml);
        assert_eq!(format(XML, Some("text/html, Application/JSON;q=0.9, */*;q=0.1")), Format::Json);
        assert_eq!(format(JSON, Some("application/json;q=0.5, application/xmpp+xml;q=0.8")), Format::Xml);
        assert_eq!(format(XML, Some("application/xmpp+xml;q=0.2, application/json ; Q=0.7")), Format::Json);
        // Wildcards, ties, refusals (q=0) and nonsense prefer neither: the request's format.
        for accept in
            ["*/*", "application/*", "application/json, application/xmpp+xml", "application/json;q=0", "", ",;,"]
        {
            assert_eq!(format(JSON, Some(accept)), Format::Json, "{accept}");
            assert_eq!(format(XML, Some(accept)), Format::Xml, "{accept}");
        }
        // A q that is not a number counts as none.
        assert_eq!(format(JSON, Some("application/xmpp+xml;q=high")), Format::Json);
    }

    #[test]
    fn a_pushed_file_with_a_caption_is_two_messages() {
        let body = r#"{"to":"u@example.org","oob_url":"https://f.example/a.png","body":"A chart.","replace":"m1"}"#;
        let pushed =
            stanza_from_push(body.as_bytes(), Some("application/json"), HOST, Some(Profile::ComponentHttp), 1024)
                .unwrap();
        assert_eq!(
            pushed.stanza.to_xml(),
            "<message type='chat' to='u@example.org' from='rest.example.net'><body>https://f.example/a.png</body>\
             <x xmlns='jabber:x:oob'><url>https://f.example/a.png</url></x>\
             <replace id='m1' xmlns='urn:xmpp:message-correct:0'/></message>"
        );
        assert_eq!(
            pushed.after.iter().map(Element::to_xml).collect::<Vec<_>>(),
            ["<message type='chat' to='u@example.org' from='rest.example.net'><body>A chart.</body></message>"]
        );
        let bad =
            push(r#"{"to":"u@example.org","reactions":{"id":"m1","reactions":[false]}}"#, Some("application/json"));
        assert_eq!(bad, Err((400, "'reactions.reactions' holds a boolean, expected strings".into())));
    }

    #[test]
    fn a_rest_push_is_the_stanza_its_fields_say_and_an_unknown_field_is_refused_naming_it() {
        const JSON: Option<&str> = Some("application/json");
        let rest = |body: &str| {
            stanza_from_push(body.as_bytes(), JSON, HOST, Some(Profile::Rest), 4096)
                .map(|push| push.stanza.to_xml())
                .map_err(|r| (r.status, r.message))
        };
        assert_eq!(
            rest(r#"{"to": "example.net", "ping": true}"#).unwrap(),
            "<iq type='get' to='example.net' from='rest.example.net'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        assert_eq!(
            rest(r#"{"kind": "presence", "to": "u@example.org", "show": "away", "status": "out"}"#).unwrap(),
            "<presence to='u@example.org' from='rest.example.net'><show>away</show><status>out</status></presence>"
        );
        assert_eq!(
            rest(r#"{"to": "u@example.org", "body": "b", "subject": "S", "thread": {"id": "t1"}}"#).unwrap(),
            "<message type='chat' to='u@example.org' from='rest.example.net'><body>b</body><subject>S</subject>\
             <thread>t1</thread></message>"
        );
        assert_eq!(
            rest(r#"{"to": "u@example.org", "body": "b", "sticker": {"id": 1}}"#),
            Err((400, "'sticker' is not a field this module knows".into()))
        );
        assert_eq!(
            rest(r#"{"to": "u@example.org", "error_code": 404}"#).unwrap_err().0,
            400,
            "a field not mapped yet is refused, not dropped"
        );
        // component_http keeps its contract: an unknown field is ignored, `nick` is not XEP-0172's.
        let ours = push(r#"{"to": "u@example.org", "body": "b", "sticker": 1, "nick": "n"}"#, JSON).unwrap();
        assert_eq!(ours, "<message type='chat' to='u@example.org' from='rest.example.net'><body>b</body></message>");
        let with_subject = push(r#"{"to": "u@example.org", "subject": "S"}"#, JSON).unwrap();
        assert!(with_subject.contains("<subject>S</subject>"), "{with_subject}");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"Bearer abc", b"Bearer abc"));
        for wrong in [&b"Bearer abd"[..], b"Bearer ab", b"Bearer abcd", b"", b"bearer abc"] {
            assert!(!same_secret(wrong, b"Bearer abc"), "{wrong:?}");
        }
    }
}
