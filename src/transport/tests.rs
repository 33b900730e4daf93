//! The transport against real servers on loopback, each a thread per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::thread;

use super::*;

/// How long a test waits for an event before it calls it lost (a hang, not a measurement).
const LOST: Duration = Duration::from_secs(120);

/// Runs `task` on `reactor` and waits for its result.
fn run<T: Send + 'static>(reactor: &Reactor, task: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    reactor.spawn(async move {
        let _ = tx.send(task.await);
    });
    rx.recv_timeout(LOST).expect("the task never finished")
}

fn options(connect_timeout: Duration) -> Options {
    Options { connect_timeout, max_idle: 100, tls: None, user_agent: "test" }
}

fn client(url: &str) -> Client {
    Client::new(url, CachingResolver::default(), options(Duration::from_secs(60))).unwrap()
}

fn request(body: &str, deadline: Instant) -> Request {
    Request { headers: Vec::new(), body: Bytes::copy_from_slice(body.as_bytes()), deadline, path: None }
}

fn in_a_minute() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// A counter the test and the servers wait on.
#[derive(Default)]
struct Count(Mutex<usize>, Condvar);

impl Count {
    fn add(&self) {
        *self.0.lock().unwrap() += 1;
        self.1.notify_all();
    }

    fn get(&self) -> usize {
        *self.0.lock().unwrap()
    }

    fn wait_for(&self, n: usize) {
        let give_up = Instant::now() + LOST;
        let mut count = self.0.lock().unwrap();
        while *count < n {
            assert!(Instant::now() < give_up, "waited for {n}, got {}", *count);
            count = self.1.wait_timeout(count, Duration::from_secs(1)).unwrap().0;
        }
    }
}

/// Serves every connection to a listener on a thread of its own with `handle`; returns the URL
/// and the count of connections accepted.
fn serve(listener: TcpListener, handle: impl Fn(TcpStream) + Send + Sync + 'static) -> (String, Arc<Count>) {
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = Arc::new(Count::default());
    let handle = Arc::new(handle);
    let counted = Arc::clone(&accepted);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            counted.add();
            let handle = Arc::clone(&handle);
            thread::spawn(move || handle(stream));
        }
    });
    (url, accepted)
}

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Reads one request: its head and body, or None at the end of the connection. (Also the
/// dispatcher's stream tests' server.)
pub(crate) fn read_request(reader: &mut impl BufRead) -> Option<(String, String)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, String::from_utf8(body).unwrap()))
}

