//! `text/plain`: a chat message's text, or with path parameters, what the path's kind says the
//! text is (a message's body, a presence's show).

use serde_json::{Map, Value};

use crate::jsonmap::Kind;

/// The fields a text body gives a stanza of `kind` (a chat message's without a path).
pub fn fields(text: &str, kind: Option<Kind>) -> Result<Map<String, Value>, String> {
    let mut fields = Map::new();
    match kind {
        None => {
            fields.insert("kind".into(), "message".into());
            fields.insert("type".into(), "chat".into());
            fields.insert("body".into(), text.into());
        }
        Some(Kind::Message) => {
            fields.insert("body".into(), text.into());
        }
        Some(Kind::Presence) => {
            fields.insert("show".into(), text.trim().into());
        }
        Some(Kind::Iq) => {
            return Err(
                "a text/plain body is a message's body or a presence's show, never an iq: send the iq as JSON, \
                        a form or XML"
                    .into(),
            )
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_text_is_a_body_or_a_show_and_never_an_iq() {
        assert_eq!(
            Value::Object(fields("Hi!", None).unwrap()),
            json!({"kind": "message", "type": "chat", "body": "Hi!"})
        );
        assert_eq!(Value::Object(fields("Hi!", Some(Kind::Message)).unwrap()), json!({"body": "Hi!"}));
        assert_eq!(Value::Object(fields("away\n", Some(Kind::Presence)).unwrap()), json!({"show": "away"}));
        assert!(fields("x", Some(Kind::Iq)).unwrap_err().contains("never an iq"));
    }
}
