//! A push written as `multipart/form-data` (`curl -F file=@chart.png -F to=… -F body=…`): the
//! `file` part with its file name and content type, the other fields as form fields, read into
//! the same object a JSON push is.
//!
//! Parsed by `multer`, the maintained multipart parser of the Rust HTTP stack (axum's). It is
//! written for async streams; here the whole body is already in memory (Prosody read it), so
//! the body is handed over as a stream of one chunk and every step completes on its first poll:
//! `now_or_never` runs it to the end on the calling thread, with no executor and no waiting.
//! Its work is linear in the body (it looks for the boundary with `memchr`).

use bytes::Bytes;
use futures_util::FutureExt as _;
use serde_json::{Map, Value};

use super::File;

/// The most parts a form may have: a push has a handful of fields.
pub const MAX_PARTS: usize = 32;

/// A form's fields, as the strings of a JSON push object, and its file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Form {
    /// Every part but the file, by name: each a JSON string.
    pub fields: Map<String, Value>,
    /// The `file` part.
    pub file: Option<File>,
}

/// Whether a `Content-Type` is `multipart/form-data` (parameters aside).
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|content_type| content_type.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// Reads a `multipart/form-data` body of at most `max_size` bytes. A part without a name, a
/// name given twice, a field that is not UTF-8 text, a `file` part without a file name or
/// content type, more than [`MAX_PARTS`] parts, or a body the parser cannot read is refused
/// with a message naming it.
pub fn read_form(body: &[u8], content_type: &str, max_size: usize) -> Result<Form, String> {
    let boundary =
        multer::parse_boundary(content_type).map_err(|e| format!("the multipart Content-Type has no boundary: {e}"))?;
    let chunk = Bytes::copy_from_slice(body);
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(chunk) });
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(max_size as u64).per_field(max_size as u64));
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut form = Form::default();
    let mut parts = 0;
    // Every future here is ready on its first poll: the stream's one chunk is there already.
    let stalled = || "the form could not be read in one pass".to_string();
    while let Some(field) = multipart.next_field().now_or_never().ok_or_else(stalled)?.map_err(unreadable)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(format!("the form has more than {MAX_PARTS} parts"));
        }
        let name = field.name().map(str::to_owned).ok_or("a part of the form has no name")?;
        if form.fields.contains_key(&name) || (name == "file" && form.file.is_some()) {
            return Err(format!("'{name}' is given twice in the form"));
        }
        if name == "file" {
            let file_name = field.file_name().map(str::to_owned);
            // As sent, not as `mime` reads it: the file's checks say what is wrong with it.
            let part_type = field.headers().get("content-type").map(|value| String::from_utf8_lossy(value.as_bytes()));
            let part_type = part_type.map(|value| value.into_owned());
            let data = field.bytes().now_or_never().ok_or_else(stalled)?.map_err(unreadable)?;
            let file_name =
                file_name.ok_or("'file' is not a file: send it as one, with its name (curl -F file=@chart.png)")?;
            let part_type =
                part_type.ok_or("'file' has no Content-Type: name it (curl -F 'file=@chart.png;type=image/png')")?;
            form.file = Some(File::new(Vec::from(data), &file_name, &part_type, "file.")?);
        } else {
            let data = field.bytes().now_or_never().ok_or_else(stalled)?.map_err(unreadable)?;
            let text = String::from_utf8(Vec::from(data)).map_err(|_| format!("'{name}' is not UTF-8 text"))?;
            form.fields.insert(name, Value::String(text));
        }
    }
    Ok(form)
}

fn unreadable(error: multer::Error) -> String {
    format!("the form cannot be read: {error}")
}
