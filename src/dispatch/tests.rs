//! The dispatcher against real HTTP servers on loopback.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::stanza::Element;

/// What the test server answers: status, extra header lines, body, whether to send a
/// Content-Length (without one it closes the connection, as `php -S` does), and a delay.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<String>,
    body: String,
    content_length: bool,
    delay: Duration,
}

fn json(body: &str) -> Answer {
    Answer {
        status: 200,
        headers: vec!["Content-Type: application/json".into()],
        body: body.into(),
        content_length: true,
        delay: Duration::ZERO,
    }
}

#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: String,
}

struct Server {
    url: String,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A small HTTP/1.1 server with keep-alive; `respond` decides the answer from the request body.
fn serve(respond: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let respond = Arc::new(respond);
    let (c, s) = (Arc::clone(&connections), Arc::clone(&seen));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            c.fetch_add(1, Ordering::SeqCst);
            let (respond, seen) = (Arc::clone(&respond), Arc::clone(&s));
            thread::spawn(move || handle_connection(stream, &*respond, &seen));
        }
    });
    Server { url, connections, seen }
}

fn handle_connection(stream: TcpStream, respond: &dyn Fn(&Seen) -> Answer, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let body = String::from_utf8(body).unwrap();
        let request = Seen { head, body };
        seen.lock().unwrap().push(request.clone());
        let answer = respond(&request);
        thread::sleep(answer.delay);
        let mut out = format!("HTTP/1.1 {} X\r\n", answer.status);
        for h in &answer.headers {
            out.push_str(h);
            out.push_str("\r\n");
        }
        if answer.content_length {
            out.push_str(&format!("Content-Length: {}\r\n\r\n{}", answer.body.len(), answer.body));
        } else {
            out.push_str(&format!("Connection: close\r\n\r\n{}", answer.body));
        }
        if writer.write_all(out.as_bytes()).is_err() || !answer.content_length {
            return;
        }
    }
}

fn message(n: usize) -> Incoming {
    Incoming {
        name: "message".into(),
        to: Some("echo@bot.localhost".into()),
        from: Some(format!("user{n}@localhost/r")),
        id: Some(format!("m{n}")),
        stanza_type: Some("chat".into()),
        xml: format!("<message><body>hello {n}</body></message>"),
        body: Some(format!("hello {n}")),
    }
}

fn dispatcher(url: &str, adjust: impl FnOnce(&mut Config)) -> Dispatcher {
    let mut config = Config::with_url(url).unwrap();
    adjust(&mut config);
    Dispatcher::new(config).unwrap()
}

/// Drains until `n` completions arrived (or panics after a while).
fn collect(d: &Dispatcher, n: usize) -> Vec<Completion> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    while all.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} completions arrived", all.len());
        all.extend(d.drain());
        thread::sleep(Duration::from_millis(2));
    }
    all
}

fn sent_xml(c: &Completion) -> String {
    c.send.as_ref().map(Element::to_xml).unwrap_or_default()
}

#[test]
fn posts_json_and_replies_over_keep_alive() {
    let server = serve(|request| {
        let v: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        json(&serde_json::json!({ "body": format!("Did you say {}?", v["body"].as_str().unwrap()) }).to_string())
    });
    let mut d = dispatcher(&server.url, |c| c.workers = 2);
    for n in 0..200 {
        d.submit(message(n));
    }
    let done = collect(&d, 200);
    let mut replies: Vec<String> = done.iter().map(sent_xml).collect();
    replies.sort();
    let mut expected: Vec<String> = (0..200)
        .map(|n| {
            format!("<message type='chat' to='user{n}@localhost/r' from='echo@bot.localhost'><body>Did you say hello {n}?</body></message>")
        })
        .collect();
    expected.sort();
    assert_eq!(replies, expected);
    assert!(server.connections.load(Ordering::SeqCst) <= 2, "connections were not reused");
    let seen = server.seen.lock().unwrap();
    assert!(seen[0].head.starts_with("POST /hook HTTP/1.1"));
    assert!(seen[0].head.to_ascii_lowercase().contains("content-type: application/json"));
    assert!(!seen[0].head.to_ascii_lowercase().contains("authorization"));
    let first: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(first["kind"], "message");
}

#[test]
fn userinfo_is_sent_as_basic_auth() {
    let server = serve(|_| Answer { status: 204, ..json("") });
    let url = server.url.replace("http://", "http://bot:s3cret@");
    let mut d = dispatcher(&url, |_| {});
    d.submit(message(1));
    assert_eq!(collect(&d, 1)[0].send, None);
    let head = server.seen.lock().unwrap()[0].head.clone();
    assert!(head.contains("uthorization: Basic Ym90OnMzY3JldA=="), "{head}");
}

