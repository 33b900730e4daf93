//! XEP-0363 on the wire: the slot request the bot sends, the slot the service answers with,
//! and what the service says of itself in service discovery (its feature and `max-file-size`).

use crate::jsonmap::{elements, text};
use crate::ns::{DATA, DISCO_INFO, STANZAS, UPLOAD};
use crate::stanza::Element;

use super::File;

/// The most headers a slot may ask for: XEP-0363 allows three names.
pub const MAX_HEADERS: usize = 8;

/// The slot request for `file`, as the iq the shim sends to `service` from `from`.
pub fn request(file: &File, service: &str, from: &str) -> Element {
    let request = Element::new("request")
        .with_attr("xmlns", UPLOAD)
        .with_attr("filename", &file.name)
        .with_attr("size", &file.size().to_string())
        .with_attr("content-type", &file.content_type);
    Element::new("iq").with_attr("type", "get").with_attr("to", service).with_attr("from", from).with_child(request)
}

/// Where the bytes go and where they are fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The URL the bytes are PUT to.
    pub put: String,
    /// The headers the PUT must carry (`Authorization`, `Cookie`, `Expires`), as given.
    pub headers: Vec<(String, String)>,
    /// The URL recipients fetch the file from: the message's body.
    pub get: String,
}

/// The slot an iq answer holds, or why it holds none: an error the service answered with (its
/// condition and text), or a slot without two `http(s)` URLs. Headers other than the three
/// XEP-0363 allows are dropped, as it says, and so is a value with a line break (a header it
/// would end early).
pub fn slot_of(answer: &Element) -> Result<Slot, String> {
    if answer.attr("type") == Some("error") {
        return Err(format!("the upload service refused the slot: {}", error_text(answer)));
    }
    let slot = elements(answer)
        .find(|e| e.name == "slot" && e.attr("xmlns") == Some(UPLOAD))
        .ok_or("the upload service answered without a slot")?;
    let url = |name: &str| {
        elements(slot)
            .find(|e| e.name == name)
            .and_then(|e| e.attr("url"))
            .filter(|url| is_http_url(url))
            .map(str::to_owned)
            .ok_or_else(|| format!("the upload service's slot has no http(s) {name} URL"))
    };
    let (put, get) = (url("put")?, url("get")?);
    let put_element = elements(slot).find(|e| e.name == "put");
    let headers = put_element
        .into_iter()
        .flat_map(elements)
        .filter(|e| e.name == "header")
        .filter_map(|e| {
            let name = ["Authorization", "Cookie", "Expires"]
                .into_iter()
                .find(|allowed| e.attr("name").is_some_and(|name| name.eq_ignore_ascii_case(allowed)))?;
            let value = text(e);
            (!value.contains(['\r', '\n'])).then(|| (name.to_owned(), value))
        })
        .take(MAX_HEADERS)
        .collect();
    Ok(Slot { put, headers, get })
}

/// Whether an error answer says the requester may not upload (`forbidden`, or `not-authorized`).
pub fn forbidden(answer: &Element) -> bool {
    elements(answer).filter(|e| e.name == "error").flat_map(elements).any(|condition| {
        condition.attr("xmlns") == Some(STANZAS) && ["forbidden", "not-authorized"].contains(&condition.name.as_str())
    })
}

/// An error answer's condition and text, for messages: `forbidden ("Quota reached")`.
pub fn error_text(answer: &Element) -> String {
    let Some(error) = elements(answer).find(|e| e.name == "error") else { return "an error".into() };
    let in_stanzas = |e: &&Element| e.attr("xmlns") == Some(STANZAS);
    let condition = elements(error).filter(in_stanzas).find(|e| e.name != "text").map(|e| e.name.as_str());
    let said = elements(error).filter(in_stanzas).find(|e| e.name == "text").map(text);
    match (condition, said) {
        (Some(condition), Some(said)) => format!("{condition} ({said:?})"),
        (Some(condition), None) => condition.to_owned(),
        (None, Some(said)) => format!("{said:?}"),
        (None, None) => format!("an error of type {}", error.attr("type").unwrap_or("unknown")),
    }
}