fn ok(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

/// A keep-alive server answering every request with its own body.
fn echo(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some((_, body)) = read_request(&mut reader) {
        if writer.write_all(ok(&body).as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn sequential_requests_share_one_connection() {
    let reactor = Reactor::start().unwrap();
    let (url, accepted) = serve(listener(), echo);
    let client = client(&url);
    for n in 0..10 {
        let c = client.clone();
        let body = run(&reactor, async move {
            let response = c.post(request(&format!("#{n}"), in_a_minute())).await?;
            assert_eq!(response.status, 200);
            assert_eq!(response.header("content-type"), Some("text/plain"));
            response.read_to_end(1024, in_a_minute()).await
        });
        assert_eq!(body.unwrap(), format!("#{n}").as_bytes());
    }
    assert_eq!(accepted.get(), 1, "one connection for ten requests");
    assert_eq!(client.connections_opened(), 1);
    // Forgotten: the next request opens another.
    client.forget_idle();
    let c = client.clone();
    run(&reactor, async move { c.post(request("x", in_a_minute())).await.map(drop) }).unwrap();
    assert_eq!(client.connections_opened(), 2);
}

#[test]
fn a_put_carries_its_method_its_urls_path_and_query_its_headers_and_its_whole_body() {
    let reactor = Reactor::start().unwrap();
    let (seen_tx, seen) = mpsc::channel();
    let seen_tx = Mutex::new(seen_tx);
    let (url, _) = serve(listener(), move |stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        while let Some(request) = read_request(&mut reader) {
            let _ = seen_tx.lock().unwrap().send(request);
            let _ = writer.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
        }
    });
    // A file's slot URL, path and query its own.
    let client = client(&url.replace("/hook", "/upload/a1/chart.png?v=1&token=x"));
    // Larger than what goes out in one write with the head.
    let body = "0123456789abcdef".repeat(5 * 1024 + 1);
    let mut put = request(&body, in_a_minute());
    put.headers.push((HeaderName::from_static("content-type"), HeaderValue::from_static("image/png")));
    put.headers.push((HeaderName::from_static("authorization"), HeaderValue::from_static("Bearer t0ken")));
    let c = client.clone();
    let status = run(&reactor, async move { c.put(put).await.map(|response| response.status) });
    assert_eq!(status.unwrap(), 201);
    let (head, received) = seen.recv_timeout(LOST).unwrap();
    assert!(head.starts_with("PUT /upload/a1/chart.png?v=1&token=x HTTP/1.1\r\n"), "{head}");
    let head = head.to_ascii_lowercase();
    for line in ["content-type: image/png", "authorization: bearer t0ken", &format!("content-length: {}", body.len())] {
        assert!(head.contains(&format!("{line}\r\n")), "{line} in {head}");
    }
    assert!(received == body, "the body, whole: {} of {} bytes", received.len(), body.len());
}

/// Posts `body` and, if it was answered, reads the answer; the failure, if any.
fn failure(reactor: &Reactor, client: &Client, body: &'static str, deadline: Instant) -> Failure {
    let c = client.clone();
    run(reactor, async move {
        let response = c.post(request(body, deadline)).await?;
        response.read_to_end(u64::MAX, deadline).await
    })
    .expect_err("the request should fail")
}

fn soon() -> Instant {
    Instant::now() + Duration::from_millis(300)
}

#[test]
fn the_deadline_holds_while_a_name_is_looked_up() {
    let reactor = Reactor::start().unwrap();
    let open = Arc::new((Mutex::new(false), Condvar::new()));
    let o = Arc::clone(&open);
    let resolver = CachingResolver::with_lookup(move |_| {
        let mut open = o.0.lock().unwrap();
        while !*open {
            open = o.1.wait(open).unwrap();
        }
        Err(io::Error::other("no such name"))
    });
    let client = Client::new("http://bot.example/hook", resolver, options(Duration::from_secs(60))).unwrap();
    assert!(matches!(failure(&reactor, &client, "x", soon()), Failure::TimedOut(Phase::Resolve)));
    *open.0.lock().unwrap() = true;
    open.1.notify_all();
    // The lookup's own failure, once it ends, is an unreachable webhook.
    let failed = failure(&reactor, &client, "x", in_a_minute());
    assert!(
        matches!(&failed, Failure::NoAnswer { phase: Phase::Resolve, why, .. } if why == "no such name"),
        "{failed}"
    );
}

/// A listener that accepts nothing, with its accept queue full: the kernel drops new SYNs, so
/// a connect hangs (as with a webhook whose backlog overflows).
fn full_listener(reactor: &Reactor) -> (TcpListener, Vec<TcpStream>) {
    let _inside = reactor.handle().enter();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap().into_std().unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => return (listener, fillers),
        }
    }
    panic!("the accept queue never filled");
}

#[test]
fn the_deadline_holds_while_connecting() {
    let reactor = Reactor::start().unwrap();
    let (listener, _fillers) = full_listener(&reactor);
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let failed = failure(&reactor, &client(&url), "x", soon());
    assert!(matches!(failed, Failure::TimedOut(Phase::Connect)), "{failed}");
    // With time left, the connect timeout ends the attempt: an unreachable webhook.
    let hasty = Client::new(&url, CachingResolver::default(), options(Duration::from_millis(100))).unwrap();
    let failed = failure(&reactor, &hasty, "x", in_a_minute());
    assert!(matches!(failed, Failure::ConnectTimedOut { others_answered: false }), "{failed}");
}

/// Accepts, reads what comes, and never answers, until the client goes.
fn mute(mut stream: TcpStream) {
    let mut sink = [0; 4096];
    while stream.read(&mut sink).is_ok_and(|n| n > 0) {}
}

#[test]
fn the_deadline_holds_in_the_tls_handshake() {
    let reactor = Reactor::start().unwrap();
    let (url, _) = serve(listener(), mute);
    let url = url.replace("http://", "https://");
    let tls = Some(tls_config(std::iter::empty()));
    let client = Client::new(&url, CachingResolver::default(), Options { tls, ..options(Duration::from_secs(60)) });
    let failed = failure(&reactor, &client.unwrap(), "x", soon());
    assert!(matches!(failed, Failure::TimedOut(Phase::Tls)), "{failed}");
}

#[test]
fn the_deadline_holds_while_sending() {
    let reactor = Reactor::start().unwrap();
    // Accepts and reads nothing: the request fills the socket's buffers and stops.
    let holds = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&holds);
    let (url, _) = serve(listener(), move |stream| h.lock().unwrap().push(stream));
    let big: &'static str = Box::leak("x".repeat(64 << 20).into_boxed_str());
    let failed = failure(&reactor, &client(&url), big, soon());
    assert!(matches!(failed, Failure::TimedOut(Phase::Send)), "{failed}");
}

