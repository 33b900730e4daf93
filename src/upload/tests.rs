use serde_json::json;

use super::multipart::{is_form, read_form, Form, MAX_PARTS};
use super::*;

fn file(value: Value) -> Result<File, String> {
    File::from_json(&value)
}

#[test]
fn a_file_field_is_its_bytes_name_and_type() {
    let png = file(json!({"data": "iVBORw0KGgo=", "name": "chart.png", "type": "image/png"})).unwrap();
    assert_eq!(png.data, b"\x89PNG\r\n\x1a\n");
    assert_eq!((png.name.as_str(), png.content_type.as_str(), png.size()), ("chart.png", "image/png", 8));
    // Unpadded, and wrapped as MIME wraps it.
    assert_eq!(file(json!({"data": "aGVsbG8", "name": "a.txt", "type": "text/plain"})).unwrap().data, b"hello");
    let wrapped =
        file(json!({"data": "aGVs\r\nbG8g\nd29y bGQ=", "name": "a.txt", "type": "text/plain; charset=utf-8"}));
    assert_eq!(wrapped.unwrap().data, b"hello world");
    // Empty files are files.
    assert_eq!(file(json!({"data": "", "name": "empty", "type": "application/octet-stream"})).unwrap().size(), 0);
    // The bytes are never logged.
    assert_eq!(format!("{png:?}"), "File(\"chart.png\", \"image/png\", 8 bytes)");
}

#[test]
fn a_bad_file_field_is_refused_naming_the_field() {
    let ok = json!({"data": "aGk=", "name": "a.txt", "type": "text/plain"});
    let with = |key: &str, value: Value| {
        let mut object = ok.clone();
        object[key] = value;
        file(object).unwrap_err()
    };
    let without = |key: &str| {
        let mut object = ok.clone();
        object.as_object_mut().unwrap().remove(key);
        file(object).unwrap_err()
    };
    assert!(with("data", json!("not base64!")).starts_with("'file.data' is not valid base64"));
    assert!(with("data", json!("a")).starts_with("'file.data' is not valid base64"));
    assert_eq!(with("data", json!(42)), "'file.data' must be a string, got a number");
    assert!(without("data").starts_with("'file' needs 'data'"));
    assert!(without("name").starts_with("'file' needs 'name'"));
    assert!(without("type").starts_with("'file' needs 'type'"));
    assert!(with("name", Value::Null).starts_with("'file' needs 'name'"));
    for name in ["", "  ", "../etc/passwd", "a/b.png", "a\\b.png", ".", "..", "a\u{1}b"] {
        assert!(with("name", json!(name)).starts_with("'file.name' "), "{name:?}");
    }
    assert!(with("name", json!("x".repeat(MAX_NAME_BYTES + 1))).contains("more than the 255"));
    for content_type in ["", "png", "image/", "/png", "image/png/x", "image/p ng", "imäge/png", "text/pl\nain"] {
        assert!(with("type", json!(content_type)).starts_with("'file.type' "), "{content_type:?}");
    }
    assert_eq!(with("extra", json!(1)), "'file.extra' is not a field of a file: it has 'data', 'name' and 'type'");
    assert!(file(json!("aGk=")).unwrap_err().starts_with("'file' must be an object"));
    // Names that are fine where they look odd.
    for name in ["Today's chart (final).png", "отчёт.pdf", "a..b", ".hidden"] {
        assert!(with_name_ok(name), "{name:?}");
    }
}

fn with_name_ok(name: &str) -> bool {
    file(json!({"data": "", "name": name, "type": "application/pdf"})).is_ok()
}

#[test]
fn the_limit_is_the_smaller_of_the_option_and_the_service() {
    let option = Limit::of(DEFAULT_MAX_FILE_SIZE, "component_post_max_file_size", None);
    assert_eq!(option.bytes, 10 * 1024 * 1024);
    assert_eq!(option.check(10 * 1024 * 1024), Ok(()));
    assert_eq!(
        option.check(10 * 1024 * 1024 + 1),
        Err("the file is 10485761 bytes, more than the 10485760 bytes allowed (component_post_max_file_size)".into())
    );
    let service = Limit::of(1000, "component_post_max_file_size", Some((500, "localhost")));
    assert_eq!(service.check(500), Ok(()));
    assert_eq!(
        service.check(501),
        Err("the file is 501 bytes, more than the 500 bytes allowed (the max-file-size localhost advertises)".into())
    );
    // A service that allows more does not raise the option.
    assert_eq!(Limit::of(1000, "rest_max_file_size", Some((5000, "localhost"))).bytes, 1000);
}

