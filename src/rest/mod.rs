//! mod_rest's requests in every form the community module reads, made into the fields of one
//! stanza (or left to [`crate::inbound`] when the body is a stanza as XML or JSON on its own):
//!
//! - `POST /rest` with `application/xmpp+xml` or `application/json` (read by `inbound`), with
//!   `application/cbor` (the JSON's map in CBOR, [`cbor`]), with
//!   `application/x-www-form-urlencoded` (the JSON's top-level text fields, [`form`]), or with
//!   `text/plain` (a chat message, [`text`]);
//! - `POST /rest/{kind}/{type}/{to}` with any of those bodies but XML, or none: the path's kind,
//!   type and `to` win over the body's ([`path`]); `POST /rest/iq/{query}/{to}` makes the body
//!   the iq's `query` payload;
//! - `GET /rest/{query}/{to}?…`: an iq `query` (`ping`, `version`, `disco`, `items`,
//!   `archive`, …) whose payload is the URL's query ([`path`], [`form`]).
//!
//! An empty `{to}` leaves `to` out: the stanza goes to the account itself. [`negotiate`] picks
//! the format of the answer; `crate::url_template` fills the callback URL's placeholders. Nothing here
//! routes anything; every refusal names what is wrong.

pub mod cbor;
pub mod form;
pub mod negotiate;
pub mod path;
pub mod text;

use serde_json::{Map, Value};

use crate::answer::{is_json, is_xmpp_xml};
use crate::inbound::Refusal;
use path::Path;

/// The media types a request body may have.
const ACCEPTED: &str =
    "application/xmpp+xml, application/json, application/cbor, application/x-www-form-urlencoded or text/plain";

/// What a request asks to send.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// The body is the stanza, as XML or JSON: read it as a push ([`crate::inbound::stanza_from_push`]).
    Body,
    /// The stanza's fields, in the JSON mapping's names.
    Fields(Map<String, Value>),
}

/// Reads a request to `/rest/<path>` (`path` empty for `/rest` itself; `get` for a GET, whose
/// URL `query` is its payload).
pub fn read(
    get: bool,
    path: &str,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Read, Refusal> {
    let bad = |why: String| Refusal::new(400, why);
    if get {
        let path = path::parse(path, true).map_err(|why| Refusal::new(404, why))?;
        let fields = match query.filter(|q| !q.is_empty()).map(form::decode).transpose().map_err(bad)? {
            None => None,
            Some(form::Form::Fields(fields)) => Some(fields),
            Some(form::Form::Text(_)) => {
                return Err(bad("the URL's query must be key=value pairs (a form), the query's fields".into()))
            }
        };
        return Ok(Read::Fields(path.apply(fields)));
    }
    let media = content_type.map(negotiate::media_type).unwrap_or("");
    let text = || std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8".into()));
    if path.is_empty() {
        return if is_xmpp_xml(content_type) || is_json(content_type) {
            Ok(Read::Body)
        } else if cbor::is_cbor(content_type) {
            Ok(Read::Fields(cbor::decode(body).map_err(bad)?))
        } else if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Ok(Read::Fields(match form::decode(text()?).map_err(bad)? {
                form::Form::Fields(fields) => fields,
                form::Form::Text(message) => text::fields(&message, None).map_err(bad)?,
            }))
        } else if media.eq_ignore_ascii_case("text/plain") {
            Ok(Read::Fields(text::fields(text()?, None).map_err(bad)?))
        } else {
            Err(Refusal::new(415, format!("Content-Type must be {ACCEPTED}")))
        };
    }
    let path: Path = path::parse(path, false).map_err(|why| Refusal::new(404, why))?;
    let fields = if is_xmpp_xml(content_type) {
        return Err(bad(
            "path parameters apply to a JSON, form or text body: an XML stanza says its own kind, type and to \
             (POST it to /rest)"
                .into(),
        ));
    } else if is_json(content_type) {
        match serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON: {e}")))? {
            Value::Object(fields) => Some(fields),
            _ => return Err(bad("expected a JSON object".into())),
        }
    } else if cbor::is_cbor(content_type) {
        Some(cbor::decode(body).map_err(bad)?)
    } else if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        match form::decode(text()?).map_err(bad)? {
            form::Form::Fields(fields) => Some(fields),
            form::Form::Text(_) => {
                return Err(bad("a form body with path parameters must be key=value pairs".into()));
            }
        }
    } else if media.eq_ignore_ascii_case("text/plain") {
        let fields = text::fields(text()?, Some(path.kind)).map_err(bad)?;
        Some(fields)
    } else if content_type.is_none() && body.is_empty() {
        None
    } else {
        return Err(Refusal::new(415, format!("Content-Type must be {ACCEPTED}, or no body at all")));
    };
    Ok(Read::Fields(path.apply(fields)))
}

#[cfg(test)]
mod tests;
