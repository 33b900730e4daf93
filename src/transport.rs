//! The event-driven HTTP/1.1 client: every request is a task on one native thread running a
//! current-thread tokio runtime ([`Reactor`]), so a request in flight costs its own bytes (its
//! connection's buffers and its task), not a thread with a stack.
//!
//! A [`Client`] talks to one URL (a webhook's, or an upload slot's for a file's PUT): it keeps
//! its idle connections for reuse (keep-alive), looks the host up with the shared
//! [`CachingResolver`] (a lookup runs on a helper thread only when the name is not known, one per
//! name at a time), and opens new connections at a bounded pace: at most
//! [`MAX_CONNECTS_IN_FLIGHT`] connections are being opened (TCP and TLS) at once, so a burst does
//! not overflow a small listen backlog.
//!
//! Every phase of a request ends by its deadline: resolve, the wait for a connection slot,
//! connect and TLS (each connection attempt also within its own connect timeout), sending,
//! the answer's headers, and every read of its body. A streamed body's reads each have their
//! own instant ([`Response::next_piece`]), which the caller moves on as the stream goes.
//!
//! A failure says whether other requests to the same webhook were answered while this one was
//! failing ([`Failure::NoAnswer`]'s `others_answered`): one failed connection among answered
//! requests is that request's bad luck, not an outage. (A connection made is no such sign: a
//! webhook that resets every request after accepting it is down all the same.)

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::timeout_at;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::resolve::CachingResolver;
use http1::{Conn, Framing, Stream};

mod http1;
#[cfg(test)]
pub(crate) mod tests;

/// How many new connections to one webhook are being opened (TCP connect and TLS handshake) at
/// once, at most. Measured against Python's `http.server` (`ThreadingHTTPServer`, listen backlog
/// 5) on loopback: 1,000 requests at once, each on a new connection, answered after 0.5 s, with
/// connect attempts given up after 5 s. Requests that never connected: no bound 105; 256 at
/// once 60; 64 at once 14; 32, 16, 8 and 4 at once none (and 16 was the fastest to answer all).
/// A SYN that finds the backlog full is dropped and tried again only after 1 s, 3 s...; with a
/// bound on attempts in flight, the next one starts as soon as the server took the last, so the
/// pace follows the server's own accept rate. 16: half the largest bound that lost none.
pub const MAX_CONNECTS_IN_FLIGHT: usize = 16;

/// How long an idle connection is kept for reuse: longer, and the server is likely to have
/// closed it meanwhile (a request on a connection the server is closing fails).
pub const IDLE_FOR: Duration = Duration::from_secs(15);

/// The native thread all requests of a component run on, with its runtime. Dropping it stops
/// the runtime without waiting: every request still under way is dropped with its connection.
pub struct Reactor {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Reactor {
    /// Starts the thread.
    pub fn start() -> io::Result<Reactor> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("component_http".into())
            // Tasks keep their state on the heap; the thread's own stack holds little.
            .stack_size(256 * 1024)
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Tasks still under way are dropped here, with their connections.
                runtime.shutdown_background();
            })?;
        Ok(Reactor { handle, stop: Some(stop) })
    }

    /// Runs `task` on the reactor's thread.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        drop(self.handle.spawn(task));
    }

    /// The runtime, for what must be made inside it (a [`Client`] needs none).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The TLS settings for `https://` webhooks: `roots` only (no client certificate), HTTP/1.1.
pub fn tls_config<'a>(roots: impl IntoIterator<Item = &'a [u8]>) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    // A certificate rustls cannot use was already reported when the roots were read, or is
    // one of the system's many: the others still count.
    let _ = store.add_parsable_certificates(roots.into_iter().map(|der| CertificateDer::from(der.to_vec())));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A phase of one request, for what timed out or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Looking the host up.
    Resolve,
    /// Waiting for a connection slot (see [`MAX_CONNECTS_IN_FLIGHT`]) and connecting.
    Connect,
    /// The TLS handshake.
    Tls,
    /// Sending the request.
    Send,
    /// Waiting for the answer's status and headers.
    Headers,
    /// Reading the answer's body.
    Body,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "TLS handshake",
            Phase::Send => "send",
            Phase::Headers => "headers",
            Phase::Body => "body",
        })
    }
}

