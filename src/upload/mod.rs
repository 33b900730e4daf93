//! Files a bot sends without hosting them: a reply or push carrying
//! `"file": {"data": <base64>, "name", "type"}` (or a push's `multipart/form-data` `file`
//! part) is uploaded to the server's HTTP File Upload service (XEP-0363) as the bot, and the
//! message clients show inline is sent: its body the file's GET URL, the same URL in
//! `jabber:x:oob`, and the caption (`body`) as a second message, as `oob_url` does.
//!
//! The steps, and where they run:
//!
//! 1. Reading the field ([`File::from_json`], [`multipart::read_form`]): on the worker thread
//!    for a reply, in the push handler for a push. The bytes are decoded once and held once;
//!    the message is built as usual, with a placeholder ([`attach`]) naming the bytes kept in
//!    [`pending`] until the shim takes them.
//! 2. The slot request ([`slot::request`]): the shim sends it with `module:send_iq` as the
//!    bot's JID, on Prosody's main thread, without waiting, and hands the answer back
//!    ([`lua::Uploads`]).
//! 3. The PUT ([`put::put`]): a task on the uploads' own thread ([`put::Putter`]), never on
//!    Prosody's; one retry, within the stanza's deadline. Its end wakes Prosody through the
//!    uploads' own wake-up descriptor.
//! 4. The message, its caption, then whatever else was said to the same conversation while the
//!    upload ran ([`lua::Uploads`] holds it), so the conversation's order holds.
//!
//! The module never fetches a URL a bot names and never writes the bytes to disk.

pub mod lua;
pub mod multipart;
pub mod pending;
pub mod put;
pub mod slot;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::jsonmap::json_type;
use crate::stanza::Element;

pub use crate::config::DEFAULT_MAX_FILE_SIZE;

/// The longest file name taken: what a file system takes for one name (255 bytes on Linux).
pub const MAX_NAME_BYTES: usize = 255;

/// The longest media type taken (RFC 6838 allows 127 characters for each of its two halves).
pub const MAX_TYPE_BYTES: usize = 255;

/// A file to upload: its bytes, held once, its name and its media type.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    /// The bytes.
    pub data: Vec<u8>,
    /// The file's name, as the service and the recipients see it.
    pub name: String,
    /// Its media type (`image/png`), which the GET URL serves it as.
    pub content_type: String,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bytes: a log line with a megabyte in it helps nobody.
        write!(f, "File({:?}, {:?}, {} bytes)", self.name, self.content_type, self.data.len())
    }
}

impl File {
    /// The file a JSON `file` object describes: `data` (standard base64, padded or not; white
    /// space between its characters, as MIME wraps lines, is allowed), `name` and `type`. A
    /// field missing, of the wrong type or not valid is refused with a message naming it
    /// (`'file.data' is not valid base64: …`).
    pub fn from_json(value: &Value) -> Result<File, String> {
        let Value::Object(fields) = value else {
            return Err(format!("'file' must be an object with 'data', 'name' and 'type', got {}", json_type(value)));
        };
        if let Some(key) = fields.keys().find(|key| !["data", "name", "type"].contains(&key.as_str())) {
            return Err(format!("'file.{key}' is not a field of a file: it has 'data', 'name' and 'type'"));
        }
        let string = |key: &str, what: &str| match fields.get(key) {
            None | Some(Value::Null) => Err(format!("'file' needs '{key}': {what}")),
            Some(Value::String(text)) => Ok(text.as_str()),
            Some(other) => Err(format!("'file.{key}' must be a string, got {}", json_type(other))),
        };
        let data = string("data", "the file's bytes in base64")?;
        let name = string("name", "the file's name, such as \"chart.png\"")?;
        let content_type = string("type", "its media type, such as \"image/png\"")?;
        let data = decode_base64(data).map_err(|why| format!("'file.data' is not valid base64: {why}"))?;
        File::new(data, name, content_type, "file.")
    }

    /// A file from its parts, checked: `prefix` is how errors name the fields (`file.` for a
    /// JSON object, empty for a form part).
    pub fn new(data: Vec<u8>, name: &str, content_type: &str, prefix: &str) -> Result<File, String> {
        check_name(name).map_err(|why| format!("'{prefix}name' {why}"))?;
        let content_type = content_type.trim();
        check_type(content_type).map_err(|why| format!("'{prefix}type' {why}"))?;
        Ok(File { data, name: name.to_owned(), content_type: content_type.to_owned() })
    }

    /// The size, in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// Decodes standard base64 (RFC 4648 §4), with or without padding, skipping the ASCII white
/// space MIME puts between lines. One pass to strip white space (only when there is some),
/// one to decode: linear in the text.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = if text.bytes().any(|b| b.is_ascii_whitespace()) {
        let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        engine.decode(compact)
    } else {
        engine.decode(text)
    };
    decoded.map_err(|e| e.to_string())
}

