//! Reading one option from the table the shim hands over, as a typed value.
//!
//! Every options module (`config.rs`, `room/options.rs`, `stream/options.rs`, the avatar's) reads
//! its raw values here, so an option of a given type is refused with the same words whichever
//! feature owns it, always naming the option. This module knows no option name: callers pass
//! the full name, prefix included.

use std::time::Duration;

use mlua::{Table, Value};

/// The longest duration any option may say, one day.
pub const MAX_SECONDS: f64 = 86_400.0;

fn raw(options: &Table, name: &str) -> Result<Value, String> {
    options.raw_get::<Value>(name).map_err(|e| format!("{name} could not be read: {e}"))
}

fn text(name: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.to_str().map_err(|_| format!("{name} is not valid UTF-8"))?.to_owned()),
        other => Err(format!("{name} must be a string, not a {}", other.type_name())),
    }
}

/// A string option; `None` when not set.
pub fn string(options: &Table, name: &str) -> Result<Option<String>, String> {
    match raw(options, name)? {
        Value::Nil => Ok(None),
        value => text(name, &value).map(Some),
    }
}

/// A list of strings, or one string meaning a list of one; `noun` says what the items are in
/// refusals ("rooms"). `None` when not set.
pub fn strings(options: &Table, name: &str, noun: &str) -> Result<Option<Vec<String>>, String> {
    let items: Vec<Value> = match raw(options, name)? {
        Value::Nil => return Ok(None),
        value @ Value::String(_) => vec![value],
        Value::Table(t) => t.sequence_values::<Value>().collect::<mlua::Result<_>>().map_err(|e| e.to_string())?,
        other => return Err(format!("{name} must be a list of {noun}, not a {}", other.type_name())),
    };
    items
        .iter()
        .map(|item| {
            text(name, item).map_err(|_| format!("{name} must list {noun} as strings, found a {}", item.type_name()))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// `true` or `false`; `None` when not set.
pub fn boolean(options: &Table, name: &str) -> Result<Option<bool>, String> {
    match raw(options, name)? {
        Value::Nil => Ok(None),
        Value::Boolean(b) => Ok(Some(b)),
        other => Err(format!("{name} must be true or false, not a {}", other.type_name())),
    }
}

/// A number, or a string that reads as one (Prosody's config may hold either); `None` when not
/// set.
pub fn number(options: &Table, name: &str) -> Result<Option<f64>, String> {
    match raw(options, name)? {
        Value::Nil => Ok(None),
        Value::Integer(n) => Ok(Some(n as f64)),
        Value::Number(n) => Ok(Some(n)),
        Value::String(s) => match s.to_str().ok().and_then(|s| s.trim().parse::<f64>().ok()) {
            Some(n) => Ok(Some(n)),
            None => Err(format!("{name} must be a number, not \"{}\"", s.to_string_lossy())),
        },
        other => Err(format!("{name} must be a number, not a {}", other.type_name())),
    }
}

/// A whole number from `min` to `max`; `None` when not set.
pub fn integer(options: &Table, name: &str, min: i64, max: i64) -> Result<Option<i64>, String> {
    let Some(n) = number(options, name)? else { return Ok(None) };
    whole(name, n, min, max).map(Some)
}

/// `n` as a whole number from `min` to `max`, or a refusal naming `name`.
pub fn whole(name: &str, n: f64, min: i64, max: i64) -> Result<i64, String> {
    if n.fract() != 0.0 || n < min as f64 || n > max as f64 {
        return Err(format!("{name} must be a whole number from {min} to {max}, not {n}"));
    }
    Ok(n as i64)
}

/// A number of seconds above 0 and at most [`MAX_SECONDS`]; `None` when not set.
pub fn seconds(options: &Table, name: &str) -> Result<Option<Duration>, String> {
    let Some(n) = number(options, name)? else { return Ok(None) };
    duration(name, n).map(Some)
}

/// Like [`seconds`], but 0 is allowed (it turns the feature off).
pub fn seconds_or_zero(options: &Table, name: &str) -> Result<Option<Duration>, String> {
    match number(options, name)? {
        Some(0.0) => Ok(Some(Duration::ZERO)),
        Some(n) => duration(name, n).map(Some),
        None => Ok(None),
    }
}

/// `n` seconds, above 0 and at most [`MAX_SECONDS`], or a refusal naming `name`.
pub fn duration(name: &str, n: f64) -> Result<Duration, String> {
    if !(n > 0.0 && n <= MAX_SECONDS) {
        return Err(format!("{name} must be a number of seconds above 0 and at most 86400, not {n}"));
    }
    Ok(Duration::from_secs_f64(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(lua: &mlua::Lua, source: &str) -> Table {
        lua.load(format!("return {{ {source} }}")).eval().unwrap()
    }

    #[test]
    fn each_type_is_read_or_refused_by_name() {
        let lua = mlua::Lua::new();
        let t = table(&lua, "s = 'x', b = true, n = '2.5', i = 3, l = { 'a', 'b' }, one = 'a', bad = { 1 }");
        assert_eq!(string(&t, "s").unwrap().as_deref(), Some("x"));
        assert_eq!(string(&t, "unset").unwrap(), None);
        assert_eq!(string(&t, "b").unwrap_err(), "b must be a string, not a boolean");
        assert_eq!(boolean(&t, "b").unwrap(), Some(true));
        assert_eq!(boolean(&t, "s").unwrap_err(), "s must be true or false, not a string");
        assert_eq!(number(&t, "n").unwrap(), Some(2.5));
        assert_eq!(number(&t, "s").unwrap_err(), "s must be a number, not \"x\"");
        assert_eq!(integer(&t, "i", 1, 3).unwrap(), Some(3));
        assert_eq!(integer(&t, "n", 1, 3).unwrap_err(), "n must be a whole number from 1 to 3, not 2.5");
        assert_eq!(seconds(&t, "n").unwrap(), Some(Duration::from_millis(2500)));
        assert_eq!(strings(&t, "l", "rooms").unwrap(), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(strings(&t, "one", "rooms").unwrap(), Some(vec!["a".to_owned()]));
        assert_eq!(strings(&t, "bad", "rooms").unwrap_err(), "bad must list rooms as strings, found a integer");
        assert_eq!(strings(&t, "b", "rooms").unwrap_err(), "b must be a list of rooms, not a boolean");
    }

    #[test]
    fn durations_are_above_zero_and_at_most_a_day() {
        let lua = mlua::Lua::new();
        let t = table(&lua, "zero = 0, day = 86400, more = 86401, neg = -1");
        assert_eq!(seconds_or_zero(&t, "zero").unwrap(), Some(Duration::ZERO));
        assert!(seconds(&t, "zero").unwrap_err().contains("above 0"));
        assert_eq!(seconds(&t, "day").unwrap(), Some(Duration::from_secs(86_400)));
        assert!(seconds(&t, "more").unwrap_err().contains("at most 86400"));
        assert!(seconds_or_zero(&t, "neg").unwrap_err().starts_with("neg must be a number of seconds"));
    }
}