/// Why a request or a read of its answer did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// No answer came: no connection could be made, or it broke before the answer's headers.
    NoAnswer {
        /// Where it failed.
        phase: Phase,
        /// What happened, as the system or the peer said it.
        why: String,
        /// Other requests to this webhook were answered while this one was being tried: the
        /// webhook is up, and this failure is this request's alone.
        others_answered: bool,
    },
    /// The deadline (or, for a body read, the read's instant) passed in this phase.
    TimedOut(Phase),
    /// No connection within the connect timeout, with time left before the deadline.
    ConnectTimedOut {
        /// Other requests were answered meanwhile (see [`Failure::NoAnswer`]).
        others_answered: bool,
    },
    /// The body broke after the headers came.
    Broken(String),
    /// The body is longer than the limit given to [`Response::read_to_end`].
    TooLarge(u64),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoAnswer { phase, why, .. } => write!(f, "{why} (in phase {phase})"),
            Failure::TimedOut(phase) => write!(f, "timed out in phase {phase}"),
            Failure::ConnectTimedOut { .. } => f.write_str("timed out in phase connect"),
            Failure::Broken(why) => write!(f, "the answer broke off: {why}"),
            Failure::TooLarge(limit) => write!(f, "larger than {limit} bytes"),
        }
    }
}

/// What one request sends (a stanza POSTed, a file PUT).
pub struct Request {
    /// Header lines beyond `Host`, `User-Agent` and `Content-Length`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Bytes,
    /// Every phase ends by then.
    pub deadline: Instant,
    /// The path and query, when not the client's URL's own (mod_rest's URL template).
    pub path: Option<Uri>,
}

/// Connection counts of one client, for tests and statistics.
#[derive(Debug, Default)]
struct Counters {
    /// Connections opened (TCP connected, and TLS done for `https://`).
    opened: AtomicU64,
    /// Answers whose headers came.
    answered: AtomicU64,
    /// Connections being opened now, and the most there ever were at once.
    connecting: AtomicUsize,
    most_connecting: AtomicUsize,
}

impl Counters {
    /// Answers so far: grows whenever the webhook shows it is up.
    fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }
}

/// Counts one connection being opened for as long as it lives.
struct Connecting<'a>(&'a Counters);