#[test]
fn reads_answers_without_content_length_to_the_end() {
    let server = serve(|_| Answer { content_length: false, ..json(r#"{"body":"php style"}"#) });
    let mut d = dispatcher(&server.url, |_| {});
    for n in 0..5 {
        d.submit(message(n));
    }
    for c in collect(&d, 5) {
        assert!(sent_xml(&c).contains("<body>php style</body>"), "{c:?}");
    }
}

#[test]
fn refused_connection_is_a_connection_failure() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut d = dispatcher(&format!("http://127.0.0.1:{port}/"), |_| {});
    d.submit(message(1));
    let done = collect(&d, 1);
    let xml = sent_xml(&done[0]);
    assert!(xml.contains("<error type='cancel'><remote-server-timeout"), "{xml}");
    assert!(xml.contains("Connection failure"), "{xml}");
    assert!(done[0].log.as_ref().unwrap().1.contains("could not reach the webhook"));
}

#[test]
fn slow_webhook_times_out() {
    let server = serve(|_| Answer { delay: Duration::from_millis(1500), ..json("{}") });
    let mut d = dispatcher(&server.url, |c| c.timeout = Duration::from_millis(200));
    let started = Instant::now();
    d.submit(message(1));
    let done = collect(&d, 1);
    assert!(started.elapsed() < Duration::from_millis(1400));
    assert!(sent_xml(&done[0]).contains("<error type='wait'><remote-server-timeout"));
}

#[test]
fn oversized_reply_is_refused() {
    let big = format!(r#"{{"body":"{}"}}"#, "x".repeat(4096));
    let server = serve(move |_| json(&big));
    let mut d = dispatcher(&server.url, |c| c.max_reply_size = 1024);
    d.submit(message(1));
    let done = collect(&d, 1);
    assert!(sent_xml(&done[0]).contains("internal-server-error"));
    assert!(done[0].log.as_ref().unwrap().1.contains("larger than"));
}

#[test]
fn full_queue_refuses_at_once() {
    let server = serve(|_| Answer { status: 204, delay: Duration::from_millis(300), ..json("") });
    let mut d = dispatcher(&server.url, |c| {
        c.workers = 1;
        c.queue_size = 2;
    });
    d.submit(message(0));
    thread::sleep(Duration::from_millis(50));
    for n in 1..6 {
        d.submit(message(n));
    }
    // 1 in flight, 2 queued: 3 refused without waiting for the webhook.
    let early = d.drain();
    assert_eq!(early.len(), 3, "{early:?}");
    for c in &early {
        assert!(sent_xml(c).contains("<error type='wait'><resource-constraint"));
    }
    let rest = collect(&d, 3);
    assert!(rest.iter().all(|c| c.send.is_none()));
}

#[test]
fn close_answers_everything_pending_without_waiting_for_the_webhook() {
    let server = serve(|_| Answer { delay: Duration::from_secs(5), ..json("{}") });
    let mut d = dispatcher(&server.url, |c| c.workers = 2);
    for n in 0..10 {
        d.submit(message(n));
    }
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let (done, detached) = d.close(Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(done.len(), 10);
    assert!(done.iter().all(|c| sent_xml(c).contains("<error type='wait'><service-unavailable")));
    assert_eq!(detached, 2, "both workers are stuck in a 5 s request");
    // After closing, a submit is answered at once too.
    d.submit(message(11));
    assert_eq!(d.drain().len(), 1);
}

#[test]
fn close_joins_idle_workers() {
    let server = serve(|_| json("{}"));
    let mut d = dispatcher(&server.url, |c| c.workers = 4);
    let (done, detached) = d.close(Duration::from_secs(2));
    assert!(done.is_empty());
    assert_eq!(detached, 0);
}

#[test]
fn wakeup_fd_is_readable_only_while_completions_wait() {
    let server = serve(|_| json(r#"{"body":"x"}"#));
    let mut d = dispatcher(&server.url, |_| {});
    let fd = d.fd();
    let readable = || crate::wakeup::tests::take_byte(fd);
    assert!(!readable());
    d.submit(message(1));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !readable() {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(2));
    }
    // The byte was taken by the probe above; draining still finds the completion.
    assert_eq!(d.drain().len(), 1);
    assert!(!readable());
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn from_of(seen: &Seen) -> String {
    let v: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    v["from"].as_str().unwrap().to_owned()
}

fn message_from(sender: usize, n: usize) -> Incoming {
    Incoming { from: Some(format!("user{sender}@localhost/r")), id: Some(format!("s{sender}-{n}")), ..message(n) }
}

/// Runs `count` messages from each of `senders` senders through a slow webhook and returns, per
/// sender, the largest number of its requests the webhook was handling at once.
fn peak_concurrency_per_sender(ordered: bool, senders: usize, count: usize) -> (Vec<usize>, Server) {
    let active: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let tracker = Arc::clone(&active);
    let server = serve(move |request| {
        let from = from_of(request);
        {
            let mut a = tracker.lock().unwrap();
            let entry = a.entry(from.clone()).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(entry.0);
        }
        thread::sleep(Duration::from_millis(15));
        tracker.lock().unwrap().get_mut(&from).unwrap().0 -= 1;
        Answer { status: 204, ..json("") }
    });
    let mut d = dispatcher(&server.url, |c| {
        c.workers = 4;
        c.ordered = ordered;
    });
    for n in 0..count {
        for sender in 0..senders {
            d.submit(message_from(sender, n));
        }
    }
    collect(&d, senders * count);
    let peaks = (0..senders).map(|s| active.lock().unwrap()[&format!("user{s}@localhost/r")].1).collect();
    (peaks, server)
}

#[test]
fn one_sender_is_served_in_order_one_at_a_time() {
    let (peaks, server) = peak_concurrency_per_sender(true, 3, 12);
    assert_eq!(peaks, [1, 1, 1]);
    // The webhook saw each sender's messages in the order they were submitted.
    let seen = server.seen.lock().unwrap();
    for sender in 0..3 {
        let from = format!("user{sender}@localhost/r");
        let order: Vec<String> = seen
            .iter()
            .filter(|s| from_of(s) == from)
            .map(|s| serde_json::from_str::<serde_json::Value>(&s.body).unwrap()["body"].as_str().unwrap().to_owned())
            .collect();
        let expected: Vec<String> = (0..12).map(|n| format!("hello {n}")).collect();
        assert_eq!(order, expected);
    }
}

#[test]
fn without_ordering_one_sender_uses_every_worker() {
    let (peaks, _server) = peak_concurrency_per_sender(false, 1, 16);
    assert!(peaks[0] > 1, "peak concurrency {peaks:?}");
}

#[test]
fn different_senders_proceed_concurrently_when_ordered() {
    let server = serve(|_| Answer { status: 204, delay: Duration::from_millis(300), ..json("") });
    let mut d = dispatcher(&server.url, |c| c.workers = 4);
    let started = Instant::now();
    for sender in 0..4 {
        d.submit(message_from(sender, 0));
    }
    collect(&d, 4);
    assert!(started.elapsed() < Duration::from_millis(900), "took {:?}", started.elapsed());
}

#[test]
fn retries_503_with_the_same_delivery_id_then_replies() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let server = serve(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) < 2 {
            Answer { status: 503, ..json("") }
        } else {
            json(r#"{"body":"third time lucky"}"#)
        }
    });
    let mut d = dispatcher(&server.url, |c| c.retries = 2);
    d.submit(message(1));
    let done = collect(&d, 1);
    assert!(sent_xml(&done[0]).contains("third time lucky"));
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let ids: Vec<&str> = seen.iter().map(|s| header(s, "x-delivery-id").unwrap()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]) && !ids[0].is_empty());
    let counts: Vec<&str> = seen.iter().map(|s| header(s, "x-retry-count").unwrap()).collect();
    assert_eq!(counts, ["0", "1", "2"]);
}

#[test]
fn delivery_ids_differ_between_stanzas() {
    let server = serve(|_| Answer { status: 204, ..json("") });
    let mut d = dispatcher(&server.url, |_| {});
    d.submit(message(1));
    d.submit(message(2));
    collect(&d, 2);
    let seen = server.seen.lock().unwrap();
    assert_ne!(header(&seen[0], "x-delivery-id"), header(&seen[1], "x-delivery-id"));
}

#[test]
fn zero_retries_and_non_retryable_codes_answer_at_once() {
    let server = serve(|request| {
        let status = if request.body.contains("hello 1") { 503 } else { 500 };
        Answer { status, ..json("") }
    });
    let mut d = dispatcher(&server.url, |c| {
        c.retries = 0;
        c.ordered = false;
    });
    d.submit(message(1));
    collect(&d, 1);
    d.reconfigure(Config { retries: 5, ..d.config() }).unwrap();
    d.submit(message(2));
    let done = collect(&d, 1);
    assert!(sent_xml(&done[0]).contains("internal-server-error"));
    assert_eq!(server.seen.lock().unwrap().len(), 2, "neither 503 with retries=0 nor 500 is retried");
}

#[test]
fn retry_after_is_honoured() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let server = serve(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Answer { status: 429, headers: vec!["Retry-After: 1".into()], ..json("") }
        } else {
            Answer { status: 204, ..json("") }
        }
    });
    let mut d = dispatcher(&server.url, |_| {});
    let started = Instant::now();
    d.submit(message(1));
    let done = collect(&d, 1);
    assert_eq!(done[0].send, None);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn retries_stop_at_the_deadline() {
    let server = serve(|_| Answer { status: 503, ..json("") });
    let mut d = dispatcher(&server.url, |c| {
        c.retries = 100;
        c.timeout = Duration::from_millis(1200);
    });
    let started = Instant::now();
    d.submit(message(1));
    let done = collect(&d, 1);
    assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
    assert!(sent_xml(&done[0]).contains("Service temporarily unavailable"));
    let attempts = server.seen.lock().unwrap().len();
    let log = &done[0].log.as_ref().unwrap().1;
    assert!(log.ends_with(&format!("(after {attempts} attempts)")), "{log}");
    assert!((2..100).contains(&attempts), "{attempts} attempts");
}

