//! A deliberately small XMPP client stream: plain TCP, SASL PLAIN, resource
//! bind, and a stanza reader built on quick-xml's pull parser.
//!
//! It understands just enough to log in and to read back `<message>` replies;
//! it is a load generator's client, not a general XMPP library.

use std::io::Read;
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// One top-level element read from the stream (a stanza or a stream-level
/// element such as `<stream:features/>` or `<success/>`).
#[derive(Debug, Default, Clone)]
pub struct Stanza {
    /// Qualified element name as sent, e.g. `message`, `stream:features`.
    pub name: String,
    pub ty: Option<String>,
    pub id: Option<String>,
    pub from: Option<String>,
    /// Text of a direct `<body>` child, if any.
    pub body: Option<String>,
    /// Names of direct children, in order.
    pub children: Vec<String>,
    /// For a stanza with an `<error/>` child: `type/condition`, e.g. `wait/remote-server-timeout`.
    pub error: Option<String>,
    /// All character data below the element, concatenated (used for
    /// `<mechanism>` lists during login).
    pub text: String,
}

impl Stanza {
    pub fn has_child(&self, name: &str) -> bool {
        self.children.iter().any(|c| c == name)
    }
}

pub struct StanzaReader {
    reader: Reader<BufReader<SharedStream>>,
    buf: Vec<u8>,
    depth: usize,
}

fn io_err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn attr(e: &BytesStart, key: &[u8]) -> Option<String> {
    e.attributes().flatten().find(|a| a.key.as_ref() == key).map(|a| String::from_utf8_lossy(&a.value).into_owned())
}

fn entity(name: &[u8]) -> Option<char> {
    match name {
        b"amp" => Some('&'),
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"quot" => Some('"'),
        b"apos" => Some('\''),
        _ => {
            let s = std::str::from_utf8(name).ok()?;
            let n = if let Some(h) = s.strip_prefix("#x") {
                u32::from_str_radix(h, 16).ok()?
            } else {
                s.strip_prefix('#')?.parse().ok()?
            };
            char::from_u32(n)
        }
    }
}

/// The first element inside `<error/>` other than `<text/>` is the defined condition.
fn note_condition(st: &mut Stanza, in_error: bool, error_type: &str, e: &BytesStart) {
    let name = e.local_name();
    if in_error && st.error.is_none() && name.as_ref() != b"text" {
        st.error = Some(format!("{error_type}/{}", String::from_utf8_lossy(name.as_ref())));
    }
}

/// One socket for both directions: the reader thread reads through it while another thread
/// writes to the same descriptor (no dup per session: 10,000 sessions stay within 10,000
/// descriptors).
struct SharedStream(Arc<TcpStream>);

impl Read for SharedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl StanzaReader {
    pub fn new(stream: impl Into<Arc<TcpStream>>) -> Self {
        let mut reader = Reader::from_reader(BufReader::with_capacity(64 * 1024, SharedStream(stream.into())));
        // A stream restart (after SASL) opens a second <stream:stream> without
        // closing the first; don't let the parser object to that.
        reader.config_mut().check_end_names = false;
        reader.config_mut().trim_text(false);
        StanzaReader { reader, buf: Vec::with_capacity(4096), depth: 0 }
    }

    /// Read the next depth-1 element. Stream headers are consumed silently.
    #[allow(clippy::should_implement_trait)] // fallible and never ends: not an Iterator
    pub fn next(&mut self) -> io::Result<Stanza> {
        let mut st = Stanza::default();
        let mut in_body = false;
        let mut in_error = false;
        let mut error_type = String::new();
        loop {
            self.buf.clear();
            let ev = self.reader.read_event_into(&mut self.buf).map_err(|e| io_err(format!("xml: {e}")))?;
            match ev {
                Event::Start(e) => {
                    if e.name().as_ref() == b"stream:stream" {
                        self.depth = 1;
                        continue;
                    }
                    self.depth += 1;
                    if self.depth == 2 {
                        st.name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                        st.ty = attr(&e, b"type");
                        st.id = attr(&e, b"id");
                        st.from = attr(&e, b"from");
                    } else if self.depth == 3 {
                        let n = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                        if n == "body" {
                            in_body = true;
                            st.body = Some(String::new());
                        }
                        if n == "error" {
                            in_error = true;
                            error_type = attr(&e, b"type").unwrap_or_default();
                        }
                        st.children.push(n);
                    } else if self.depth == 4 {
                        note_condition(&mut st, in_error, &error_type, &e);
                    }
                }
                Event::Empty(e) => {
                    if self.depth == 1 {
                        st.name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                        st.ty = attr(&e, b"type");
                        st.id = attr(&e, b"id");
                        st.from = attr(&e, b"from");
                        return Ok(st);
                    } else if self.depth == 2 {
                        let n = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                        if n == "error" {
                            st.error = Some(format!("{}/(none)", attr(&e, b"type").unwrap_or_default()));
                        }
                        st.children.push(n);
                    } else if self.depth == 3 {
                        note_condition(&mut st, in_error, &error_type, &e);
                    }
                }
                Event::Text(t) if self.depth >= 2 => {
                    let s = String::from_utf8_lossy(&t);
                    if in_body {
                        st.body.as_mut().unwrap().push_str(&s);
                    }
                    st.text.push_str(&s);
                }
                Event::CData(t) if self.depth >= 2 => {
                    let s = String::from_utf8_lossy(&t);
                    if in_body {
                        st.body.as_mut().unwrap().push_str(&s);
                    }
                    st.text.push_str(&s);
                }
                Event::GeneralRef(r) if self.depth >= 2 => {
                    if let Some(c) = entity(&r) {
                        if in_body {
                            st.body.as_mut().unwrap().push(c);
                        }
                        st.text.push(c);
                    }
                }
                Event::End(_) => {
                    if self.depth == 3 {
                        in_body = false;
                        in_error = false;
                    }
                    if self.depth == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream closed"));
                    }
                    self.depth -= 1;
                    if self.depth == 1 {
                        return Ok(st);
                    }
                    if self.depth == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream closed"));
                    }
                }
                Event::Eof => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")),
                _ => {}
            }
        }
    }
}

