//! What a request's path says, after `/rest/`: `{kind}/{type}/{to}` on a POST, and the GET
//! shortcuts `{query}/{to}` (`ping`, `version`, `disco`, `items`, `archive`, …), each an iq
//! `get` (an archive query a `set`) with the query's payload named by the path.

use serde_json::{Map, Value};

use crate::jsonmap::Kind;

/// The fields a path names, to merge into (or, for an iq payload, to wrap) the body's.
#[derive(Debug, PartialEq)]
pub struct Path {
    /// `message`, `presence` or `iq`.
    pub kind: Kind,
    /// What the second segment says: a stanza `type`, or the iq payload the body is.
    pub second: Second,
    /// The third segment (Prosody's HTTP server has decoded its %-escapes already); `None` when
    /// empty (the stanza goes to the account itself).
    pub to: Option<String>,
}

/// The second segment of a path.
#[derive(Debug, PartialEq)]
pub enum Second {
    /// A stanza type (`chat`, `get`, `available`, …): the body's fields, with this type.
    Type(String),
    /// An iq payload (`ping`, `disco`, …): the body's fields are its value, the iq's only field.
    Payload(String),
}

/// Reads `kind/type/to`; for a GET, `query/to` (an iq whose payload is `query`). `None` when the
/// path has neither form, with why.
pub fn parse(path: &str, get: bool) -> Result<Path, String> {
    let (kind_name, rest) = if get { ("iq", path) } else { path.split_once('/').unwrap_or((path, "")) };
    let Some((second, to)) = rest.split_once('/') else {
        return Err(if get {
            format!("GET /rest/{path}: a query is GET /rest/<query>/<to> (<to> may be empty: the account itself)")
        } else {
            format!("/rest/{path}: path parameters are /rest/<kind>/<type>/<to>")
        });
    };
    let kind = Kind::from_name(kind_name)
        .ok_or_else(|| format!("/rest/{path}: {kind_name:?} is no stanza kind (message, presence or iq)"))?;
    if second.is_empty() || !second.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(format!("/rest/{path}: {second:?} is no type or query name"));
    }
    let to = to.to_owned();
    let second = if kind == Kind::Iq && second != "get" && second != "set" {
        Second::Payload(second.to_owned())
    } else if get {
        return Err(format!("GET /rest/{path}: {second:?} is no query: send the iq with POST"));
    } else {
        Second::Type(second.to_owned())
    };
    Ok(Path { kind, second, to: (!to.is_empty()).then_some(to) })
}

impl Path {
    /// The fields of the stanza: the body's `fields` with the path's kind, type and `to` (the
    /// path wins), or for an iq payload, `{kind, <payload>: fields, to}` (`ping` is `true`, an
    /// absent body an empty query).
    pub fn apply(self, fields: Option<Map<String, Value>>) -> Map<String, Value> {
        let mut out = match self.second {
            Second::Type(stanza_type) => {
                let mut out = fields.unwrap_or_default();
                out.insert("type".into(), Value::String(stanza_type));
                out
            }
            Second::Payload(name) => {
                let value = match (name.as_str(), fields) {
                    ("ping", _) => Value::Bool(true),
                    (_, Some(fields)) if !fields.is_empty() => Value::Object(numbers(&name, fields)),
                    // The statistics query is a list of the names asked for: none, all.
                    ("stats", _) => Value::Array(Vec::new()),
                    (_, _) => Value::Object(Map::new()),
                };
                let mut out = Map::new();
                out.insert(name, value);
                out
            }
        };
        out.insert("kind".into(), Value::String(self.kind.name().into()));
        match self.to {
            Some(to) => out.insert("to".into(), Value::String(to)),
            None => out.remove("to"),
        };
        out
    }
}

/// A query's fields come from a form, as text: the ones the mapping reads as numbers are
/// numbers when they are written as one (else they stay text, and the mapping names them).
fn numbers(query: &str, mut fields: Map<String, Value>) -> Map<String, Value> {
    let numeric: &[&str] = match query {
        "upload_request" => &["size"],
        _ => &[],
    };
    for key in numeric {
        if let Some(Value::String(text)) = fields.get(*key) {
            if let Ok(n) = text.trim().parse::<u64>() {
                fields.insert((*key).into(), Value::from(n));
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(path: &str, get: bool, body: Value) -> Value {
        let body = match body {
            Value::Object(map) => Some(map),
            _ => None,
        };
        Value::Object(parse(path, get).unwrap().apply(body))
    }

    #[test]
    fn a_post_path_gives_kind_type_and_to() {
        assert_eq!(
            fields("message/chat/john@example.com", false, json!({"body": "Hi", "to": "other@x", "type": "normal"})),
            json!({"kind": "message", "type": "chat", "to": "john@example.com", "body": "Hi"})
        );
        assert_eq!(fields("presence/available/", false, Value::Null), json!({"kind": "presence", "type": "available"}));
        assert_eq!(fields("iq/get/example.com", false, json!({"ping": true}))["type"], "get");
        // A full JID's resource may hold slashes.
        assert_eq!(fields("message/chat/u@example.org/a/b", false, Value::Null)["to"], "u@example.org/a/b");
    }

    #[test]
    fn an_iq_path_naming_a_payload_makes_the_body_that_payload() {
        assert_eq!(
            fields("iq/ping/example.com", false, Value::Null),
            json!({"kind": "iq", "ping": true, "to": "example.com"})
        );
        assert_eq!(
            fields("iq/disco/example.com", false, json!({"node": "n"})),
            json!({"kind": "iq", "disco": {"node": "n"}, "to": "example.com"})
        );
    }

    #[test]
    fn the_get_shortcuts_are_iq_queries() {
        assert_eq!(
            fields("ping/example.com", true, Value::Null),
            json!({"kind": "iq", "ping": true, "to": "example.com"})
        );
        assert_eq!(fields("version/", true, Value::Null), json!({"kind": "iq", "version": {}}));
        assert_eq!(
            fields("items/example.com", true, json!({"node": "x"})),
            json!({"kind": "iq", "items": {"node": "x"}, "to": "example.com"})
        );
        assert_eq!(
            fields("upload_request/up.example.com", true, json!({"filename": "a", "size": "12"}))["upload_request"],
            json!({"filename": "a", "size": 12})
        );
        assert_eq!(fields("archive/", true, Value::Null), json!({"kind": "iq", "archive": {}}));
    }

    #[test]
    fn a_path_of_neither_form_is_refused_saying_which_is_expected() {
        for (path, get, needle) in [
            ("message/chat", false, "<kind>/<type>/<to>"),
            ("mail/chat/x@y", false, "no stanza kind"),
            ("message/c hat/x@y", false, "no type"),
            ("message//x@y", false, "no type"),
            ("ping", true, "<query>/<to>"),
            ("get/x@y", true, "send the iq with POST"),
        ] {
            let why = parse(path, get).unwrap_err();
            assert!(why.contains(needle), "{path}: {why}");
        }
    }
}