impl<'a> Connecting<'a> {
    fn new(counters: &'a Counters) -> Self {
        let now = counters.connecting.fetch_add(1, Ordering::SeqCst) + 1;
        counters.most_connecting.fetch_max(now, Ordering::SeqCst);
        Connecting(counters)
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.connecting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where requests go.
struct Target {
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Host name without brackets, for lookups.
    host: String,
    /// Set when the host is an IP literal: no lookup.
    ip: Option<IpAddr>,
    port: u16,
    /// The `Host` header.
    authority: HeaderValue,
    /// Path and query.
    path: Uri,
}

struct Idle {
    since: Instant,
    conn: Conn,
}

/// Set by [`Client::shut_down`]: ends every request, read and connection of the client.
#[derive(Default)]
struct Shut {
    flag: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Shut {
    /// Ends when the client is shut down.
    async fn wait(&self) {
        loop {
            // Registered before the check, so a shutdown in between still wakes it.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.flag.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

struct Inner {
    target: Target,
    /// Shared with the connections' own tasks (which must not keep the client alive).
    shut: Arc<Shut>,
    resolver: CachingResolver,
    connect_timeout: Duration,
    max_idle: usize,
    user_agent: HeaderValue,
    /// Most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// Connection slots: see [`MAX_CONNECTS_IN_FLIGHT`].
    connects: Semaphore,
    counters: Counters,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The client of one webhook URL. Cheap to clone; its methods run on a [`Reactor`].
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// How a [`Client`] behaves.
pub struct Options {
    /// Each connection attempt (TCP and TLS) gives up after this long, before the deadline.
    pub connect_timeout: Duration,
    /// Idle connections kept for reuse, at most.
    pub max_idle: usize,
    /// For `https://` URLs (see [`tls_config`]).
    pub tls: Option<Arc<ClientConfig>>,
    /// The `User-Agent` header.
    pub user_agent: &'static str,
}

impl Client {
    /// A client for `url` (`http://` or `https://`; an `https://` URL needs `options.tls`).
    pub fn new(url: &str, resolver: CachingResolver, options: Options) -> Result<Client, String> {
        let uri: Uri = url.parse().map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return Err(format!("invalid URL {url:?}: not http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| format!("invalid URL {url:?}: no host"))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let config = options.tls.ok_or_else(|| format!("no TLS settings for {url:?}"))?;
            let name = ServerName::try_from(host.clone()).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
            Some((TlsConnector::from(config), name))
        } else {
            None
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).parse().map_err(|e| format!("{e}"))?;
        let target = Target {
            tls,
            ip: host.parse().ok(),
            host,
            port,
            authority: HeaderValue::from_str(authority.as_str()).map_err(|e| format!("{e}"))?,
            path,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                target,
                resolver,
                connect_timeout: options.connect_timeout,
                max_idle: options.max_idle,
                user_agent: HeaderValue::from_static(options.user_agent),
                shut: Arc::default(),
                idle: Mutex::default(),
                connects: Semaphore::new(MAX_CONNECTS_IN_FLIGHT),
                counters: Counters::default(),
            }),
        })
    }

    /// Closes every idle connection (after a burst, or when the settings change).
    pub fn forget_idle(&self) {
        lock(&self.inner.idle).clear();
    }

    /// Ends everything the client does, at once and for good: requests and reads under way fail
    /// (with [`Failure::NoAnswer`] or [`Failure::Broken`]), every connection is closed, and later
    /// requests fail at once.
    pub fn shut_down(&self) {
        self.inner.shut.flag.store(true, Ordering::SeqCst);
        self.inner.shut.notify.notify_waiters();
        self.forget_idle();
    }

    /// Connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.inner.counters.opened.load(Ordering::SeqCst)
    }

    /// The most connections that were being opened at once.
    pub fn most_connecting(&self) -> usize {
        self.inner.counters.most_connecting.load(Ordering::SeqCst)
    }

    /// POSTs `request`, on an idle connection if there is one, and returns the answer once its
    /// headers came; its body is read with [`Response::read_to_end`] or
    /// [`Response::next_piece`]. Must run on a [`Reactor`].
    pub async fn post(&self, request: Request) -> Result<Response, Failure> {
        self.send(Method::POST, request).await
    }

    /// PUTs `request` (a file's upload), as [`Client::post`] posts.
    pub async fn put(&self, request: Request) -> Result<Response, Failure> {
        self.send(Method::PUT, request).await
    }

    async fn send(&self, method: Method, request: Request) -> Result<Response, Failure> {
        tokio::select! {
            biased;
            () = self.inner.shut.wait() => Err(shut_down()),
            result = self.send_unless_shut(method, request) => result,
        }
    }

    async fn send_unless_shut(&self, method: Method, request: Request) -> Result<Response, Failure> {
        let deadline = tokio::time::Instant::from_std(request.deadline);
        let answered_before = self.inner.counters.answered();
        let head = self.head(&method, &request);
        // An idle connection the server closed meanwhile is passed over; one that breaks while
        // the request is written gives way to the next, and to a new connection after the last.
        while let Some(mut conn) = self.inner.take_idle() {
            match timeout_at(deadline, conn.write_request(head.clone(), &request.body)).await {
                Err(_) => return Err(Failure::TimedOut(Phase::Send)),
                Ok(Err(_)) => continue,
                Ok(Ok(())) => return self.answer(conn, deadline, answered_before).await,
            }
        }
        let mut conn = self.connect(deadline, answered_before).await?;
        match timeout_at(deadline, conn.write_request(head, &request.body)).await {
            Err(_) => Err(Failure::TimedOut(Phase::Send)),
            Ok(Err(e)) => Err(self.no_answer(Phase::Send, e.to_string(), answered_before)),
            Ok(Ok(())) => self.answer(conn, deadline, answered_before).await,
        }
    }

    /// The request's head: request line, `Host`, `User-Agent`, `Content-Length`, then the
    /// request's own header lines.
    fn head(&self, method: &Method, request: &Request) -> Vec<u8> {
        let target = &self.inner.target;
        let path = request.path.as_ref().unwrap_or(&target.path);
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(path.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        let mut line = |name: &[u8], value: &[u8]| {
            head.extend_from_slice(name);
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        };
        line(b"host", target.authority.as_bytes());
        line(b"user-agent", self.inner.user_agent.as_bytes());
        line(b"content-length", request.body.len().to_string().as_bytes());
        for (name, value) in &request.headers {
            line(name.as_str().as_bytes(), value.as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    /// Waits for the answer's head on `conn`, where the request was written.
    async fn answer(
        &self,
        mut conn: Conn,
        deadline: tokio::time::Instant,
        answered_before: u64,
    ) -> Result<Response, Failure> {
        match timeout_at(deadline, conn.read_head()).await {
            Err(_) => Err(Failure::TimedOut(Phase::Headers)),
            Ok(Err(why)) => Err(self.no_answer(Phase::Headers, why, answered_before)),
            Ok(Ok(head)) => {
                self.inner.counters.answered.fetch_add(1, Ordering::SeqCst);
                Ok(Response {
                    status: head.status,
                    headers: head.headers,
                    framing: head.framing,
                    keep_alive: head.keep_alive,
                    conn: Some(conn),
                    client: self.clone(),
                })
            }
        }
    }

    fn no_answer(&self, phase: Phase, why: String, answered_before: u64) -> Failure {
        let answered = self.inner.counters.answered();
        Failure::NoAnswer { phase, why, others_answered: answered > answered_before }
    }

    /// Opens a new connection: resolve, wait for a connection slot, connect (each address in
    /// turn, each within the connect timeout), TLS.
    async fn connect(&self, deadline: tokio::time::Instant, answered_before: u64) -> Result<Conn, Failure> {
        let inner = &self.inner;
        let target = &inner.target;
        let others_answered = || inner.counters.answered() > answered_before;
        let unreachable = |phase, why: String| {
            // The webhook may have moved: look its name up again next time.
            inner.resolver.forget();
            Failure::NoAnswer { phase, why, others_answered: others_answered() }
        };
        let addrs = match target.ip {
            Some(ip) => vec![SocketAddr::new(ip, target.port)],
            None => {
                let host_port = format!("{}:{}", target.host, target.port);
                match timeout_at(deadline, inner.resolver.lookup(&host_port)).await {
                    Err(_) => return Err(Failure::TimedOut(Phase::Resolve)),
                    Ok(Err(e)) => {
                        return Err(Failure::NoAnswer {
                            phase: Phase::Resolve,
                            why: e.to_string(),
                            others_answered: others_answered(),
                        })
                    }
                    Ok(Ok(addrs)) => addrs,
                }
            }
        };
        let Ok(Ok(_slot)) = timeout_at(deadline, inner.connects.acquire()).await else {
            return Err(Failure::TimedOut(Phase::Connect));
        };
        let _counted = Connecting::new(&inner.counters);
        let mut last = String::from("no address");
        for addr in addrs {
            let attempt_by = deadline.min(tokio::time::Instant::now() + inner.connect_timeout);
            let tcp = match timeout_at(attempt_by, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    last = format!("{addr}: {e}");
                    continue;
                }
                Err(_) if attempt_by >= deadline => return Err(Failure::TimedOut(Phase::Connect)),
                Err(_) => {
                    inner.resolver.forget();
                    return Err(Failure::ConnectTimedOut { others_answered: others_answered() });
                }
            };
            // Requests are written whole: nothing to gain from Nagle's delay.
            let _ = tcp.set_nodelay(true);
            let stream = match &target.tls {
                None => Stream::Plain(tcp),
                Some((connector, name)) => match timeout_at(attempt_by, connector.connect(name.clone(), tcp)).await {
                    Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                    Ok(Err(e)) => return Err(unreachable(Phase::Tls, e.to_string())),
                    Err(_) if attempt_by >= deadline => return Err(Failure::TimedOut(Phase::Tls)),
                    Err(_) => return Err(Failure::ConnectTimedOut { others_answered: others_answered() }),
                },
            };
            inner.counters.opened.fetch_add(1, Ordering::SeqCst);
            return Ok(Conn::new(stream));
        }
        Err(unreachable(Phase::Connect, last))
    }
}

impl Inner {
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = lock(&self.idle);
        let now = Instant::now();
        while let Some(Idle { since, mut conn }) = idle.pop() {
            if now.duration_since(since) < IDLE_FOR && conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: Conn) {
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(Idle { since: Instant::now(), conn });
        }
    }
}

fn shut_down() -> Failure {
    Failure::NoAnswer { phase: Phase::Send, why: "the client was shut down".into(), others_answered: false }
}

/// An answer whose headers came; its body is read on demand.
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    framing: Framing,
    /// The connection may carry another request once the body was read to its end.
    keep_alive: bool,
    /// Gone once the body broke off (or was read to its end and the connection given back).
    conn: Option<Conn>,
    client: Client,
}

impl Response {
    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The whole body, read by `deadline`; [`Failure::TooLarge`] past `limit` bytes (the
    /// connection is then closed rather than read to its end).
    pub async fn read_to_end(mut self, limit: u64, deadline: Instant) -> Result<Vec<u8>, Failure> {
        if matches!(self.framing, Framing::Length(n) if n > limit) {
            return Err(Failure::TooLarge(limit));
        }
        let mut body = Vec::new();
        while let Some(piece) = self.next_piece(deadline).await? {
            if (body.len() + piece.len()) as u64 > limit {
                return Err(Failure::TooLarge(limit));
            }
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }

    /// The body's next piece as it comes, by `by`; `None` at its end. A read that timed out
    /// can be tried again: nothing read is lost.
    pub async fn next_piece(&mut self, by: Instant) -> Result<Option<Bytes>, Failure> {
        let Response { framing, keep_alive, conn, client, .. } = self;
        if *framing == Framing::Done {
            // A body with no bytes at all (a 204, a Content-Length of 0) ends here too.
            give_back(conn, *keep_alive, client);
            return Ok(None);
        }
        let Some(open) = conn.as_mut() else {
            return Err(Failure::Broken("the answer broke off before".into()));
        };
        let shut = Arc::clone(&client.inner.shut);
        let read = async {
            tokio::select! {
                biased;
                () = shut.wait() => None,
                piece = open.read_piece(framing) => Some(piece),
            }
        };
        match timeout_at(tokio::time::Instant::from_std(by), read).await {
            Err(_) => Err(Failure::TimedOut(Phase::Body)),
            Ok(None) => {
                *conn = None;
                Err(Failure::Broken("the client was shut down".into()))
            }
            Ok(Some(Err(why))) => {
                *conn = None;
                Err(Failure::Broken(why))
            }
            Ok(Some(Ok(None))) => {
                give_back(conn, *keep_alive, client);
                Ok(None)
            }
            Ok(Some(Ok(Some(piece)))) => Ok(Some(piece)),
        }
    }
}

/// A connection whose answer was read to its end goes back to the idle ones, if it can carry
/// another request.
fn give_back(conn: &mut Option<Conn>, keep_alive: bool, client: &Client) {
    if let Some(mut done) = conn.take().filter(|_| keep_alive) {
        if done.can_be_reused() {
            client.inner.put_idle(done);
        }
    }
}
