//! HTTP/1.1 on one connection: a request written whole, an answer's head parsed with
//! `httparse`, its body read by its framing (`Content-Length`, chunked, or to the connection's
//! end). Bytes are held only while they are in hand: a connection waiting for its answer holds
//! no buffer at all, which is what lets ten thousand requests wait at a few KiB each (a general
//! client keeps about 25 KiB of buffers and queues per connection; see BENCHMARKS.md).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The largest answer head (status line and headers) accepted: stanzas and answers are small.
pub const MAX_HEAD_SIZE: usize = 16 * 1024;

/// How much is read from the socket at a time, at most, while an answer comes in.
const READ_SIZE: usize = 8 * 1024;

/// Headers of one answer, at most.
const MAX_HEADERS: usize = 64;

/// A request body this long or shorter goes out in one write with its head.
const ONE_WRITE: usize = 16 * 1024;

/// A connection, plain or TLS.
pub enum Stream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<TlsStream<TcpStream>>),
}

/// One connection and the bytes read from it but not consumed yet.
pub struct Conn {
    io: Stream,
    pending: BytesMut,
}

/// How an answer's body is delimited, and how far it has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (or all of it read).
    Done,
    /// This many bytes still to come.
    Length(u64),
    /// Chunked transfer coding, at this point of it.
    Chunked(Chunk),
    /// Until the server closes the connection.
    UntilClose,
}

/// Where a chunked body's reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// At the line end after a chunk's data.
    DataEnd,
    /// After the last chunk, at the trailer lines (this many bytes of them read).
    Trailers(usize),
}

/// An answer's status line and headers, and what they say about its body and its connection.
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The header fields.
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// The connection can carry another request once the body was read.
    pub keep_alive: bool,
}

/// What went wrong on a connection: said as the system or the peer said it.
pub type Broken = String;

impl Conn {
    /// A connection ready for its first request.
    pub fn new(io: Stream) -> Conn {
        Conn { io, pending: BytesMut::new() }
    }

