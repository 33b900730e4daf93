//! Which format mod_rest answers in: of the four it writes (`application/xmpp+xml`,
//! `application/json`, `application/x-www-form-urlencoded`, `application/cbor`), the one the
//! request's `Accept` prefers by its `q` values, else the one the request is written in, else
//! XML. A callback is written in XML or JSON only: [`callback`] picks between those two.

/// A format mod_rest answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `application/xmpp+xml`
    Xml,
    /// `application/json`
    Json,
    /// `application/x-www-form-urlencoded`: the JSON's top-level text fields.
    Form,
    /// `application/cbor`: the JSON's value in CBOR ([`super::cbor`]).
    Cbor,
}

impl Answer {
    /// The media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Answer::Xml => "application/xmpp+xml",
            Answer::Json => "application/json",
            Answer::Form => "application/x-www-form-urlencoded",
            Answer::Cbor => super::cbor::MEDIA_TYPE,
        }
    }

    /// The name the Lua uses.
    pub fn name(self) -> &'static str {
        match self {
            Answer::Xml => "xml",
            Answer::Json => "json",
            Answer::Form => "form",
            Answer::Cbor => "cbor",
        }
    }

    const ALL: [Answer; 4] = [Answer::Xml, Answer::Json, Answer::Form, Answer::Cbor];
    const CALLBACK: [Answer; 2] = [Answer::Xml, Answer::Json];
}

/// The media type of a `Content-Type` or `Accept` item, without its parameters.
pub fn media_type(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

/// What a request with `content_type` and `accept` is answered in. Wildcards, ties and `q=0`
/// prefer none; so does a `q` that is not a number.
pub fn answer(content_type: Option<&str>, accept: Option<&str>) -> Answer {
    among(&Answer::ALL, content_type, accept)
}

/// What a callback whose `Accept` (its answer to the OPTIONS probe) is `accept` is written in:
/// XML or JSON, as [`answer`] picks among those two.
pub fn callback(accept: Option<&str>) -> Answer {
    among(&Answer::CALLBACK, None, accept)
}

fn among(candidates: &[Answer], content_type: Option<&str>, accept: Option<&str>) -> Answer {
    let mut quality = vec![None::<f32>; candidates.len()];
    for range in accept.unwrap_or("").split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|param| param.split_once('='))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, q)| q.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0));
        if let Some(i) = candidates.iter().position(|a| a.media_type().eq_ignore_ascii_case(media)) {
            quality[i] = Some(quality[i].map_or(q, |old| old.max(q)));
        }
    }
    let best = quality.iter().map(|q| q.unwrap_or(0.0)).fold(0.0_f32, f32::max);
    let preferred: Vec<Answer> = candidates
        .iter()
        .copied()
        .zip(quality)
        .filter(|(_, q)| best > 0.0 && q.unwrap_or(0.0) == best)
        .map(|(a, _)| a)
        .collect();
    if let [only] = preferred[..] {
        return only;
    }
    let written = content_type.map(media_type).unwrap_or("");
    candidates
        .iter()
        .copied()
        .find(|a| a.media_type().eq_ignore_ascii_case(written) && (preferred.is_empty() || preferred.contains(a)))
        .unwrap_or(if preferred.is_empty() { Answer::Xml } else { preferred[0] })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json; charset=utf-8");
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
    const XML: Option<&str> = Some("application/xmpp+xml");

    #[test]
    fn accept_decides_else_the_request_format_else_xml() {
        assert_eq!(answer(JSON, None), Answer::Json);
        assert_eq!(answer(FORM, None), Answer::Form);
        assert_eq!(answer(XML, None), Answer::Xml);
        assert_eq!(answer(Some("text/plain"), None), Answer::Xml);
        assert_eq!(answer(None, Some("*/*")), Answer::Xml);
        assert_eq!(answer(None, Some("application/json")), Answer::Json);
        assert_eq!(answer(XML, Some("application/x-www-form-urlencoded")), Answer::Form);
        assert_eq!(answer(FORM, Some("application/json;q=0.4, application/xmpp+xml;q=0.9")), Answer::Xml);
        // A tie between the two the request prefers goes to the one it is written in, else the first.
        assert_eq!(answer(FORM, Some("application/json, application/x-www-form-urlencoded")), Answer::Form);
        assert_eq!(answer(Some("text/plain"), Some("application/json, application/xmpp+xml")), Answer::Xml);
        for accept in ["", "*/*", "application/*", "application/json;q=0", ",;,", "application/json;q=x"] {
            assert_eq!(answer(JSON, Some(accept)), Answer::Json, "{accept}");
            assert_eq!(answer(None, Some(accept)), Answer::Xml, "{accept}");
        }
    }

    #[test]
    fn cbor_is_answered_when_asked_or_written_but_never_chosen_for_a_callback() {
        const CBOR: Option<&str> = Some("application/cbor");
        assert_eq!(answer(CBOR, None), Answer::Cbor);
        assert_eq!(answer(CBOR, Some("*/*")), Answer::Cbor);
        assert_eq!(answer(JSON, Some("Application/CBOR")), Answer::Cbor);
        assert_eq!(answer(CBOR, Some("application/json")), Answer::Json);
        assert_eq!(answer(None, Some("application/cbor;q=0.5, application/json;q=0.4")), Answer::Cbor);
        assert_eq!(answer(CBOR, Some("application/cbor, application/json")), Answer::Cbor);
        assert_eq!((Answer::Cbor.media_type(), Answer::Cbor.name()), ("application/cbor", "cbor"));
        // A callback is written in XML or JSON: CBOR in its Accept counts for neither.
        assert_eq!(callback(Some("application/cbor, application/json;q=0.5")), Answer::Json);
        assert_eq!(callback(Some("application/cbor")), Answer::Xml);
        assert_eq!(callback(Some("application/x-www-form-urlencoded, application/xmpp+xml;q=0.1")), Answer::Xml);
        assert_eq!(callback(Some("application/json")), Answer::Json);
    }
}