#[test]
fn a_message_with_a_file_carries_a_placeholder_and_its_body_becomes_the_caption() {
    let fields = json!({"body": "Today's chart", "file": {"data": "aGk=", "name": "a.txt", "type": "text/plain"}});
    let Value::Object(fields) = fields else { unreachable!() };
    let mut message = Element::new("message").with_attr("type", "chat");
    message.push_element(Element::new("body").with_text("Today's chart"));
    attach(&mut message, &fields).unwrap();
    let id = placeholder(&message).expect("a placeholder");
    assert!(!message.to_xml().contains("<body"), "{}", message.to_xml());
    let kept = pending::take(id).unwrap();
    assert_eq!((kept.file.data.as_slice(), kept.caption.as_deref()), (&b"hi"[..], Some("Today's chart")));
    assert!(pending::take(id).is_none(), "taken once");
    // With another file, or as a reaction, it is refused.
    for other in [json!({"oob_url": "https://f.example/a"}), json!({"reactions": {"id": "m", "reactions": ["x"]}})] {
        let mut both = fields.clone();
        both.extend(other.as_object().unwrap().clone());
        assert!(attach(&mut Element::new("message"), &both).unwrap_err().starts_with("'file' cannot be given with"));
    }
    // Without a file, nothing changes.
    let mut plain = Element::new("message");
    attach(&mut plain, &Map::new()).unwrap();
    assert_eq!(placeholder(&plain), None);
}

#[test]
fn waiting_files_are_bounded_and_the_oldest_makes_room() {
    let small = || File::new(Vec::new(), "a", "text/plain", "").unwrap();
    let first = pending::put(small(), None);
    let mut ids = Vec::new();
    for _ in 0..pending::MAX_WAITING {
        ids.push(pending::put(small(), None));
        assert!(pending::count() <= pending::MAX_WAITING, "never more than the bound");
    }
    assert!(pending::take(first).is_none(), "the oldest made room");
    assert!(pending::take(*ids.last().unwrap()).is_some(), "the newest is there");
}

const BOUNDARY: &str = "XyZ";

/// A form part: its name, its file name and content type if it is a file, its bytes.
type Part<'a> = (&'a str, Option<(&'a str, Option<&'a str>)>, &'a [u8]);