    /// An idle connection is still usable when nothing arrived on it: neither data (nothing
    /// was asked) nor its end (the server closed it meanwhile). Checked without waiting.
    pub fn is_usable(&mut self) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        // A plain socket asks the reactor, which knows without a system call whether anything
        // came; only if something did is it read.
        if let Stream::Plain(tcp) = &self.io {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            if tcp.poll_read_ready(&mut cx).is_pending() {
                return true;
            }
        }
        let mut byte = [0u8; 1];
        // Not ready: nothing came, and the connection waits for a request as it should.
        self.io.read(&mut byte).now_or_never().is_none()
    }

    /// Writes `head` and `body` and flushes them.
    pub async fn write_request(&mut self, mut head: Vec<u8>, body: &Bytes) -> io::Result<()> {
        if body.len() <= ONE_WRITE {
            head.extend_from_slice(body);
            self.io.write_all(&head).await?;
        } else {
            self.io.write_all(&head).await?;
            self.io.write_all(body).await?;
        }
        self.io.flush().await
    }

    /// Reads an answer's head (after any `1xx` interim answers). Holds no buffer until the
    /// answer's first bytes can be read.
    pub async fn read_head(&mut self) -> Result<Head, Broken> {
        loop {
            if !self.pending.is_empty() {
                if let Some(head) = self.parse_head()? {
                    return Ok(head);
                }
                if self.pending.len() >= MAX_HEAD_SIZE {
                    return Err(format!("the answer's head is longer than {MAX_HEAD_SIZE} bytes"));
                }
            } else {
                self.io.readable().await.map_err(|e| e.to_string())?;
            }
            if self.fill().await.map_err(|e| e.to_string())? == 0 {
                return Err(if self.pending.is_empty() {
                    "the connection closed before an answer".to_owned()
                } else {
                    "the connection closed in the middle of the answer's head".to_owned()
                });
            }
        }
    }

    /// The head at the start of what was read, if it is all there; `1xx` interim answers are
    /// skipped.
    fn parse_head(&mut self) -> Result<Option<Head>, Broken> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut answer = httparse::Response::new(&mut fields);
        let length = match answer.parse(&self.pending) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("invalid answer head: {e}")),
        };
        let status = answer.code.unwrap_or(0);
        let mut headers = HeaderMap::with_capacity(answer.headers.len());
        for field in answer.headers.iter() {
            let name =
                HeaderName::from_bytes(field.name.as_bytes()).map_err(|e| format!("invalid answer head: {e}"))?;
            let value = HeaderValue::from_bytes(field.value).map_err(|e| format!("invalid answer head: {e}"))?;
            headers.append(name, value);
        }
        let http11 = answer.version == Some(1);
        self.pending.advance(length);
        if (100..200).contains(&status) {
            return self.parse_head();
        }
        let framing = framing(status, &headers)?;
        let connection = |token: &str| {
            headers
                .get_all(http::header::CONNECTION)
                .iter()
                .any(|v| v.to_str().unwrap_or("").split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        let keep_alive =
            framing != Framing::UntilClose && if http11 { !connection("close") } else { connection("keep-alive") };
        Ok(Some(Head { status, headers, framing, keep_alive }))
    }

    /// The body's next piece, `None` at its end (then `framing` is [`Framing::Done`]).
    pub async fn read_piece(&mut self, framing: &mut Framing) -> Result<Option<Bytes>, Broken> {
        loop {
            match *framing {
                Framing::Done | Framing::Length(0) => {
                    *framing = Framing::Done;
                    return Ok(None);
                }
                Framing::Length(left) => {
                    let piece = self.take_up_to(left, "the connection closed before the body's end").await?;
                    *framing = Framing::Length(left - piece.len() as u64);
                    return Ok(Some(piece));
                }
                Framing::UntilClose => {
                    if self.pending.is_empty() && self.fill().await.map_err(|e| e.to_string())? == 0 {
                        *framing = Framing::Done;
                        return Ok(None);
                    }
                    return Ok(Some(self.pending.split().freeze()));
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    let piece = self.take_up_to(left, "the connection closed inside a chunk").await?;
                    let left = left - piece.len() as u64;
                    *framing = Framing::Chunked(if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) });
                    return Ok(Some(piece));
                }
                Framing::Chunked(chunk) => {
                    if let Some(next) = self.step_chunk(chunk)? {
                        *framing = next;
                    } else {
                        self.fill_or(|| "the connection closed inside the chunked body".to_owned()).await?;
                    }
                }
            }
        }
    }

    /// Moves a chunked body on from a size line, a chunk's end or a trailer line, if what it
    /// needs was read; `None` when more must be read first.
    fn step_chunk(&mut self, chunk: Chunk) -> Result<Option<Framing>, Broken> {
        match chunk {
            Chunk::Size => match httparse::parse_chunk_size(&self.pending) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    self.pending.advance(used);
                    Ok(Some(Framing::Chunked(Chunk::Trailers(0))))
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    self.pending.advance(used);
                    Ok(Some(Framing::Chunked(Chunk::Data(size))))
                }
                Ok(httparse::Status::Partial) if self.pending.len() < MAX_HEAD_SIZE => Ok(None),
                _ => Err("invalid chunk size line".to_owned()),
            },
            Chunk::DataEnd => match self.pending.get(..2) {
                Some(b"\r\n") => {
                    self.pending.advance(2);
                    Ok(Some(Framing::Chunked(Chunk::Size)))
                }
                Some(_) => Err("a chunk's data did not end with CRLF".to_owned()),
                None if self.pending.first().is_some_and(|b| *b != b'\r') => {
                    Err("a chunk's data did not end with CRLF".to_owned())
                }
                None => Ok(None),
            },
            Chunk::Trailers(read) => match self.pending.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.pending.advance(2);
                    Ok(Some(Framing::Done))
                }
                // Trailers carry nothing the answer needs: skipped, within the head's bound.
                Some(line) if read + line < MAX_HEAD_SIZE => {
                    self.pending.advance(line + 2);
                    Ok(Some(Framing::Chunked(Chunk::Trailers(read + line + 2))))
                }
                None if read + self.pending.len() < MAX_HEAD_SIZE => Ok(None),
                _ => Err(format!("the trailers are longer than {MAX_HEAD_SIZE} bytes")),
            },
            Chunk::Data(_) => unreachable!("data is read by read_piece"),
        }
    }

    /// Up to `left` bytes of what was read, reading first if nothing is.
    async fn take_up_to(&mut self, left: u64, closed: &str) -> Result<Bytes, Broken> {
        if self.pending.is_empty() {
            self.fill_or(|| closed.to_owned()).await?;
        }
        let take = usize::try_from(left).unwrap_or(usize::MAX).min(self.pending.len());
        Ok(self.pending.split_to(take).freeze())
    }

    async fn fill_or(&mut self, closed: impl FnOnce() -> String) -> Result<(), Broken> {
        match self.fill().await {
            Ok(0) => Err(closed()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Reads what the socket has, up to [`READ_SIZE`]; 0 at the connection's end.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.pending.capacity() - self.pending.len() < READ_SIZE / 2 {
            self.pending.reserve(READ_SIZE);
        }
        self.io.read_buf(&mut self.pending).await
    }

    /// Ready to carry the next request: nothing left over, and no buffer kept while idle.
    pub fn can_be_reused(&mut self) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        self.pending = BytesMut::new();
        true
    }
}

/// How the body of an answer with `status` and `headers` is delimited (RFC 9112, section 6.3).
fn framing(status: u16, headers: &HeaderMap) -> Result<Framing, Broken> {
    if status == 204 || status == 304 {
        return Ok(Framing::Done);
    }
    let codings: Vec<&str> = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::UntilClose
        });
    }
    let mut lengths = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let Some(first) = lengths.next() else { return Ok(Framing::UntilClose) };
    let length = |v: &HeaderValue| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok());
    let n = length(first).ok_or("invalid Content-Length")?;
    if lengths.any(|v| length(v) != Some(n)) {
        return Err("conflicting Content-Length headers".to_owned());
    }
    Ok(if n == 0 { Framing::Done } else { Framing::Length(n) })
}

impl Stream {
    /// Waits until bytes can be read, without a buffer. A TLS stream may hold decrypted bytes
    /// the socket no longer shows, so it is read at once.
    async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.readable().await,
            Stream::Tls(_) => Ok(()),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
