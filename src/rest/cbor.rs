//! mod_rest's `application/cbor` (RFC 8949): the same map as its JSON, in CBOR. A body is read
//! into the JSON value it says and then goes the way a JSON body goes; an answer is the JSON
//! value the module already builds, written in CBOR.
//!
//! Only what JSON can say is read: text, integers of at most 64 bits, finite floats, booleans,
//! null (and CBOR's `undefined`, read as null), arrays and maps whose keys are text, each key
//! once. A byte string, a map key that is not text, a tag (a date, a URI, …), a float that is
//! not finite, a key given twice, a second item after the first, and nesting deeper than
//! [`DEPTH`] are refused, naming where.

use ciborium::value::Value as Cbor;
use serde_json::{Map, Number, Value};

/// The media type.
pub const MEDIA_TYPE: &str = "application/cbor";

/// How deep arrays and maps may nest: the bound serde_json puts on a JSON body, so that a CBOR
/// body cannot say what a JSON one may not (and the reading, which recurses, stays shallow).
pub const DEPTH: usize = 128;

/// Whether a `Content-Type` is CBOR.
pub fn is_cbor(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| super::negotiate::media_type(ct).eq_ignore_ascii_case(MEDIA_TYPE))
}

/// The JSON object a CBOR body says, or why it says none.
pub fn decode(body: &[u8]) -> Result<Map<String, Value>, String> {
    let mut rest = body;
    let item: Cbor = ciborium::de::from_reader_with_recursion_limit(&mut rest, DEPTH).map_err(|e| match e {
        ciborium::de::Error::RecursionLimitExceeded => format!("the CBOR body nests deeper than {DEPTH} levels"),
        ciborium::de::Error::Io(e) => format!("invalid CBOR: {e} (a truncated body?)"),
        ciborium::de::Error::Syntax(at) => format!("invalid CBOR at byte {at}"),
        ciborium::de::Error::Semantic(Some(at), why) => format!("invalid CBOR at byte {at}: {why}"),
        ciborium::de::Error::Semantic(None, why) => format!("invalid CBOR: {why}"),
    })?;
    let Cbor::Map(entries) = item else {
        return Err("expected a CBOR map (the fields of the JSON object), not a single value".into());
    };
    if !rest.is_empty() {
        return Err(format!("the body holds more than one CBOR item ({} bytes follow the first)", rest.len()));
    }
    object(entries, None)
}

/// `value` in CBOR: objects as maps with text keys, numbers as integers or floats.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and every JSON value has a CBOR form.
    ciborium::ser::into_writer(value, &mut out).expect("a JSON value is written as CBOR");
    out
}

/// A name for the place `at` (`None`: the body itself) for refusals: `payload.items[2]`.
fn name(at: Option<&str>) -> String {
    at.map_or("the body".to_string(), |at| format!("'{at}'"))
}

fn object(entries: Vec<(Cbor, Cbor)>, at: Option<&str>) -> Result<Map<String, Value>, String> {
    let mut fields = Map::new();
    for (key, value) in entries {
        let Cbor::Text(key) = key else {
            return Err(format!("{} has a map key that is {}: JSON's keys are text", name(at), what(&key)));
        };
        let inner = at.map_or_else(|| key.clone(), |at| format!("{at}.{key}"));
        if fields.contains_key(&key) {
            return Err(format!("'{inner}' is given twice"));
        }
        let value = json(value, &inner)?;
        fields.insert(key, value);
    }
    Ok(fields)
}

fn json(value: Cbor, at: &str) -> Result<Value, String> {
    Ok(match value {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Text(text) => Value::String(text),
        Cbor::Integer(i) => {
            let i = i128::from(i);
            if let Ok(i) = i64::try_from(i) {
                Value::from(i)
            } else if let Ok(u) = u64::try_from(i) {
                Value::from(u)
            } else {
                return Err(format!("'{at}' is an integer beyond 64 bits: JSON numbers here are not"));
            }
        }
        Cbor::Float(f) => match Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None => return Err(format!("'{at}' is {f}: JSON has no such number")),
        },
        Cbor::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| json(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(entries) => Value::Object(object(entries, Some(at))?),
        other => return Err(format!("'{at}' is {}: JSON has none", what(&other))),
    })
}

