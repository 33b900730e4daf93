//! Requests in every form, through to the stanza sent (with `inbound`'s checks).

use super::*;
use crate::inbound::{stanza_from_push, stanza_from_rest_fields};
use crate::jsonmap::Profile;

const ACCOUNT: &str = "juliet@example.net";
const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const TEXT: Option<&str> = Some("text/plain; charset=utf-8");
const XML: Option<&str> = Some("application/xmpp+xml");

fn send(
    get: bool,
    path: &str,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> Result<String, (u16, String)> {
    let pushed = match read(get, path, query, content_type, body.as_bytes()) {
        Ok(Read::Body) => stanza_from_push(body.as_bytes(), content_type, ACCOUNT, Some(Profile::Rest), 1 << 16),
        Ok(Read::Fields(fields)) => stanza_from_rest_fields(&fields, ACCOUNT),
        Err(refusal) => Err(refusal),
    };
    pushed.map(|push| push.stanza.to_xml()).map_err(|r| (r.status, r.message))
}

fn post(path: &str, content_type: Option<&str>, body: &str) -> Result<String, (u16, String)> {
    send(false, path, None, content_type, body)
}

fn get(path: &str, query: Option<&str>) -> Result<String, (u16, String)> {
    send(true, path, query, None, "")
}

#[test]
fn path_parameters_with_each_body() {
    assert_eq!(
        post("message/chat/romeo@example.org", TEXT, "Hi there").unwrap(),
        "<message type='chat' to='romeo@example.org' from='juliet@example.net'><body>Hi there</body></message>"
    );
    assert_eq!(
        post("message/normal/romeo@example.org", JSON, r#"{"body": "b", "subject": "s"}"#).unwrap(),
        "<message type='normal' to='romeo@example.org' from='juliet@example.net'><body>b</body><subject>s</subject></message>"
    );
    assert_eq!(
        post("message/chat/romeo@example.org", FORM, "body=Hello+you&thread=t1").unwrap_err().0,
        400,
        "thread is an object in the mapping: a form cannot say it"
    );
    assert_eq!(
        post("message/headline/romeo@example.org", FORM, "body=Hello+you").unwrap(),
        "<message type='headline' to='romeo@example.org' from='juliet@example.net'><body>Hello you</body></message>"
    );
    assert_eq!(
        post("presence/available/", TEXT, "away").unwrap(),
        "<presence to='juliet@example.net' from='juliet@example.net'><show>away</show></presence>"
    );
    let ping = post("iq/ping/example.net", None, "").unwrap();
    assert!(ping.starts_with("<iq type='get' to='example.net' from='juliet@example.net'"), "{ping}");
    assert!(ping.ends_with("<ping xmlns='urn:xmpp:ping'/></iq>"), "{ping}");
    let disco = post("iq/disco/example.net", JSON, r#"{"node": "n1"}"#).unwrap();
    assert!(disco.contains("<query xmlns='http://jabber.org/protocol/disco#info' node='n1'/>"), "{disco}");
    let set = post("iq/set/example.net", JSON, r#"{"ping": true}"#).unwrap();
    assert!(set.starts_with("<iq type='set'"), "{set}");
}

#[test]
fn a_plain_post_of_a_form_or_text_is_a_chat_message() {
    assert_eq!(
        post("", FORM, "to=romeo%40example.org&body=Hi%21&kind=message").unwrap(),
        "<message type='chat' to='romeo@example.org' from='juliet@example.net'><body>Hi!</body></message>"
    );
    assert_eq!(
        post("", TEXT, "Note to self").unwrap(),
        "<message type='chat' to='juliet@example.net' from='juliet@example.net'><body>Note to self</body></message>"
    );
    assert_eq!(
        post("", FORM, "Note+to+self").unwrap(),
        "<message type='chat' to='juliet@example.net' from='juliet@example.net'><body>Note to self</body></message>"
    );
    // Form fields are the mapping's: kind is inferred, and a field it does not know is named.
    assert!(post("", FORM, "to=example.net&ping=").unwrap_err().1.contains("ping"));
    assert_eq!(
        post("", FORM, "to=x%40y&sticker=1").unwrap_err(),
        (400, "'sticker' is not a field this module knows".into())
    );
}

#[test]
fn the_get_shortcuts_are_the_queries_their_paths_name() {
    let cases = [
        ("ping/example.net", None, "<ping xmlns='urn:xmpp:ping'/>"),
        ("version/example.net", None, "<query xmlns='jabber:iq:version'/>"),
        (
            "disco/example.net",
            Some("node=http%3A%2F%2Fjabber.org%2Fprotocol%2Fcommands"),
            "node='http://jabber.org/protocol/commands'",
        ),
        ("disco/example.net", None, "<query xmlns='http://jabber.org/protocol/disco#info'/>"),
        ("items/example.net", None, "<query xmlns='http://jabber.org/protocol/disco#items'/>"),
        (
            "items/example.net",
            Some("node=rooms"),
            "<query xmlns='http://jabber.org/protocol/disco#items' node='rooms'/>",
        ),
        ("extdisco/example.net", Some("type=stun"), "<services xmlns='urn:xmpp:extdisco:2' type='stun'/>"),
        ("lastactivity/example.net", None, "<query xmlns='jabber:iq:last'/>"),
        ("stats/example.net", None, "<query xmlns='http://jabber.org/protocol/stats'/>"),
        (
            "upload_request/upload.example.net",
            Some("filename=a.png&size=1234&content-type=image%2Fpng"),
            "<request xmlns='urn:xmpp:http:upload:0' filename='a.png' size='1234' content-type='image/png'/>",
        ),
    ];
    for (path, query, payload) in cases {
        let iq = get(path, query).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        assert!(iq.starts_with("<iq type='get' to="), "{path}: {iq}");
        assert!(iq.contains(payload), "{path}: {iq}");
    }
    let archive = get("archive/", Some("with=romeo%40example.org&max=10&after=a1")).unwrap();
    assert!(archive.starts_with("<iq type='set' to='juliet@example.net' from='juliet@example.net'"), "{archive}");
    for part in [
        "<query xmlns='urn:xmpp:mam:2'>",
        "<field var='with'><value>romeo@example.org</value></field>",
        "<set xmlns='http://jabber.org/protocol/rsm'><after>a1</after><max>10</max></set>",
    ] {
        assert!(archive.contains(part), "{part}: {archive}");
    }
    let own = get("version/", None).unwrap();
    assert!(own.contains("to='juliet@example.net'"), "an empty <to> is the account itself: {own}");
}

#[test]
fn what_a_request_cannot_say_is_refused_naming_it() {
    let status = |r: Result<String, (u16, String)>| r.unwrap_err().0;
    assert_eq!(status(get("nosuchquery/example.net", None)), 400);
    assert!(get("nosuchquery/example.net", None).unwrap_err().1.contains("nosuchquery"));
    assert_eq!(status(get("ping", None)), 404);
    assert_eq!(status(get("ping/example.net", Some("just-text"))), 400);
    assert_eq!(status(post("message/chat", TEXT, "x")), 404);
    assert_eq!(status(post("mail/chat/x@y", TEXT, "x")), 404);
    assert_eq!(status(post("message/chat/x@y", XML, "<message/>")), 400);
    assert_eq!(status(post("iq/get/x@y", TEXT, "x")), 400);
    assert_eq!(status(post("message/chat/x@y", FORM, "only-text")), 400);
    assert_eq!(status(post("message/chat/x@y", Some("image/png"), "x")), 415);
    assert_eq!(status(post("", Some("image/png"), "x")), 415);
    assert_eq!(status(post("", None, "x")), 415);
    assert_eq!(status(post("", FORM, "body=%zz")), 400);
    assert_eq!(status(post("presence/available/", TEXT, "sleeping")), 400, "show is one of away, chat, dnd, xa");
    assert_eq!(status(post("message/chat/x@y", JSON, "[1]")), 400);
    // The sender rule holds in every form: a form cannot send as another account.
    assert_eq!(status(post("", FORM, "to=x%40y&body=b&from=romeo%40example.net")), 403);
}

#[test]
fn a_stanza_without_to_goes_to_the_account_and_a_component_still_needs_one() {
    let own = post("", XML, "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>").unwrap();
    assert!(own.contains("to='juliet@example.net'"), "{own}");
    let component =
        stanza_from_push(b"<message><body>x</body></message>", XML, "rest.example.net", Some(Profile::Rest), 1024);
    assert_eq!(component.unwrap_err().message, "the stanza has no 'to'");
}

/// A request whose body is bytes (CBOR), through to the stanza sent.
fn post_bytes(path: &str, content_type: Option<&str>, body: &[u8]) -> Result<String, (u16, String)> {
    let pushed = match read(false, path, None, content_type, body) {
        Ok(Read::Body) => stanza_from_push(body, content_type, ACCOUNT, Some(Profile::Rest), 1 << 16),
        Ok(Read::Fields(fields)) => stanza_from_rest_fields(&fields, ACCOUNT),
        Err(refusal) => Err(refusal),
    };
    pushed.map(|push| push.stanza.to_xml()).map_err(|r| (r.status, r.message))
}

#[test]
fn a_cbor_body_is_the_stanza_its_json_would_be() {
    const CBOR: Option<&str> = Some("application/cbor");
    let bodies = [
        r#"{"to": "romeo@example.org", "body": "Hi", "subject": "S", "thread": {"id": "t1"}}"#,
        r#"{"to": "example.net", "ping": true}"#,
        r#"{"kind": "presence", "to": "romeo@example.org", "show": "away", "priority": 5}"#,
        r#"{"body": "Note to self"}"#,
        r#"{"to": "romeo@example.org", "sticker": 1}"#,
        r#"{"to": "romeo@example.org", "from": "romeo@example.net"}"#,
    ];
    for json in bodies {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let written = cbor::encode(&value);
        assert_eq!(post_bytes("", CBOR, &written), post("", JSON, json), "{json}");
        let with_path = post_bytes("message/normal/juliet@example.net", CBOR, &written);
        assert_eq!(with_path, post("message/normal/juliet@example.net", JSON, json), "{json}");
    }
    // {"to": "romeo@example.org", "body": "Hi"} written by hand, with a parameter on the type.
    let mut by_hand = vec![0xa2, 0x62, b't', b'o', 0x71];
    by_hand.extend(b"romeo@example.org");
    by_hand.extend([0x64, b'b', b'o', b'd', b'y', 0x62, b'H', b'i']);
    assert_eq!(
        post_bytes("", Some("Application/CBOR; x=y"), &by_hand).unwrap(),
        "<message type='chat' to='romeo@example.org' from='juliet@example.net'><body>Hi</body></message>"
    );
    // What JSON cannot say is refused with a 400 naming it, at /rest and with path parameters.
    let bytes = [0xa1, 0x64, b'b', b'o', b'd', b'y', 0x42, 0x01, 0x02];
    for path in ["", "message/chat/romeo@example.org"] {
        assert_eq!(post_bytes(path, CBOR, &bytes), Err((400, "'body' is a byte string: JSON has none".into())));
        assert_eq!(post_bytes(path, CBOR, &[0xa1]).unwrap_err().0, 400);
    }
    // The 415 says CBOR is read.
    assert!(post("", Some("image/png"), "x").unwrap_err().1.contains("application/cbor"));
}