#[test]
fn the_deadline_holds_while_waiting_for_the_headers() {
    let reactor = Reactor::start().unwrap();
    let (url, _) = serve(listener(), mute);
    let failed = failure(&reactor, &client(&url), "x", soon());
    assert!(matches!(failed, Failure::TimedOut(Phase::Headers)), "{failed}");
}

#[test]
fn the_deadline_holds_over_a_dribbled_body() {
    let reactor = Reactor::start().unwrap();
    // Every byte comes well within any read timeout; the whole never comes by the deadline.
    let (url, _) = serve(listener(), |stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        read_request(&mut reader).unwrap();
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n").unwrap();
        while writer.write_all(b"x").is_ok() {
            thread::sleep(Duration::from_millis(10));
        }
    });
    let failed = failure(&reactor, &client(&url), "x", soon());
    assert!(matches!(failed, Failure::TimedOut(Phase::Body)), "{failed}");
}

#[test]
fn a_body_past_the_limit_is_refused_and_its_connection_closed() {
    let reactor = Reactor::start().unwrap();
    let (url, accepted) = serve(listener(), echo);
    let client = client(&url);
    for body in ["0123456789", "0123456789abc"] {
        let c = client.clone();
        let got =
            run(
                &reactor,
                async move { c.post(request(body, in_a_minute())).await?.read_to_end(12, in_a_minute()).await },
            );
        match body.len() {
            10 => assert_eq!(got.unwrap(), body.as_bytes()),
            _ => assert!(matches!(got, Err(Failure::TooLarge(12)))),
        }
    }
    // The first connection was kept, then dropped with the body it did not read.
    let c = client.clone();
    run(&reactor, async move { c.post(request("x", in_a_minute())).await.map(drop) }).unwrap();
    assert_eq!(accepted.get(), 2);
}

#[test]
fn a_stream_read_ends_at_its_own_instant_not_the_requests() {
    let reactor = Reactor::start().unwrap();
    // Each piece is sent when the test says so; then the stream stalls.
    let (say, told) = mpsc::channel::<&'static str>();
    let told = Mutex::new(Some(told));
    let (url, _) = serve(listener(), move |stream| {
        let told = told.lock().unwrap().take().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        read_request(&mut reader).unwrap();
        writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n")
            .unwrap();
        for piece in told {
            writer.write_all(piece.as_bytes()).unwrap();
        }
    });
    let client = client(&url);
    let deadline = Instant::now() + Duration::from_millis(200);
    let c = client.clone();
    let response = run(&reactor, async move { c.post(request("x", deadline)).await }).map_err(|e| e.to_string());
    let mut response = response.unwrap();
    say.send("one\n").unwrap();
    let (first, mut response) = run(&reactor, async move {
        let piece = response.next_piece(in_a_minute()).await;
        (piece, response)
    });
    assert_eq!(first.unwrap().unwrap(), "one\n");
    // Past the request's deadline, the next piece still comes: each read has its own instant.
    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    say.send("two\n").unwrap();
    let (second, mut response) = run(&reactor, async move {
        let piece = response.next_piece(in_a_minute()).await;
        (piece, response)
    });
    assert_eq!(second.unwrap().unwrap(), "two\n");
    // Then it stalls: the read ends at its instant.
    let stalled = run(&reactor, async move { response.next_piece(soon()).await });
    assert!(matches!(stalled, Err(Failure::TimedOut(Phase::Body))), "{stalled:?}");
    drop(say);
}

