//! A fast echo webhook for the benchmark: HTTP/1.1 with keep-alive on one
//! epoll thread (mio). For each POST it answers, as in mod_component_http's
//! README example:
//!
//!   200, Content-Type: application/json, {"body":"Did you say <body>?"}
//!
//! A request without a JSON "body" string gets 204 (no reply stanza).
//!
//! Usage: webhook [--port P] [--delay-ms D] [--stream [--first S] [--rate R] [--duration S]]
//!   --port P      default 0 = any free port, 127.0.0.1 only
//!   --delay-ms D  hold every answer D ms (a slow bot); any number of requests
//!                 are held at once, on the same one thread (a timer queue)
//!   --stream      answer with a stream like a language model's (stream.rs):
//!                 the first delta after --first s (0.5), then --rate a second
//!                 (20) for --duration s (20)
//!
//! It raises its descriptor limit to the hard limit, and the listen backlog
//! to what the kernel allows, so that thousands of connections can arrive at
//! once. First stdout line: `LISTENING 127.0.0.1:<port>`. Then, for every line
//! `stats` read on stdin it prints one JSON line with counters:
//! {"accepted":N,"active":N,"requests":N,"replies":N,"no_body":N,"bad":N,
//!  "closed_by_peer":N,"closed_by_us":N,"in_flight":N,"max_in_flight":N}
//! (in flight: requests read whose answer is still held by --delay-ms), with
//! --stream also the streams' (see stream.rs); for every line `records`, with
//! --stream, one JSON array of what each stream did. The main thread answers
//! both, woken by the thread reading stdin, so the figures are consistent.
//! It exits when stdin closes, so it never outlives the orchestrator.

mod stream;

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use stream::{Pace, Streaming, Streams};

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    requests: AtomicU64,
    replies: AtomicU64,
    no_body: AtomicU64,
    bad: AtomicU64,
    closed_by_peer: AtomicU64,
    closed_by_us: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

impl Counters {
    fn json(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{{\"accepted\":{},\"active\":{},\"requests\":{},\"replies\":{},\"no_body\":{},\"bad\":{},\"closed_by_peer\":{},\"closed_by_us\":{},\"in_flight\":{},\"max_in_flight\":{}}}",
            g(&self.accepted),
            g(&self.active),
            g(&self.requests),
            g(&self.replies),
            g(&self.no_body),
            g(&self.bad),
            g(&self.closed_by_peer),
            g(&self.closed_by_us),
            g(&self.in_flight),
            g(&self.max_in_flight)
        )
    }
}

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    close_after_write: bool,
    /// A request asked to close; with --delay-ms its answer may still be held.
    no_more_requests: bool,
    want_write: bool,
    /// The stream answering this connection's request (--stream); no other request is read
    /// meanwhile (the module does not pipeline).
    streaming: Option<Streaming>,
}

/// An answer held by --delay-ms until `due`. The delay is the same for all, so the queue is in
/// due order and answers on one connection stay in request order.
struct Held {
    due: Instant,
    token: Token,
    answer: Vec<u8>,
    close: bool,
}

enum Parsed {
    /// Need more bytes.
    Partial,
    /// A complete request occupying `consumed` bytes.
    Request {
        consumed: usize,
        body: Vec<u8>,
        keep_alive: bool,
        is_post: bool,
        retry: Option<String>,
    },
    Bad,
}