/// What a CBOR item is, for refusals.
fn what(value: &Cbor) -> String {
    match value {
        Cbor::Bytes(_) => "a byte string".into(),
        Cbor::Tag(tag, _) => format!("tagged (CBOR tag {tag})"),
        Cbor::Text(_) => "text".into(),
        Cbor::Integer(_) => "an integer".into(),
        Cbor::Float(_) => "a float".into(),
        Cbor::Bool(_) => "a boolean".into(),
        Cbor::Null => "null".into(),
        Cbor::Array(_) => "an array".into(),
        Cbor::Map(_) => "a map".into(),
        _ => "a value JSON has not".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cbor(value: &Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(value, &mut out).unwrap();
        out
    }

    fn text(s: &str) -> Cbor {
        Cbor::Text(s.into())
    }

    #[test]
    fn what_json_says_goes_both_ways() {
        let value = json!({
            "to": "u@example.org", "body": "hé ✓", "priority": -5, "big": u64::MAX, "small": i64::MIN,
            "ratio": 0.25, "ping": true, "gone": null,
            "payload": {"items": [1, "two", [3.5], {"x": false}], "empty": {}}
        });
        let Value::Object(fields) = &value else { unreachable!() };
        assert_eq!(&decode(&encode(&value)).unwrap(), fields);
    }

    #[test]
    fn an_answer_is_the_json_written_in_cbor() {
        // {"a": 1} is a1 61 61 01: a map of one, the text "a", the integer 1.
        assert_eq!(encode(&json!({"a": 1})), [0xa1, 0x61, b'a', 0x01]);
        assert_eq!(encode(&json!([-1, null, true])), [0x83, 0x20, 0xf6, 0xf5]);
        let answer = json!({"kind": "iq", "type": "result", "id": "p1", "ping": true});
        let back: Value = ciborium::de::from_reader(&encode(&answer)[..]).unwrap();
        assert_eq!(back, answer);
    }

    #[test]
    fn what_json_cannot_say_is_refused_naming_where() {
        let map = |entries: Vec<(Cbor, Cbor)>| cbor(&Cbor::Map(entries));
        let refused = |body: Vec<u8>| decode(&body).unwrap_err();
        let bytes = map(vec![(text("payload"), Cbor::Map(vec![(text("data"), Cbor::Bytes(vec![1, 2]))]))]);
        assert_eq!(refused(bytes), "'payload.data' is a byte string: JSON has none");
        let key = map(vec![(text("to"), text("u@example.org")), (Cbor::Integer(7.into()), text("x"))]);
        assert_eq!(refused(key), "the body has a map key that is an integer: JSON's keys are text");
        let inner_key = map(vec![(text("a"), Cbor::Map(vec![(Cbor::Bytes(vec![0]), Cbor::Null)]))]);
        assert_eq!(refused(inner_key), "'a' has a map key that is a byte string: JSON's keys are text");
        let tag =
            map(vec![(text("items"), Cbor::Array(vec![Cbor::Null, Cbor::Tag(1, Box::new(Cbor::Integer(0.into())))]))]);
        assert_eq!(refused(tag), "'items[1]' is tagged (CBOR tag 1): JSON has none");
        let nan = map(vec![(text("n"), Cbor::Float(f64::NAN))]);
        assert_eq!(refused(nan), "'n' is NaN: JSON has no such number");
        let infinite = map(vec![(text("n"), Cbor::Float(f64::INFINITY))]);
        assert_eq!(refused(infinite), "'n' is inf: JSON has no such number");
        let twice = map(vec![(text("body"), text("a")), (text("body"), text("b"))]);
        assert_eq!(refused(twice), "'body' is given twice");
        // {"n": -2^64}: a negative integer of major type 1, beyond i64; a bignum is a tag.
        let huge = vec![0xa1, 0x61, b'n', 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(refused(huge), "'n' is an integer beyond 64 bits: JSON numbers here are not");
        let mut bignum = vec![0xa1, 0x61, b'n', 0xc2, 0x49, 0x01];
        bignum.extend([0; 8]);
        assert_eq!(refused(bignum), "'n' is tagged (CBOR tag 2): JSON has none");
        assert_eq!(
            refused(cbor(&text("hi"))),
            "expected a CBOR map (the fields of the JSON object), not a single value"
        );
        let mut two = cbor(&Cbor::Map(vec![]));
        two.extend(cbor(&Cbor::Null));
        assert_eq!(refused(two), "the body holds more than one CBOR item (1 bytes follow the first)");
        // Not CBOR at all: a JSON text (its `{` is a CBOR text whose 8-byte length follows: a
        // length far beyond the body, which reserves nothing), a truncated map, a reserved
        // header, nothing.
        let json = br#"{"to": "u@example.org", "body": "hi"}"#;
        assert_eq!(refused(json.to_vec()), "invalid CBOR: failed to fill whole buffer (a truncated body?)");
        assert!(refused(vec![0xa1, 0x61, b'a']).starts_with("invalid CBOR"));
        assert!(refused(vec![0x1c]).starts_with("invalid CBOR"));
        assert!(refused(vec![]).starts_with("invalid CBOR"));
    }

    #[test]
    fn nesting_is_bounded_as_a_json_body_is() {
        // `levels` containers: a map holding arrays of one, the innermost empty.
        let nested = |levels: usize| {
            let mut body = vec![0xa1, 0x61, b'a'];
            body.extend(vec![0x81; levels - 2]);
            body.push(0x80);
            body
        };
        assert!(decode(&nested(DEPTH)).is_ok());
        assert_eq!(decode(&nested(DEPTH + 1)).unwrap_err(), format!("the CBOR body nests deeper than {DEPTH} levels"));
        // A length far beyond the body reserves nothing: it fails when the bytes run out.
        let claims = [0xa1, 0x61, b'a', 0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(decode(&claims).unwrap_err().starts_with("invalid CBOR"));
    }
}