#[test]
fn new_connections_are_opened_at_a_bounded_pace() {
    let reactor = Reactor::start().unwrap();
    // A TLS handshake the server never answers holds its connection slot until the connect
    // timeout: without a bound, every request would be connecting at once.
    let (url, accepted) = serve(listener(), mute);
    let tls = Some(tls_config(std::iter::empty()));
    let https = url.replace("http://", "https://");
    let stuck =
        Client::new(&https, CachingResolver::default(), Options { tls, ..options(Duration::from_millis(50)) }).unwrap();
    let n = MAX_CONNECTS_IN_FLIGHT * 4;
    let failures = Arc::new(Count::default());
    for _ in 0..n {
        let (c, failures) = (stuck.clone(), Arc::clone(&failures));
        reactor.spawn(async move {
            let failed = c.post(request("x", in_a_minute())).await.map(drop).expect_err("no handshake");
            assert!(matches!(failed, Failure::ConnectTimedOut { .. }), "{failed}");
            failures.add();
        });
    }
    failures.wait_for(n);
    assert_eq!(accepted.get(), n, "every request tried");
    assert_eq!(stuck.most_connecting(), MAX_CONNECTS_IN_FLIGHT, "never more at once than the bound");

    // And a burst of answered requests, each on a new connection, all succeed within it.
    let everyone = Arc::new(Count::default());
    let arrived = Arc::clone(&everyone);
    let n = 64;
    let (url, accepted) = serve(listener(), move |stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let (_, body) = read_request(&mut reader).unwrap();
        // Answer once all have arrived, so none can reuse another's connection.
        arrived.add();
        arrived.wait_for(n);
        writer.write_all(ok(&body).as_bytes()).unwrap();
    });
    let client = client(&url);
    let answered = Arc::new(Count::default());
    for _ in 0..n {
        let (c, answered) = (client.clone(), Arc::clone(&answered));
        reactor.spawn(async move {
            let body = c.post(request("x", in_a_minute())).await.unwrap().read_to_end(10, in_a_minute()).await;
            assert_eq!(body.unwrap(), b"x");
            answered.add();
        });
    }
    answered.wait_for(n);
    assert_eq!((accepted.get(), client.connections_opened()), (n, n as u64));
    assert!(client.most_connecting() <= MAX_CONNECTS_IN_FLIGHT, "{}", client.most_connecting());
}

#[test]
fn a_reset_under_load_is_one_requests_failure() {
    let reactor = Reactor::start().unwrap();
    let answered = Arc::new(Count::default());
    let a = Arc::clone(&answered);
    let n = 20;
    let (url, _) = serve(listener(), move |stream| {
        // Only peeked: the request is still unread when the connection is closed, which makes
        // the close a reset.
        let mut peeked = [0; 4096];
        loop {
            let seen = stream.peek(&mut peeked).unwrap();
            if peeked[..seen].windows(4).any(|w| w == b"\r\n\r\n") && peeked[..seen].ends_with(b"}") {
                break;
            }
            thread::yield_now();
        }
        if peeked.windows(7).any(|w| w == b"\"reset\"") {
            // Once most of the others were answered, so the webhook is seen up.
            a.wait_for(n / 2);
            drop(stream);
            return;
        }
        echo(stream);
    });
    let client = client(&url);
    let (results_tx, results) = mpsc::channel();
    for i in 0..n {
        let (c, answered, results_tx) = (client.clone(), Arc::clone(&answered), results_tx.clone());
        let body: &'static str = if i == 7 { "{\"reset\"}" } else { "{}" };
        reactor.spawn(async move {
            let got = match c.post(request(body, in_a_minute())).await {
                Ok(response) => response.read_to_end(10, in_a_minute()).await,
                Err(e) => Err(e),
            };
            if got.is_ok() {
                answered.add();
            }
            let _ = results_tx.send((body, got));
        });
    }
    let results: Vec<_> = (0..n).map(|_| results.recv_timeout(LOST).unwrap()).collect();
    let failed: Vec<_> = results.iter().filter(|(_, got)| got.is_err()).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (body, got) = failed[0];
    assert_eq!(*body, "{\"reset\"}");
    assert!(matches!(got, Err(Failure::NoAnswer { others_answered: true, .. })), "{got:?}");
}