#[test]
fn close_interrupts_a_backoff() {
    let server = serve(|_| Answer { status: 429, headers: vec!["Retry-After: 20".into()], ..json("") });
    let mut d = dispatcher(&server.url, |c| c.timeout = Duration::from_secs(60));
    d.submit(message(1));
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (done, detached) = d.close(Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!((done.len(), detached), (1, 0));
}

#[test]
fn requests_are_signed_and_carry_extra_headers() {
    let server = serve(|_| Answer { status: 204, ..json("") });
    let mut d = dispatcher(&server.url, |c| {
        c.secret = Some("It's a secret to everybody".into());
        c.headers = vec![("Authorization".into(), "Bearer abc".into())];
    });
    d.submit(message(1));
    collect(&d, 1);
    let seen = server.seen.lock().unwrap();
    let timestamp = header(&seen[0], "x-signature-timestamp").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(timestamp.parse::<u64>().unwrap()) < 10);
    let expected = crate::signing::sign(b"It's a secret to everybody", timestamp, seen[0].body.as_bytes());
    assert_eq!(header(&seen[0], "x-signature"), Some(expected.as_str()));
    assert_eq!(header(&seen[0], "authorization"), Some("Bearer abc"));
}

#[test]
fn reconfigure_keeps_everything_pending_and_applies_the_new_url() {
    let old = serve(|_| Answer { status: 204, delay: Duration::from_millis(100), ..json("") });
    let new = serve(|_| json(r#"{"body":"from the new webhook"}"#));
    let mut d = dispatcher(&old.url, |c| c.workers = 1);
    for n in 0..5 {
        d.submit(message_from(0, n));
    }
    thread::sleep(Duration::from_millis(30));
    d.reconfigure(Config { workers: 3, ..Config::with_url(&new.url).unwrap() }).unwrap();
    let done = collect(&d, 5);
    // The one in flight finished at the old URL; the queued ones went to the new one, in order.
    assert_eq!(done.iter().filter(|c| c.send.is_none()).count(), 1);
    assert_eq!(new.seen.lock().unwrap().len(), 4);
    let (_, detached) = d.close(Duration::from_secs(2));
    assert_eq!(detached, 0);
}

#[test]
fn answers_of_one_sender_come_back_in_order() {
    // Replies take a varying time; with several workers, a reply released too early would
    // overtake its predecessor's.
    let server = serve(|request| {
        let v: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        let n: u64 = v["body"].as_str().unwrap().trim_start_matches("hello ").parse().unwrap();
        Answer {
            delay: Duration::from_micros((n * 7919) % 3000),
            ..json(&serde_json::json!({ "body": v["body"] }).to_string())
        }
    });
    let mut d = dispatcher(&server.url, |c| c.workers = 4);
    for n in 0..60 {
        for sender in 0..3 {
            d.submit(message_from(sender, n));
        }
    }
    let done = collect(&d, 180);
    for sender in 0..3 {
        let to = format!("to='user{sender}@localhost/r'");
        let order: Vec<String> = done.iter().map(sent_xml).filter(|xml| xml.contains(&to)).collect();
        let expected: Vec<String> = (0..60)
            .map(|n| format!("<message type='chat' {to} from='echo@bot.localhost'><body>hello {n}</body></message>"))
            .collect();
        assert_eq!(order, expected);
    }
}

#[test]
fn the_deadline_counts_time_spent_in_the_queue() {
    let server = serve(|_| Answer { delay: Duration::from_millis(1500), ..json("{}") });
    let mut d = dispatcher(&server.url, |c| {
        c.workers = 1;
        c.timeout = Duration::from_millis(300);
    });
    let started = Instant::now();
    for n in 0..5 {
        d.submit(message(n));
    }
    let done = collect(&d, 5);
    // One request hangs until the deadline; the four behind it expired meanwhile and are
    // answered at once instead of each waiting a deadline of its own.
    assert!(started.elapsed() < Duration::from_millis(1000), "took {:?}", started.elapsed());
    assert!(done.iter().all(|c| sent_xml(c).contains("<error type='wait'><remote-server-timeout")));
    assert!(done.iter().any(|c| c.log.as_ref().unwrap().1.contains("in the queue")));
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}
