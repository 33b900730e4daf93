//! The module's options as typed, validated values.
//!
//! The shim hands over the raw values from Prosody's config under their config names; every
//! value that cannot be used is refused here with a message that names the option, so the
//! operator sees it when the component loads rather than when the first stanza arrives.

use std::time::Duration;

use base64::Engine as _;
use mlua::{Table, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The webhook URL without any `user:pass@`.
    pub url: String,
    /// `Basic …` header value built from the URL's userinfo, as Prosody's HTTP client does.
    pub authorization: Option<String>,
    /// Stanza kinds that are POSTed: a subset of message, presence, iq.
    pub stanzas: Vec<String>,
    pub workers: usize,
    pub queue_size: usize,
    pub connect_timeout: Duration,
    /// Deadline for the whole delivery of one stanza, retries included.
    pub timeout: Duration,
    /// Retries after a connection failure, 429, 502, 503 or 504 (0: none).
    pub retries: u32,
    /// At most one stanza in flight per (sender, recipient) pair.
    pub ordered: bool,
    pub max_reply_size: u64,
    /// HMAC key for signing requests.
    pub secret: Option<String>,
    /// Extra request headers, in a stable order.
    pub headers: Vec<(String, String)>,
    /// A PEM file of CA certificates trusted in addition to the system's.
    pub ca_file: Option<String>,
}

pub const KINDS: [&str; 3] = ["message", "presence", "iq"];

impl Config {
    /// Defaults for everything but the URL (used by tests).
    pub fn with_url(url: &str) -> Result<Config, String> {
        let (url, authorization) = split_userinfo(url)?;
        Ok(Config {
            url,
            authorization,
            stanzas: vec!["message".into()],
            workers: 4,
            queue_size: 1000,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            retries: 2,
            ordered: true,
            max_reply_size: 1024 * 1024,
            secret: None,
            headers: Vec::new(),
            ca_file: None,
        })
    }

    pub fn from_lua(options: &Table) -> Result<Config, String> {
        let url = match options.raw_get::<Value>("component_post_url").map_err(|e| e.to_string())? {
            Value::String(s) => s.to_string_lossy(),
            Value::Nil => {
                return Err("component_post_url is not set: set it to the URL that receives the stanzas, \
                            e.g. component_post_url = \"http://127.0.0.1:8080/bot\""
                    .into())
            }
            other => return Err(format!("component_post_url must be a string, not a {}", other.type_name())),
        };
        let mut config = Config::with_url(&url)?;
        config.stanzas = stanza_kinds(options)?;
        if let Some(n) = integer(options, "component_post_workers", 1, 256)? {
            config.workers = n as usize;
        }
        if let Some(n) = integer(options, "component_post_queue_size", 1, 10_000_000)? {
            config.queue_size = n as usize;
        }
        if let Some(d) = seconds(options, "component_post_connect_timeout")? {
            config.connect_timeout = d;
        }
        if let Some(d) = seconds(options, "component_post_timeout")? {
            config.timeout = d;
        }
        if let Some(n) = integer(options, "component_post_max_reply_size", 1, 1 << 30)? {
            config.max_reply_size = n as u64;
        }
        if let Some(n) = integer(options, "component_post_retries", 0, 100)? {
            config.retries = n as u32;
        }
        if let Some(b) = boolean(options, "component_post_ordered")? {
            config.ordered = b;
        }
        config.secret = string(options, "component_post_secret")?;
        if config.secret.as_deref() == Some("") {
            return Err("component_post_secret is empty: remove it or set a long random string".into());
        }
        config.ca_file = string(options, "component_post_ca_file")?;
        config.headers = headers(options)?;
        if config.connect_timeout > config.timeout {
            config.connect_timeout = config.timeout;
        }
        Ok(config)
    }
}