fn b64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// A logged-in client stream, split into its read half and write half.
pub struct Session {
    pub reader: StanzaReader,
    /// The same socket the reader reads; `&TcpStream` writes.
    pub writer: Arc<TcpStream>,
    pub full_jid: String,
}

fn open_stream(mut w: &TcpStream, domain: &str) -> io::Result<()> {
    write!(
        w,
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

fn expect_features(r: &mut StanzaReader) -> io::Result<Stanza> {
    let st = r.next()?;
    if st.name != "stream:features" {
        return Err(io_err(format!("expected stream:features, got <{}>", st.name)));
    }
    Ok(st)
}

/// Connect and log in: stream, SASL PLAIN, restart, bind `resource`.
pub fn login(
    addr: SocketAddr,
    domain: &str,
    user: &str,
    password: &str,
    resource: &str,
    timeout: Duration,
) -> io::Result<Session> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    let stream = Arc::new(stream);
    let mut w: &TcpStream = &stream;
    let mut r = StanzaReader::new(stream.clone());

    open_stream(w, domain)?;
    let f = expect_features(&mut r)?;
    if !f.text.contains("PLAIN") {
        return Err(io_err(format!(
            "server offers no SASL PLAIN (mechanisms text: {:?}); is c2s_require_encryption=false \
             and allow_unencrypted_plain_auth=true?",
            f.text
        )));
    }
    let cred = b64(format!("\0{user}\0{password}").as_bytes());
    write!(w, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{cred}</auth>")?;
    let res = r.next()?;
    if res.name != "success" {
        return Err(io_err(format!("SASL failed for {user}: <{}> {}", res.name, res.text)));
    }
    open_stream(w, domain)?;
    let f = expect_features(&mut r)?;
    if !f.has_child("bind") {
        return Err(io_err("no resource binding offered"));
    }
    write!(
        w,
        "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>{resource}</resource></bind></iq>"
    )?;
    let res = r.next()?;
    if res.name != "iq" || res.ty.as_deref() != Some("result") {
        return Err(io_err(format!("bind failed: <{} type={:?}>", res.name, res.ty)));
    }
    let full_jid = res.text.trim().to_string();
    // Reads from now on block until the benchmark has something to say.
    stream.set_read_timeout(None)?;
    Ok(Session { reader: r, writer: stream, full_jid })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    #[test]
    fn error_condition_is_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (r, _) = listener.accept().unwrap();
        w.write_all(
            b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>\
              <message type='error' id='1'><body>x</body><error type='wait'>\
              <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>why</text>\
              <remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>\
              <message type='chat'><body>y</body></message>",
        )
        .unwrap();
        let mut reader = super::StanzaReader::new(r);
        let st = reader.next().unwrap();
        assert_eq!(st.error.as_deref(), Some("wait/remote-server-timeout"));
        assert_eq!(st.body.as_deref(), Some("x"));
        assert_eq!(reader.next().unwrap().error, None);
    }

    #[test]
    fn b64_matches_rfc4648() {
        assert_eq!(super::b64(b""), "");
        assert_eq!(super::b64(b"f"), "Zg==");
        assert_eq!(super::b64(b"fo"), "Zm8=");
        assert_eq!(super::b64(b"foo"), "Zm9v");
        assert_eq!(super::b64(b"foobar"), "Zm9vYmFy");
    }
}