fn form(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some((file_name, content_type)) = file {
            body.extend(format!("; filename=\"{file_name}\"").as_bytes());
            if let Some(content_type) = content_type {
                body.extend(format!("\r\nContent-Type: {content_type}").as_bytes());
            }
        }
        body.extend(b"\r\n\r\n");
        body.extend(*data);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn read(body: &[u8]) -> Result<Form, String> {
    read_form(body, &format!("multipart/form-data; boundary={BOUNDARY}"), 1 << 20)
}

#[test]
fn a_form_is_its_fields_and_its_file() {
    // Bytes that look like a boundary, a CRLF, and every byte value, kept as they are.
    let mut png: Vec<u8> = b"\x89PNG\r\n--Xy not quite\r\n".to_vec();
    png.extend(0..=255u8);
    let body = form(&[
        ("to", None, b"alice@example.com"),
        ("file", Some(("chart.png", Some("image/png"))), &png),
        ("body", None, "Today's chart ✓".as_bytes()),
    ]);
    let read = read(&body).unwrap();
    assert_eq!(read.fields, json!({"to": "alice@example.com", "body": "Today's chart ✓"}).as_object().unwrap().clone());
    let file = read.file.unwrap();
    assert_eq!((file.name.as_str(), file.content_type.as_str()), ("chart.png", "image/png"));
    assert_eq!(file.data, png);
    assert!(is_form(Some("multipart/form-data; boundary=x")));
    assert!(is_form(Some("Multipart/Form-Data")));
    assert!(!is_form(Some("multipart/mixed; boundary=x")));
    assert!(!is_form(None));
    // No file at all: only fields.
    assert_eq!(read_form(&form(&[("to", None, b"a@b")]), "multipart/form-data; boundary=XyZ", 100).unwrap().file, None);
}

#[test]
fn a_bad_form_is_refused_naming_what() {
    let png = Some(("a.png", Some("image/png")));
    let refused = |parts: &[Part]| read(&form(parts)).unwrap_err();
    assert!(refused(&[("file", None, b"x")]).starts_with("'file' is not a file"));
    assert!(refused(&[("file", Some(("a.png", None)), b"x")]).starts_with("'file' has no Content-Type"));
    assert!(refused(&[("file", Some(("a/b.png", Some("image/png"))), b"x")]).starts_with("'file.name' "));
    assert!(refused(&[("file", Some(("a.png", Some("nonsense"))), b"x")]).starts_with("'file.type' "));
    assert_eq!(refused(&[("to", None, b"a"), ("to", None, b"b")]), "'to' is given twice in the form");
    assert_eq!(refused(&[("file", png, b"a"), ("file", png, b"b")]), "'file' is given twice in the form");
    assert_eq!(refused(&[("body", None, b"\xff\xfe")]), "'body' is not UTF-8 text");
    let many: Vec<String> = (0..=MAX_PARTS).map(|i| format!("f{i}")).collect();
    let parts: Vec<_> = many.iter().map(|name| (name.as_str(), None, &b"x"[..])).collect();
    assert_eq!(refused(&parts), format!("the form has more than {MAX_PARTS} parts"));
    // The framing itself.
    assert!(read_form(b"x", "multipart/form-data", 100).unwrap_err().contains("no boundary"));
    assert!(read(b"--XyZ\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nunterminated").is_err());
    let big = form(&[("file", png, &[0u8; 2000])]);
    assert!(read_form(&big, "multipart/form-data; boundary=XyZ", 1000).is_err(), "past the size given");
}

fn push(body: &[u8], content_type: &str) -> Result<crate::outcome::Reply, (u16, String)> {
    crate::inbound::stanza_from_push(
        body,
        Some(content_type),
        "bot.localhost",
        Some(crate::jsonmap::Profile::ComponentHttp),
        1 << 20,
    )
    .map_err(|refusal| (refusal.status, refusal.message))
}

#[test]
fn a_reply_with_a_file_is_a_message_with_a_placeholder() {
    let fields = json!({"body": "Chart", "file": {"data": "aGk=", "name": "a.txt", "type": "text/plain"}});
    let reply = crate::answer::element_from_json(
        fields.as_object().unwrap(),
        crate::jsonmap::Profile::ComponentHttp,
        crate::jsonmap::Kind::Message,
    )
    .unwrap();
    let id = placeholder(&reply.stanza).unwrap();
    assert!(reply.after.is_empty(), "the caption waits with the file");
    assert_eq!(pending::take(id).unwrap().caption.as_deref(), Some("Chart"));
    // mod_rest's JSON reads the same field.
    let rest = crate::answer::element_from_json(
        fields.as_object().unwrap(),
        crate::jsonmap::Profile::Rest,
        crate::jsonmap::Kind::Message,
    )
    .unwrap();
    pending::take(placeholder(&rest.stanza).unwrap()).unwrap();
}

#[test]
fn a_pushed_file_in_json_or_a_form_and_what_is_refused() {
    let json_push = br#"{"to": "alice@localhost", "body": "Chart", "file": {"data": "aGk=", "name": "a.txt", "type": "text/plain"}}"#;
    let pushed = push(json_push, "application/json").unwrap();
    assert!(pushed.stanza.to_xml().starts_with("<message type='chat' to='alice@localhost' from='bot.localhost'>"));
    let kept = pending::take(placeholder(&pushed.stanza).unwrap()).unwrap();
    assert_eq!((kept.file.data.as_slice(), kept.caption.as_deref()), (&b"hi"[..], Some("Chart")));

    let body = form(&[
        ("to", None, b"alice@localhost"),
        ("body", None, b"Chart"),
        ("file", Some(("chart.png", Some("image/png"))), b"\x89PNG"),
    ]);
    let pushed = push(&body, &format!("multipart/form-data; boundary={BOUNDARY}")).unwrap();
    let kept = pending::take(placeholder(&pushed.stanza).unwrap()).unwrap();
    assert_eq!((kept.file.name.as_str(), kept.file.content_type.as_str()), ("chart.png", "image/png"));
    assert_eq!((kept.file.data.as_slice(), kept.caption.as_deref()), (&b"\x89PNG"[..], Some("Chart")));

    // Refusals name the field, with 400.
    for (body, named) in [
        (
            r#"{"to": "a@l", "file": {"data": "!!", "name": "a", "type": "text/plain"}}"#,
            "'file.data' is not valid base64",
        ),
        (r#"{"to": "a@l", "file": {"data": "aGk=", "type": "text/plain"}}"#, "'file' needs 'name'"),
        (r#"{"to": "a@l", "file": {"data": "aGk=", "name": "a"}}"#, "'file' needs 'type'"),
        (
            r#"{"to": "a@l", "file": {"data": "aGk=", "name": "a", "type": "x"}, "oob_url": "https://x/a"}"#,
            "'file' cannot be given with 'oob_url'",
        ),
    ] {
        let (status, why) = push(body.as_bytes(), "application/json").unwrap_err();
        assert_eq!(status, 400, "{body}");
        assert!(why.starts_with(named), "{body}: {why}");
    }
    let no_type = form(&[("to", None, b"a@l"), ("file", Some(("a.png", None)), b"x")]);
    let (status, why) = push(&no_type, &format!("multipart/form-data; boundary={BOUNDARY}")).unwrap_err();
    assert_eq!((status, why.starts_with("'file' has no Content-Type")), (400, true), "{why}");
    assert_eq!(push(b"x", "text/plain").unwrap_err().0, 415);
}

#[test]
fn a_file_is_not_streamed() {
    let orig = crate::stanza::Incoming::sample("message", Some("chat"));
    let fields = json!({"file": {"data": "aGk=", "name": "a.txt", "type": "text/plain"}});
    let refused = crate::answer::stream_template(&orig, fields.as_object().unwrap(), "bot.localhost").unwrap_err();
    assert_eq!(refused, "'file' cannot be used in a streamed answer");
    let quoted = json!({"reply": {"id": "m1", "quote": "q"}, "file": {"data": "", "name": "a", "type": "a/b"}});
    let reply = crate::answer::element_from_json(
        quoted.as_object().unwrap(),
        crate::jsonmap::Profile::ComponentHttp,
        crate::jsonmap::Kind::Message,
    );
    assert_eq!(reply.unwrap_err(), "'file' cannot be given with 'reply.quote': the file's body is its URL");
}