/// `component_post_stanzas` (documented) or `post_stanza_types` (what the original code reads).
fn stanza_kinds(options: &Table) -> Result<Vec<String>, String> {
    for name in ["component_post_stanzas", "post_stanza_types"] {
        let value = options.raw_get::<Value>(name).map_err(|e| e.to_string())?;
        let items: Vec<Value> = match value {
            Value::Nil => continue,
            Value::String(_) => vec![value],
            Value::Table(t) => t.sequence_values::<Value>().collect::<mlua::Result<_>>().map_err(|e| e.to_string())?,
            other => return Err(format!("{name} must be a list of stanza kinds, not a {}", other.type_name())),
        };
        let mut kinds = Vec::new();
        for item in items {
            let kind = match &item {
                Value::String(s) => s.to_string_lossy(),
                other => return Err(format!("{name} must list strings, found a {}", other.type_name())),
            };
            if !KINDS.contains(&kind.as_str()) {
                return Err(format!("{name} contains \"{kind}\": the kinds are \"message\", \"presence\" and \"iq\""));
            }
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        return Ok(kinds);
    }
    Ok(vec!["message".into()])
}

fn string(options: &Table, name: &str) -> Result<Option<String>, String> {
    match options.raw_get::<Value>(name).map_err(|e| e.to_string())? {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(s.to_str().map_err(|_| format!("{name} is not valid UTF-8"))?.to_owned())),
        other => Err(format!("{name} must be a string, not a {}", other.type_name())),
    }
}

fn boolean(options: &Table, name: &str) -> Result<Option<bool>, String> {
    match options.raw_get::<Value>(name).map_err(|e| e.to_string())? {
        Value::Nil => Ok(None),
        Value::Boolean(b) => Ok(Some(b)),
        other => Err(format!("{name} must be true or false, not a {}", other.type_name())),
    }
}

/// `component_post_headers = { ["Authorization"] = "Bearer …" }`: names and values checked
/// now, so a typo cannot make every request fail later.
fn headers(options: &Table) -> Result<Vec<(String, String)>, String> {
    const NAME: &str = "component_post_headers";
    let table = match options.raw_get::<Value>(NAME).map_err(|e| e.to_string())? {
        Value::Nil => return Ok(Vec::new()),
        Value::Table(t) => t,
        other => return Err(format!("{NAME} must be a table of header names to values, not a {}", other.type_name())),
    };
    let reserved = [
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "x-delivery-id",
        "x-retry-count",
        "x-signature",
        "x-signature-timestamp",
    ];
    let mut headers = Vec::new();
    for pair in table.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let (Value::String(k), Value::String(v)) = (&k, &v) else {
            return Err(format!("{NAME} must map header names (strings) to values (strings)"));
        };
        let (k, v) = (k.to_string_lossy(), v.to_string_lossy());
        let valid_name =
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err(format!("{NAME}: \"{k}\" is not a valid header name"));
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("{NAME}: the value of {k} contains a line break"));
        }
        if reserved.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(format!("{NAME}: {k} is set by the module and cannot be overridden"));
        }
        headers.push((k, v));
    }
    headers.sort();
    Ok(headers)
}