#[test]
fn a_webhook_that_refuses_every_connection_is_reached_by_none() {
    let reactor = Reactor::start().unwrap();
    let url = {
        let gone = listener();
        format!("http://{}/hook", gone.local_addr().unwrap())
    };
    let client = client(&url);
    for _ in 0..3 {
        let failed = failure(&reactor, &client, "x", in_a_minute());
        assert!(matches!(&failed, Failure::NoAnswer { phase: Phase::Connect, others_answered: false, .. }), "{failed}");
    }
}

#[test]
fn shutting_down_ends_requests_reads_and_connections() {
    let reactor = Reactor::start().unwrap();
    // Connections the client has not closed yet, seen from the server.
    let open = Arc::new(AtomicUsize::new(0));
    let o = Arc::clone(&open);
    let (url, accepted) = serve(listener(), move |stream| {
        o.fetch_add(1, Ordering::SeqCst);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        while let Some((_, body)) = read_request(&mut reader) {
            if body == "hang" {
                mute(writer);
                break;
            }
            if body == "stream" {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst");
                mute(writer);
                break;
            }
            if writer.write_all(ok(&body).as_bytes()).is_err() {
                break;
            }
        }
        o.fetch_sub(1, Ordering::SeqCst);
    });
    let client = client(&url);
    // One waiting for its answer, one reading a stream, one idle.
    let (done_tx, done) = mpsc::channel();
    let (c, tx) = (client.clone(), done_tx.clone());
    reactor.spawn(async move {
        let _ = tx.send(c.post(request("hang", in_a_minute())).await.map(drop));
    });
    accepted.wait_for(1);
    let c = client.clone();
    let mut stream = run(&reactor, async move { c.post(request("stream", in_a_minute())).await }).unwrap();
    let (first, mut stream) = run(&reactor, async move {
        let first = stream.next_piece(in_a_minute()).await;
        (first, stream)
    });
    assert_eq!(first.unwrap().unwrap(), "first");
    reactor.spawn(async move {
        let _ = done_tx.send(stream.next_piece(in_a_minute()).await.map(drop));
    });
    let c = client.clone();
    run(&reactor, async move { c.post(request("x", in_a_minute())).await?.read_to_end(10, in_a_minute()).await })
        .unwrap();
    accepted.wait_for(3);
    client.shut_down();
    for _ in 0..2 {
        let ended = done.recv_timeout(LOST).expect("shutting down ended it");
        assert!(matches!(ended, Err(Failure::NoAnswer { .. } | Failure::Broken(_))), "{ended:?}");
    }
    let give_up = Instant::now() + LOST;
    while open.load(Ordering::SeqCst) > 0 {
        assert!(Instant::now() < give_up, "connections left open");
        thread::sleep(Duration::from_millis(5));
    }
    let c = client.clone();
    let later = run(&reactor, async move { c.post(request("x", in_a_minute())).await.map(drop) });
    assert!(matches!(later, Err(Failure::NoAnswer { .. })));
    assert_eq!(accepted.get(), 3, "no connection after the shutdown");
}