/// Decode a chunked body from `buf`; Some((body, bytes consumed)) if complete.
fn dechunk(buf: &[u8]) -> Option<Result<(Vec<u8>, usize), ()>> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let line_end = buf[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
        let size_str = std::str::from_utf8(&buf[pos..line_end]).ok()?;
        let size_str = size_str.split(';').next().unwrap_or("").trim();
        let size = match usize::from_str_radix(size_str, 16) {
            Ok(s) => s,
            Err(_) => return Some(Err(())),
        };
        pos = line_end + 2;
        if size == 0 {
            // skip trailers up to the empty line
            loop {
                let e = buf[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
                let empty = e == pos;
                pos = e + 2;
                if empty {
                    return Some(Ok((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Bad,
    };
    let version = req.version.unwrap_or(1);
    let mut keep_alive = version >= 1;
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    let mut retry = None;
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim().to_ascii_lowercase();
        if h.name.eq_ignore_ascii_case("content-length") {
            match v.parse() {
                Ok(n) => content_length = Some(n),
                Err(_) => return Parsed::Bad,
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.contains("chunked");
        } else if h.name.eq_ignore_ascii_case("x-retry-count") {
            retry = Some(v);
        } else if h.name.eq_ignore_ascii_case("connection") {
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    let is_post = req.method == Some("POST");
    let rest = &buf[head_len..];
    if chunked {
        match dechunk(rest) {
            None => Parsed::Partial,
            Some(Err(())) => Parsed::Bad,
            Some(Ok((body, used))) => Parsed::Request { consumed: head_len + used, body, keep_alive, is_post, retry },
        }
    } else {
        let n = content_length.unwrap_or(0);
        if rest.len() < n {
            return Parsed::Partial;
        }
        Parsed::Request { consumed: head_len + n, body: rest[..n].to_vec(), keep_alive, is_post, retry }
    }
}

/// The JSON "body" string of a request, if any: the user's message.
fn body_text(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("body").and_then(|b| b.as_str()).map(|s| s.to_owned()))
}

fn respond(c: &Counters, body: &[u8], keep_alive: bool, is_post: bool, out: &mut Vec<u8>) {
    let conn_hdr = if keep_alive { "" } else { "Connection: close\r\n" };
    if !is_post {
        let _ = write!(out, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n{conn_hdr}\r\n");
        return;
    }
    match body_text(body) {
        Some(t) => {
            c.replies.fetch_add(1, Ordering::Relaxed);
            let reply = serde_json::json!({ "body": format!("Did you say {t}?") }).to_string();
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{conn_hdr}\r\n{reply}",
                reply.len()
            );
        }
        None => {
            c.no_body.fetch_add(1, Ordering::Relaxed);
            let _ = write!(out, "HTTP/1.1 204 No Content\r\n{conn_hdr}\r\n");
        }
    }
}

/// How requests are answered: at once, after --delay-ms (`held`), or with a stream.
struct Answers {
    delay: Duration,
    held: VecDeque<Held>,
    streams: Option<Streams>,
}

/// Returns false when the connection should be dropped now.
fn on_readable(conn: &mut Conn, c: &Counters, token: Token, answers: &mut Answers) -> bool {
    let mut tmp = [0u8; 16384];
    let mut eof = false;
    loop {
        match conn.stream.read(&mut tmp) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => conn.rbuf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                eof = true;
                break;
            }
        }
    }
    serve(conn, c, token, answers);
    if eof {
        // Peer is gone (or half-closed); try to flush what we have, then drop.
        let _ = flush(conn);
        c.closed_by_peer.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    true
}

/// Answers the requests read so far, up to one whose answer is still to come (a stream).
fn serve(conn: &mut Conn, c: &Counters, token: Token, answers: &mut Answers) {
    while !conn.close_after_write && !conn.no_more_requests && conn.streaming.is_none() {
        match parse(&conn.rbuf) {
            Parsed::Partial => break,
            Parsed::Bad => {
                c.bad.fetch_add(1, Ordering::Relaxed);
                conn.wbuf
                    .extend_from_slice(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                conn.close_after_write = true;
                conn.rbuf.clear();
            }
            Parsed::Request { consumed, body, keep_alive, is_post, retry } => {
                c.requests.fetch_add(1, Ordering::Relaxed);
                conn.rbuf.drain(..consumed);
                let question = if is_post { body_text(&body) } else { None };
                if let (Some(streams), Some(question)) = (answers.streams.as_mut(), question) {
                    conn.streaming = Some(streams.begin(token, question, retry, Instant::now(), &mut conn.wbuf));
                    // Closed after the last chunk if the request asked so (see `end_stream`).
                    conn.no_more_requests = !keep_alive;
                } else if answers.delay.is_zero() {
                    respond(c, &body, keep_alive, is_post, &mut conn.wbuf);
                    conn.close_after_write = !keep_alive;
                } else {
                    let mut answer = Vec::with_capacity(256);
                    respond(c, &body, keep_alive, is_post, &mut answer);
                    let due = Instant::now() + answers.delay;
                    answers.held.push_back(Held { due, token, answer, close: !keep_alive });
                    let n = c.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
                    c.max_in_flight.fetch_max(n, Ordering::Relaxed);
                    conn.no_more_requests = !keep_alive;
                }
            }
        }
    }
}

/// Write pending output. Ok(true) when everything is written.
fn flush(conn: &mut Conn) -> io::Result<bool> {
    while conn.wpos < conn.wbuf.len() {
        match conn.stream.write(&conn.wbuf[conn.wpos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.wpos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    conn.wbuf.clear();
    conn.wpos = 0;
    Ok(true)
}

/// The streams' deltas due by now: each written to its connection; a stream that ended lets
/// its connection read the next request (or close, if its request asked so).
fn step_streams(poll: &Poll, conns: &mut HashMap<Token, Conn>, c: &Counters, answers: &mut Answers) -> io::Result<()> {
    let Some(streams) = answers.streams.as_mut() else { return Ok(()) };
    let now = Instant::now();
    let mut due = Vec::new();
    while let Some(tok) = streams.pop_due(now) {
        due.push(tok);
    }
    for tok in due {
        let Some(conn) = conns.get_mut(&tok) else { continue };
        let Some(mut s) = conn.streaming.take() else { continue };
        let streams = answers.streams.as_mut().expect("stream mode");
        if streams.step(&mut s, tok, &mut conn.wbuf) {
            conn.close_after_write = conn.no_more_requests;
            serve(conn, c, tok, answers);
        } else {
            conn.streaming = Some(s);
        }
        if !after_io(poll, conn, tok, c)? {
            drop_conn(poll, conns, tok, c, answers);
        }
    }
    Ok(())
}

/// A line read on stdin, answered on the main thread.
fn command(line: &str, c: &Counters, answers: &Answers) {
    let text = match (line, &answers.streams) {
        ("stats", None) => c.json(),
        ("stats", Some(streams)) => {
            let echo = c.json();
            format!("{},{}}}", &echo[..echo.len() - 1], streams.stats_json())
        }
        ("records", Some(streams)) => streams.records_json(),
        ("records", None) => "[]".to_owned(),
        _ => return,
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn main() -> io::Result<()> {
    let mut port: u16 = 0;
    let mut delay = Duration::ZERO;
    let mut stream = false;
    let mut pace = Pace { first: Duration::from_millis(500), rate: 20.0, duration: 20.0 };
    let mut args = std::env::args().skip(1);
    let seconds = |args: &mut dyn Iterator<Item = String>, name: &str| -> f64 {
        args.next().and_then(|p| p.parse().ok()).filter(|x: &f64| x.is_finite() && *x >= 0.0).unwrap_or_else(|| {
            panic!("{name} takes a number of seconds (or a rate) at least 0");
        })
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).expect("--port N"),
            "--delay-ms" => {
                delay = Duration::from_millis(args.next().and_then(|p| p.parse().ok()).expect("--delay-ms N"))
            }
            "--stream" => stream = true,
            "--first" => pace.first = Duration::from_secs_f64(seconds(&mut args, "--first")),
            "--rate" => pace.rate = seconds(&mut args, "--rate"),
            "--duration" => pace.duration = seconds(&mut args, "--duration"),
            "-h" | "--help" => {
                eprintln!("usage: webhook [--port P] [--delay-ms D] [--stream [--first S] [--rate R] [--duration S]]   (see source header)");
                return Ok(());
            }
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(pace.rate > 0.0, "--rate must be above 0");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    raise_descriptor_limit();
    let mut listener = TcpListener::bind(addr)?;
    // listen(2) again on a listening socket only changes its backlog; the kernel caps it at
    // net.core.somaxconn. Thousands of slow-bot senders connect at once.
    // SAFETY: a plain syscall on a descriptor we own.
    unsafe { libc::listen(listener.as_raw_fd(), 65535) };
    let local = listener.local_addr()?;
    println!("LISTENING {local}");
    io::stdout().flush()?;

    const LISTENER: Token = Token(0);
    const WAKER: Token = Token(usize::MAX);
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let (commands, command_rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let stdin = io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if commands.send(line.trim().to_owned()).is_err() || waker.wake().is_err() {
                break;
            }
        }
        std::process::exit(0);
    });

    let counters = Counters::default();
    let mut events = Events::with_capacity(1024);
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next_token = 1usize;
    let c = &counters;
    let mut answers = Answers { delay, held: VecDeque::new(), streams: stream.then(|| Streams::new(pace)) };

    loop {
        // Answers whose delay is over go out first; then wait for the network or the next one.
        while answers.held.front().is_some_and(|h| h.due <= Instant::now()) {
            let h = answers.held.pop_front().expect("a held answer");
            c.in_flight.fetch_sub(1, Ordering::Relaxed);
            let Some(conn) = conns.get_mut(&h.token) else { continue };
            conn.wbuf.extend_from_slice(&h.answer);
            conn.close_after_write |= h.close;
            if !after_io(&poll, conn, h.token, c)? {
                drop_conn(&poll, &mut conns, h.token, c, &mut answers);
            }
        }
        step_streams(&poll, &mut conns, c, &mut answers)?;
        let next = [answers.held.front().map(|h| h.due), answers.streams.as_ref().and_then(Streams::next_due)];
        let timeout = next.into_iter().flatten().min().map(|due| due.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == WAKER {
                while let Ok(line) = command_rx.try_recv() {
                    command(&line, c, &answers);
                }
                continue;
            }
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let tok = Token(next_token);
                            next_token += 1;
                            poll.registry().register(&mut stream, tok, Interest::READABLE)?;
                            c.accepted.fetch_add(1, Ordering::Relaxed);
                            c.active.fetch_add(1, Ordering::Relaxed);
                            conns.insert(
                                tok,
                                Conn {
                                    stream,
                                    rbuf: Vec::with_capacity(4096),
                                    wbuf: Vec::with_capacity(4096),
                                    wpos: 0,
                                    close_after_write: false,
                                    no_more_requests: false,
                                    want_write: false,
                                    streaming: None,
                                },
                            );
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            eprintln!("webhook: accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            let tok = ev.token();
            let Some(conn) = conns.get_mut(&tok) else { continue };
            let mut keep = true;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                keep = on_readable(conn, c, tok, &mut answers);
            }
            if !keep || !after_io(&poll, conn, tok, c)? {
                drop_conn(&poll, &mut conns, tok, c, &mut answers);
            }
        }
    }
}

/// Flush what a connection has to write and watch for writability while some is left.
/// Ok(false): the connection is done (closed after its last answer, or broken).
fn after_io(poll: &Poll, conn: &mut Conn, tok: Token, c: &Counters) -> io::Result<bool> {
    match flush(conn) {
        Ok(true) => {
            if conn.close_after_write {
                c.closed_by_us.fetch_add(1, Ordering::Relaxed);
                return Ok(false);
            }
            if conn.want_write {
                conn.want_write = false;
                poll.registry().reregister(&mut conn.stream, tok, Interest::READABLE)?;
            }
            Ok(true)
        }
        Ok(false) => {
            if !conn.want_write {
                conn.want_write = true;
                poll.registry().reregister(&mut conn.stream, tok, Interest::READABLE | Interest::WRITABLE)?;
            }
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// Forgets a connection; a stream it was answering is counted as cut by the peer.
fn drop_conn(poll: &Poll, conns: &mut HashMap<Token, Conn>, tok: Token, c: &Counters, answers: &mut Answers) {
    if let Some(mut conn) = conns.remove(&tok) {
        let _ = poll.registry().deregister(&mut conn.stream);
        c.active.fetch_sub(1, Ordering::Relaxed);
        if let (Some(s), Some(streams)) = (conn.streaming.as_ref(), answers.streams.as_mut()) {
            streams.cut(s);
        }
    }
}

/// Soft descriptor limit up to the hard one: one descriptor per held connection.
fn raise_descriptor_limit() {
    // SAFETY: getrlimit/setrlimit on our own process with a valid struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