/// A name the upload service takes and a recipient can save: not empty, no path separator
/// (`/`, which Prosody's service refuses, or `\`), not `.` or `..`, no character XML cannot
/// carry, at most [`MAX_NAME_BYTES`].
fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("is empty: give the file's name, such as \"chart.png\"".into());
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(format!("is {name:?}: a file name, without a directory"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("is {} bytes long, more than the {MAX_NAME_BYTES} a file name may be", name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    crate::stanza::check_text(name, "it").map_err(|why| why.replacen("it ", "", 1))
}

/// A media type: `type/subtype`, each an RFC 6838 name, with parameters allowed after a `;`
/// (`text/plain; charset=utf-8`), printable ASCII, at most [`MAX_TYPE_BYTES`].
fn check_type(content_type: &str) -> Result<(), String> {
    let bad = || Err(format!("is {content_type:?}: a media type such as \"image/png\" or \"application/pdf\""));
    if content_type.len() > MAX_TYPE_BYTES || !content_type.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return bad();
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else { return bad() };
    let name_ok = |part: &str| {
        part.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    if name_ok(kind) && name_ok(subtype) {
        Ok(())
    } else {
        bad()
    }
}

/// The limit a file is held to: the smaller of the module's option and the upload service's
/// advertised `max-file-size`, and which of the two it is, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The largest size taken, in bytes.
    pub bytes: u64,
    /// What sets it: the option's name, or the service's advertised size.
    pub set_by: String,
}

impl Limit {
    /// The limit from the module's option (`option_name` = `option_value`) and the service's
    /// advertised `max-file-size`, if it advertises one.
    pub fn of(option_value: u64, option_name: &str, service: Option<(u64, &str)>) -> Limit {
        match service {
            Some((bytes, service)) if bytes < option_value => {
                Limit { bytes, set_by: format!("the max-file-size {service} advertises") }
            }
            _ => Limit { bytes: option_value, set_by: option_name.to_owned() },
        }
    }

    /// Refuses a file larger than the limit, saying its size and the limit.
    pub fn check(&self, size: u64) -> Result<(), String> {
        if size > self.bytes {
            return Err(format!(
                "the file is {size} bytes, more than the {} bytes allowed ({})",
                self.bytes, self.set_by
            ));
        }
        Ok(())
    }
}

/// Where a pending file's placeholder lives in a message: a child no client ever sees (the
/// shim replaces it before the message goes out).
pub const PLACEHOLDER_NS: &str = "urn:xmpp:component-http:pending-upload";

/// Makes `message`, a message built from `fields` (a reply or push object), carry the file of
/// its `file` field, if it has one: the file is read ([`File::from_json`]) and kept in
/// [`pending`], the message gets a placeholder naming it, and its `body` becomes the caption
/// kept with it (sent after the file, as `oob_url` does). A file cannot be sent with `oob`,
/// `oob_url` or `reactions` (the message would carry two files, or a reaction message none), nor
/// with `reply.quote`.
pub fn attach(message: &mut Element, fields: &Map<String, Value>) -> Result<(), String> {
    let Some(value) = fields.get("file").filter(|value| !value.is_null()) else { return Ok(()) };
    for other in ["oob", "oob_url", "reactions"] {
        if fields.get(other).is_some_and(|value| !value.is_null()) {
            return Err(format!("'file' cannot be given with '{other}': a message carries one file"));
        }
    }
    // A quote is written into the body, which a file's message does not have (its body is the
    // URL, and the body given is the caption).
    if fields.get("reply").and_then(|reply| reply.get("quote")).is_some_and(|quote| !quote.is_null()) {
        return Err("'file' cannot be given with 'reply.quote': the file's body is its URL".into());
    }
    let file = File::from_json(value)?;
    attach_file(message, file)
}

/// [`attach`] for a file already read (a form's `file` part).
pub fn attach_file(message: &mut Element, file: File) -> Result<(), String> {
    if message.name != "message" {
        return Err(format!("'file' can only be sent in a message, not a {}", message.name));
    }
    let caption = take_body(message);
    let id = pending::put(file, caption);
    message.push_element(Element::new("upload").with_attr("xmlns", PLACEHOLDER_NS).with_attr("id", &id.to_string()));
    Ok(())
}

/// Removes the message's `<body/>`, returning its text if it has some.
fn take_body(message: &mut Element) -> Option<String> {
    let at = message.children.iter().position(
        |node| matches!(node, crate::stanza::Node::Element(e) if e.name == "body" && e.attr("xmlns").is_none()),
    )?;
    let crate::stanza::Node::Element(body) = message.children.remove(at) else { return None };
    let text = crate::jsonmap::text(&body);
    (!text.is_empty()).then_some(text)
}

/// A message as `POST /rest/echo` shows it: its file's placeholder gone, the bytes it held let
/// go (an echo sends nothing, so it uploads nothing), and its caption its body again.
pub fn without_file(mut message: Element) -> Element {
    let caption = placeholder(&message).and_then(pending::take).and_then(|waiting| waiting.caption);
    message
        .children
        .retain(|node| !matches!(node, crate::stanza::Node::Element(e) if e.attr("xmlns") == Some(PLACEHOLDER_NS)));
    if let Some(caption) = caption {
        message.children.insert(0, crate::stanza::Node::Element(Element::new("body").with_text(&caption)));
    }
    message
}

/// The id of the file a message's placeholder names, if it has one.
pub fn placeholder(message: &Element) -> Option<u64> {
    message
        .children
        .iter()
        .find_map(|node| match node {
            crate::stanza::Node::Element(e) if e.name == "upload" && e.attr("xmlns") == Some(PLACEHOLDER_NS) => {
                e.attr("id")
            }
            _ => None,
        })
        .and_then(|id| id.parse().ok())
}

#[cfg(test)]
mod tests;
