//! `application/x-www-form-urlencoded`: a request body or a URL's query, as the fields it names.
//! Only top-level text fields can be written this way; a text without a single `=` is no form
//! but a message's text, as the community module reads it.

use serde_json::{Map, Value};

/// What a form-encoded text holds.
#[derive(Debug, PartialEq)]
pub enum Form {
    /// `key=value` pairs: the fields, each a string (a key given twice keeps its last value).
    Fields(Map<String, Value>),
    /// No `=` anywhere: the decoded text itself.
    Text(String),
}

/// Decodes `text` (`+` is a space, `%XX` a byte; the bytes must be UTF-8), or says what is wrong.
pub fn decode(text: &str) -> Result<Form, String> {
    if !text.contains('=') {
        return Ok(Form::Text(unescape(text)?));
    }
    let mut fields = Map::new();
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = unescape(key)?;
        if key.is_empty() {
            return Err("a form field has no name".into());
        }
        fields.insert(key, Value::String(unescape(value)?));
    }
    Ok(Form::Fields(fields))
}

/// One key or value, decoded.
fn unescape(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| {
                    format!("{:?} is not a valid %-escape", text.get(i..(i + 3).min(text.len())).unwrap_or("%"))
                })?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "a form field is not UTF-8 once decoded".into())
}

/// The JSON `fields` as a form, with what a form can say: strings as they are, numbers as
/// text, `true` as an empty value; anything else (objects, lists, `false`, `null`) is left
/// out, as the community module does.
pub fn encode(fields: &Map<String, Value>) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        let value = match value {
            Value::String(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(true) => String::new(),
            _ => continue,
        };
        if !out.is_empty() {
            out.push('&');
        }
        escape_into(&mut out, key);
        out.push('=');
        escape_into(&mut out, &value);
    }
    out
}

fn escape_into(out: &mut String, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(text: &str) -> Value {
        match decode(text).unwrap() {
            Form::Fields(fields) => Value::Object(fields),
            Form::Text(text) => panic!("read as text: {text}"),
        }
    }

    #[test]
    fn a_form_is_its_fields_and_a_text_without_equals_is_text() {
        assert_eq!(
            fields("to=u%40example.org&body=Hello+there%21"),
            json!({"to": "u@example.org", "body": "Hello there!"})
        );
        assert_eq!(fields("a=1&a=2&&b="), json!({"a": "2", "b": ""}));
        assert_eq!(fields("flag&x=y"), json!({"flag": "", "x": "y"}));
        assert_eq!(fields("body=caf%C3%A9"), json!({"body": "café"}));
        assert_eq!(decode("Hello+world").unwrap(), Form::Text("Hello world".into()));
        assert_eq!(decode("").unwrap(), Form::Text(String::new()));
    }

    #[test]
    fn a_broken_form_is_refused_saying_why() {
        assert!(decode("body=%zz").unwrap_err().contains("%zz"));
        assert!(decode("body=%4").unwrap_err().contains("%4"));
        assert!(decode("body=%").is_err());
        assert!(decode("body=%FF").unwrap_err().contains("UTF-8"));
        assert!(decode("=x").unwrap_err().contains("no name"));
        // A multi-byte character cut by a %-escape's end is refused, never a panic.
        assert!(decode("a=%é").is_err());
    }

    #[test]
    fn a_form_answer_keeps_what_a_form_can_say_and_decodes_back() {
        let answer = json!({"kind": "message", "body": "a&b=c é", "priority": 5, "markable": true,
            "thread": {"id": "t"}, "x": false, "n": null});
        let Value::Object(answer) = answer else { unreachable!() };
        let encoded = encode(&answer);
        assert_eq!(fields(&encoded), json!({"kind": "message", "body": "a&b=c é", "priority": "5", "markable": ""}));
    }
}