/// A server answering the requests of each connection with the next of `answers` (raw bytes,
/// head and body) and then closing it: the answers decide whether it could have stayed open.
fn scripted(answers: Vec<&'static [u8]>) -> (String, Arc<Count>) {
    let answers = Mutex::new(answers.into_iter());
    serve(listener(), move |stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        while read_request(&mut reader).is_some() {
            let Some(answer) = answers.lock().unwrap().next() else { return };
            if writer.write_all(answer).is_err() {
                return;
            }
            // An answer framed by the connection's end: only closing ends it.
            if !answer.windows(15).any(|w| w.eq_ignore_ascii_case(b"content-length:"))
                && !answer.windows(18).any(|w| w.eq_ignore_ascii_case(b"transfer-encoding:"))
                && !answer.windows(7).any(|w| w == b"204 No ")
            {
                return;
            }
        }
    })
}

/// Posts once on `client` and reads the whole answer.
fn exchange(reactor: &Reactor, client: &Client) -> Result<(u16, Vec<u8>), Failure> {
    let c = client.clone();
    run(reactor, async move {
        let response = c.post(request("x", in_a_minute())).await?;
        let status = response.status;
        Ok((status, response.read_to_end(1 << 20, in_a_minute()).await?))
    })
}

#[test]
fn answers_are_read_by_each_framing_and_connections_kept_when_they_can_be() {
    let reactor = Reactor::start().unwrap();
    let (url, accepted) = scripted(vec![
        // Chunked, with an extension and trailers; then an interim answer before a 204; then
        // a Content-Length in two headers that agree; all on one connection.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n7\r\n, world\r\n0\r\nX-T: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        // Asked to close: the next request opens a new connection.
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
        // HTTP/1.0 without keep-alive, and a body framed by the connection's end.
        b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast",
    ]);
    let client = client(&url);
    let mut got = Vec::new();
    for _ in 0..6 {
        let (status, body) = exchange(&reactor, &client).unwrap();
        got.push((status, String::from_utf8(body).unwrap()));
    }
    let expected = [(200, "hello, world"), (204, ""), (200, "ok"), (200, "bye"), (200, "until the end"), (200, "last")];
    assert_eq!(got, expected.map(|(s, b)| (s, b.to_owned())));
    assert_eq!(accepted.get(), 3, "a new connection after the close and after the HTTP/1.0 answer");
}

#[test]
fn broken_answers_are_failures_that_say_what_broke() {
    let reactor = Reactor::start().unwrap();
    let cases: [(&'static [u8], &str); 5] = [
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "invalid answer head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "conflicting Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX", "did not end with CRLF"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed before the body's end"),
    ];
    for (answer, said) in cases {
        // Answers once, then closes.
        let (url, _) = serve(listener(), move |stream| {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            read_request(&mut reader).unwrap();
            writer.write_all(answer).unwrap();
        });
        let failed = exchange(&reactor, &client(&url)).expect_err("broken");
        let why = match &failed {
            Failure::NoAnswer { phase: Phase::Headers, why, .. } | Failure::Broken(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(why.contains(said), "{why} should say {said:?}");
    }
}

#[test]
fn an_idle_connection_the_server_closed_is_not_used() {
    let reactor = Reactor::start().unwrap();
    // The first connection answers once and closes without saying so; the next ones echo.
    let first = Arc::new(Count::default());
    let (url, accepted) = serve(listener(), {
        let first = Arc::clone(&first);
        move |stream| {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let once = first.get() == 0;
            if once {
                let (_, body) = read_request(&mut reader).unwrap();
                writer.write_all(ok(&body).as_bytes()).unwrap();
                drop((reader, writer));
                first.add();
                return;
            }
            echo(writer);
        }
    });
    let client = client(&url);
    assert_eq!(exchange(&reactor, &client).unwrap(), (200, b"x".to_vec()));
    first.wait_for(1);
    // The closed connection may take a moment to show as closed; a request that meets it
    // before it does is told "closed before an answer" and never waits.
    let mut answered = 0;
    while answered == 0 {
        match exchange(&reactor, &client) {
            Ok(got) => {
                assert_eq!(got, (200, b"x".to_vec()));
                answered += 1;
            }
            Err(Failure::NoAnswer { why, .. }) => assert!(why.contains("closed before an answer"), "{why}"),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted.get(), 2);
}