fn number(options: &Table, name: &str) -> Result<Option<f64>, String> {
    match options.raw_get::<Value>(name).map_err(|e| e.to_string())? {
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

fn integer(options: &Table, name: &str, min: i64, max: i64) -> Result<Option<i64>, String> {
    let Some(n) = number(options, name)? else { return Ok(None) };
    if n.fract() != 0.0 || n < min as f64 || n > max as f64 {
        return Err(format!("{name} must be a whole number from {min} to {max}, not {n}"));
    }
    Ok(Some(n as i64))
}

fn seconds(options: &Table, name: &str) -> Result<Option<Duration>, String> {
    let Some(n) = number(options, name)? else { return Ok(None) };
    if !(n > 0.0 && n <= 86_400.0) {
        return Err(format!("{name} must be a number of seconds above 0 and at most 86400, not {n}"));
    }
    Ok(Some(Duration::from_secs_f64(n)))
}

/// Splits `scheme://user:pass@host/…` into the URL without userinfo and a Basic auth header.
fn split_userinfo(url: &str) -> Result<(String, Option<String>), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("component_post_url \"{url}\" is not an absolute http:// or https:// URL"))?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("component_post_url \"{url}\" must use http or https, not {scheme}"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (userinfo, host) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    if host.is_empty() {
        return Err(format!("component_post_url \"{url}\" has no host"));
    }
    let authorization =
        userinfo.map(|u| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(u.as_bytes())));
    Ok((format!("{scheme}://{host}{path}"), authorization))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_basic_auth() {
        let c = Config::with_url("https://user:pa55@example.com:8443/hook?x=1").unwrap();
        assert_eq!(c.url, "https://example.com:8443/hook?x=1");
        assert_eq!(c.authorization.as_deref(), Some("Basic dXNlcjpwYTU1"));
        let plain = Config::with_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(plain.url, "http://127.0.0.1:8080");
        assert_eq!(plain.authorization, None);
    }

    #[test]
    fn bad_urls_are_refused_by_name() {
        for url in ["example.com/hook", "ftp://example.com/", "http:///path"] {
            assert!(Config::with_url(url).unwrap_err().contains("component_post_url"), "{url}");
        }
    }

    #[test]
    fn options_are_validated_with_their_names() {
        let lua = mlua::Lua::new();
        let check = |source: &str| -> Result<Config, String> {
            let table: Table = lua.load(source).eval().unwrap();
            Config::from_lua(&table)
        };
        assert!(check("return {}").unwrap_err().contains("component_post_url is not set"));
        let c = check("return { component_post_url = 'http://h/', post_stanza_types = { 'message', 'iq' } }").unwrap();
        assert_eq!(c.stanzas, ["message", "iq"]);
        let c = check("return { component_post_url = 'http://h/', component_post_stanzas = 'presence', post_stanza_types = { 'iq' } }").unwrap();
        assert_eq!(c.stanzas, ["presence"]);
        assert!(check("return { component_post_url = 'http://h/', component_post_stanzas = { 'mesage' } }")
            .unwrap_err()
            .contains("component_post_stanzas contains \"mesage\""));
        assert!(check("return { component_post_url = 'http://h/', component_post_workers = 0 }")
            .unwrap_err()
            .contains("component_post_workers"));
        assert!(check("return { component_post_url = 'http://h/', component_post_timeout = 'soon' }")
            .unwrap_err()
            .contains("component_post_timeout"));
        let c = check(
            "return { component_post_url = 'http://h/', component_post_timeout = 2.5, component_post_workers = '8' }",
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.workers, 8);
        assert_eq!(c.connect_timeout, Duration::from_millis(2500), "connecting never outlasts the whole deadline");
        let c = check(
            "return { component_post_url = 'http://h/', component_post_retries = 0, component_post_ordered = false, \
             component_post_secret = 's', component_post_headers = { ['X-B'] = '2', Authorization = 'Bearer t' } }",
        )
        .unwrap();
        assert_eq!((c.retries, c.ordered, c.secret.as_deref()), (0, false, Some("s")));
        assert_eq!(c.headers, [("Authorization".to_string(), "Bearer t".to_string()), ("X-B".into(), "2".into())]);
        for (source, name) in [
            ("component_post_retries = -1", "component_post_retries"),
            ("component_post_ordered = 'yes'", "component_post_ordered"),
            ("component_post_secret = ''", "component_post_secret"),
            ("component_post_headers = { ['Bad Name'] = 'x' }", "component_post_headers"),
            ("component_post_headers = { ['X-A'] = 'a\\r\\nInjected: 1' }", "line break"),
            ("component_post_headers = { ['Content-Type'] = 'text/plain' }", "cannot be overridden"),
            ("component_post_ca_file = 7", "component_post_ca_file"),
        ] {
            let err = check(&format!("return {{ component_post_url = 'http://h/', {source} }}")).unwrap_err();
            assert!(err.contains(name), "{source}: {err}");
        }
    }
}