/// What a disco#info answer says of an upload service: `None` if it does not offer XEP-0363,
/// else its `max-file-size` in bytes, if it advertises one.
pub fn offer(info: &Element) -> Option<Option<u64>> {
    let query = elements(info).find(|e| e.name == "query" && e.attr("xmlns") == Some(DISCO_INFO))?;
    elements(query).find(|e| e.name == "feature" && e.attr("var") == Some(UPLOAD))?;
    let max = elements(query)
        .filter(|e| e.name == "x" && e.attr("xmlns") == Some(DATA))
        .filter(|form| {
            elements(form).any(|field| {
                field.attr("var") == Some("FORM_TYPE")
                    && elements(field).any(|value| value.name == "value" && text(value).trim() == UPLOAD)
            })
        })
        .flat_map(elements)
        .find(|field| field.attr("var") == Some("max-file-size"))
        .and_then(|field| elements(field).find(|value| value.name == "value"))
        .and_then(|value| text(value).trim().parse::<u64>().ok());
    Some(max)
}

/// An absolute `http` or `https` URL with a host, and no white space or control character.
fn is_http_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    scheme_ok && !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse_stanza, ParseLimits};

    fn parse(xml: &str) -> Element {
        parse_stanza(xml, ParseLimits::default()).unwrap()
    }

    #[test]
    fn the_request_names_the_file() {
        let file = File::new(vec![0; 42], "Q&A's chart.png", "image/png", "").unwrap();
        assert_eq!(
            request(&file, "upload.localhost", "bot.localhost").to_xml(),
            "<iq type='get' to='upload.localhost' from='bot.localhost'><request xmlns='urn:xmpp:http:upload:0' \
             filename='Q&amp;A&apos;s chart.png' size='42' content-type='image/png'/></iq>"
        );
    }

    #[test]
    fn a_slot_is_its_urls_and_the_headers_allowed() {
        let answer = parse(
            "<iq type='result'><slot xmlns='urn:xmpp:http:upload:0'>\
             <put url='https://up.example/put/1'><header name='Authorization'>Bearer x</header>\
             <header name='X-Evil'>1</header><header name='cookie'>a\nb</header></put>\
             <get url='https://up.example/get/1'/></slot></iq>",
        );
        assert_eq!(
            slot_of(&answer).unwrap(),
            Slot {
                put: "https://up.example/put/1".into(),
                headers: vec![("Authorization".into(), "Bearer x".into())],
                get: "https://up.example/get/1".into()
            }
        );
        let refused = parse(
            "<iq type='error'><error type='modify'><file-too-large xmlns='urn:xmpp:http:upload:0'/>\
             <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>File too large</text></error></iq>",
        );
        assert_eq!(
            slot_of(&refused).unwrap_err(),
            "the upload service refused the slot: not-acceptable (\"File too large\")"
        );
        assert_eq!(slot_of(&parse("<iq type='result'/>")).unwrap_err(), "the upload service answered without a slot");
        let no_get = parse(
            "<iq type='result'><slot xmlns='urn:xmpp:http:upload:0'><put url='https://a/b'/><get url='file:///etc/passwd'/></slot></iq>",
        );
        assert_eq!(slot_of(&no_get).unwrap_err(), "the upload service's slot has no http(s) get URL");
    }

    #[test]
    fn a_service_says_it_offers_uploads_and_its_limit() {
        let info = |extra: &str| {
            parse(&format!(
                "<iq type='result'><query xmlns='http://jabber.org/protocol/disco#info'>\
                 <identity category='store' type='file'/><feature var='urn:xmpp:http:upload:0'/>{extra}</query></iq>"
            ))
        };
        let form = "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>\
                    <value>urn:xmpp:http:upload:0</value></field><field var='max-file-size'><value>1048576</value>\
                    </field></x>";
        assert_eq!(offer(&info(form)), Some(Some(1_048_576)));
        assert_eq!(offer(&info("")), Some(None));
        let other = parse(
            "<iq type='result'><query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:x'/></query></iq>",
        );
        assert_eq!(offer(&other), None);
    }
}
