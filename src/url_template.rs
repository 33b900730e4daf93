//! mod_rest's callback URL template: `{kind}`, `{type}`, `{to}` and `{from}` in its path or
//! query, filled with each stanza's own (percent-encoded; empty when it has none) when the
//! stanza is posted. A placeholder in the host is refused at load (the host is resolved once,
//! for every stanza), as is any other name between braces.

use std::borrow::Cow;

use crate::stanza::Incoming;

/// The names a placeholder may have.
pub const NAMES: [&str; 4] = ["kind", "type", "to", "from"];

/// Whether `url` (already checked as a URL: its host holds no brace) names only known
/// placeholders, with no brace left unpaired; else why not, naming `option`.
pub fn check(url: &str, option: &str) -> Result<(), String> {
    let mut rest = url;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("{option} \"{url}\" has a '}}' without its '{{'"));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("{option} \"{url}\" has a '{{' without its '}}'"))?;
        let name = &after[..close];
        if !NAMES.contains(&name) {
            return Err(format!(
                "{option} \"{url}\": {{{name}}} is no placeholder; use {{kind}}, {{type}}, {{to}} or {{from}}"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// `url` with its placeholders filled from `stanza` (the URL itself when it has none).
pub fn render<'a>(url: &'a str, stanza: &Incoming) -> Cow<'a, str> {
    if !url.contains('{') {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len() + 64);
    let mut rest = url;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let value = match &after[..close] {
            "kind" => Some(stanza.name.as_str()),
            "type" => stanza.stanza_type.as_deref(),
            "to" => stanza.to.as_deref(),
            "from" => stanza.from.as_deref(),
            _ => None,
        };
        escape_into(&mut out, value.unwrap_or(""));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn escape_into(out: &mut String, text: &str) {
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_with_the_stanzas_own_escaped() {
        let mut stanza = Incoming::sample("message", Some("chat"));
        stanza.from = Some("juliet@example.com/balcony seat".into());
        stanza.to = Some("bot@rest.example.net".into());
        assert_eq!(
            render("http://h/{kind}/{type}?to={to}&from={from}", &stanza),
            "http://h/message/chat?to=bot%40rest.example.net&from=juliet%40example.com%2Fbalcony%20seat"
        );
        let presence = Incoming::sample("presence", None);
        assert_eq!(render("http://h/{kind}/{type}/x", &presence), "http://h/presence//x");
        assert!(matches!(render("http://h/plain", &presence), Cow::Borrowed(_)));
    }

    #[test]
    fn only_known_placeholders_in_pairs_pass() {
        assert!(check("http://h/{kind}/{type}/{to}/{from}", "rest_callback_url").is_ok());
        assert!(check("http://h/plain?x=1", "rest_callback_url").is_ok());
        for (url, why) in [
            ("http://h/{body}", "{body} is no placeholder"),
            ("http://h/{kind", "without its '}'"),
            ("http://h/kind}", "without its '{'"),
            ("http://h/{}", "{} is no placeholder"),
        ] {
            let err = check(url, "rest_callback_url").unwrap_err();
            assert!(err.contains(why) && err.contains("rest_callback_url"), "{url}: {err}");
        }
    }
}
