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

mod memory;
mod stream;

/// What the test server answers: status, extra header lines, body, whether to send a
/// Content-Length (without one it closes the connection, as `php -S` does), and a delay.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<String>,
    body: String,
    content_length: bool,
    delay: Duration,
    /// Send the body one byte at a time, this long apart (after `delay` and the headers).
    trickle: Option<Duration>,
}

fn json(body: &str) -> Answer {
    Answer {
        status: 200,
        headers: vec!["Content-Type: application/json".into()],
        body: body.into(),
        content_length: true,
        delay: Duration::ZERO,
        trickle: None,
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
    /// Connections the client has not closed yet.
    open: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A small HTTP/1.1 server with keep-alive; `respond` decides the answer from the request body.
fn serve(respond: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let respond = Arc::new(respond);
    let (c, o, s) = (Arc::clone(&connections), Arc::clone(&open), Arc::clone(&seen));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            c.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let (respond, seen, open) = (Arc::clone(&respond), Arc::clone(&s), Arc::clone(&o));
            thread::spawn(move || {
                handle_connection(stream, &*respond, &seen);
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Server { url, connections, open, seen }
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
            out.push_str(&format!("Content-Length: {}\r\n\r\n", answer.body.len()));
        } else {
            out.push_str("Connection: close\r\n\r\n");
        }
        if writer.write_all(out.as_bytes()).is_err() {
            return;
        }
        for chunk in answer.body.as_bytes().chunks(if answer.trickle.is_some() { 1 } else { usize::MAX }) {
            if let Some(pause) = answer.trickle {
                thread::sleep(pause);
            }
            if writer.write_all(chunk).and_then(|()| writer.flush()).is_err() {
                return;
            }
        }
        if !answer.content_length {
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
        chat_states: false,
        receipt_request: false,
        room: None,
    }
}

fn dispatcher(url: &str, adjust: impl FnOnce(&mut Config)) -> Dispatcher {
    let mut config = Config::with_url(url).unwrap();
    adjust(&mut config);
    Dispatcher::new(config).unwrap()
}

/// Only a guard against a test hanging forever; no test relies on it for timing.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Waits for `condition` to hold: an event, not a guessed delay.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let give_up = Instant::now() + HANG_GUARD;
    while !condition() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// The completions of stanzas, without the log lines that report the webhook's state.
fn outcomes(d: &Dispatcher) -> Vec<Completion> {
    let (mut list, _) = d.drain_with_status();
    list.retain(|c| c.send.is_some() || !is_status_log(c));
    list
}

/// Drains until `n` completions arrived. More may still come later (the component is still
/// running): a test's last collection uses [`collect_last`], which proves that none does.
fn collect(d: &Dispatcher, n: usize) -> Vec<Completion> {
    let mut all = Vec::new();
    wait_until(&format!("{n} completions"), || {
        all.extend(outcomes(d));
        all.len() >= n
    });
    assert_eq!(all.len(), n, "more completions than stanzas: {all:?}");
    all
}

/// Drains until `n` completions arrived, then proves that nothing more ever comes: once no
/// stanza is pending, the dispatcher is closed (nothing left for it to answer) and every
/// thread that could still produce a completion (workers, keeper) has exited; only then is the
/// list final. A late duplicate answer, from whichever thread, is in it.
fn collect_last(d: &mut Dispatcher, n: usize) -> Vec<Completion> {
    let mut all = collect(d, n);
    wait_until("no stanza pending", || d.pending() == 0);
    let closed = d.close();
    all.extend(closed.into_iter().filter(|c| c.send.is_some() || !is_status_log(c)));
    wait_until("every thread exited", || d.threads_alive() == 0);
    all.extend(outcomes(d));
    assert_eq!(all.len(), n, "more completions than stanzas: {all:?}");
    all
}

fn is_status_log(c: &Completion) -> bool {
    c.log.as_ref().is_some_and(|(_, l)| l.starts_with("The webhook "))
}

/// Holds the webhook's answers until the test opens it, counting the requests held.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: std::sync::Condvar,
    held: AtomicUsize,
    peak: AtomicUsize,
}

impl Gate {
    fn pass(&self) {
        let now = self.held.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        self.held.fetch_sub(1, Ordering::SeqCst);
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait_held(&self, n: usize) {
        wait_until(&format!("{n} requests held at once"), || self.held.load(Ordering::SeqCst) >= n);
    }
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
    let mut d = dispatcher(&server.url, |c| c.max_in_flight = 2);
    for n in 0..200 {
        d.submit(message(n));
    }
    let done = collect_last(&mut d, 200);
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
    assert_eq!(collect_last(&mut d, 1)[0].send, None);
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
    for c in collect_last(&mut d, 5) {
        assert!(sent_xml(&c).contains("<body>php style</body>"), "{c:?}");
    }
}

#[test]
fn refused_connection_is_a_connection_failure() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut d = dispatcher(&format!("http://127.0.0.1:{port}/"), |c| c.retry_window = Duration::ZERO);
    d.submit(message(1));
    let done = collect_last(&mut d, 1);
    let xml = sent_xml(&done[0]);
    assert!(xml.contains("<error type='cancel'><remote-server-timeout"), "{xml}");
    assert!(xml.contains("Connection failure"), "{xml}");
    assert!(done[0].log.as_ref().unwrap().1.contains("could not reach the webhook"));
}

/// Found by the end-to-end suite under load: with no retry window, one 502 began an outage that
/// answered the next stanza with the same 502 without posting it, and nothing ended it.
#[test]
fn without_a_retry_window_every_stanza_is_posted() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let server = serve(move |_| match counted.fetch_add(1, Ordering::SeqCst) {
        0 => Answer { status: 502, ..json("") },
        _ => json(r#"{"body":"back"}"#),
    });
    let mut d = dispatcher(&server.url, |c| c.retry_window = Duration::ZERO);
    d.submit(message(1));
    wait_until("the 502 is answered", || calls.load(Ordering::SeqCst) == 1 && d.pending() == 0);
    d.submit(message(2));
    let done = collect_last(&mut d, 2);
    assert!(sent_xml(&done[0]).contains("Bad gateway"), "{}", sent_xml(&done[0]));
    assert!(sent_xml(&done[1]).contains("<body>back</body>"), "{}", sent_xml(&done[1]));
    assert!(!d.figures().endpoint_down);
}

#[test]
fn slow_webhook_times_out() {
    let server = serve(|_| Answer { delay: Duration::from_secs(600), ..json("{}") });
    let mut d = dispatcher(&server.url, |c| c.timeout = Duration::from_millis(200));
    d.submit(message(1));
    let done = collect_last(&mut d, 1);
    assert!(sent_xml(&done[0]).contains("<error type='wait'><remote-server-timeout"));
}

/// The deadline bounds the exchange as a whole: headers that come late and a body that follows
/// slowly are cut at the deadline. (With a budget per phase, the body would have been read to
/// the end here: it is complete 0.6 s after the headers, within a fresh 1 s.)
#[test]
fn the_deadline_holds_across_slow_headers_and_a_trickled_body() {
    let body = r#"{"body":"late"}"#; // 15 bytes, 40 ms apart: 0.6 s
    let server = serve(move |_| Answer {
        delay: Duration::from_millis(800),
        trickle: Some(Duration::from_millis(40)),
        ..json(body)
    });
    let mut d = dispatcher(&server.url, |c| c.timeout = Duration::from_secs(1));
    d.submit(message(1));
    let done = collect_last(&mut d, 1);
    assert!(sent_xml(&done[0]).contains("<error type='wait'><remote-server-timeout"), "{:?}", done[0]);
}

#[test]
fn oversized_reply_is_refused() {
    let big = format!(r#"{{"body":"{}"}}"#, "x".repeat(4096));
    let server = serve(move |_| json(&big));
    let mut d = dispatcher(&server.url, |c| c.max_reply_size = 1024);
    d.submit(message(1));
    let done = collect_last(&mut d, 1);
    assert!(sent_xml(&done[0]).contains("internal-server-error"));
    assert!(done[0].log.as_ref().unwrap().1.contains("larger than"));
}

#[test]
fn full_queue_refuses_at_once() {
    let (server, gate) = gated(Answer { status: 204, ..json("") });
    let mut d = dispatcher(&server.url, |c| {
        c.max_in_flight = 1;
        c.queue_size = 2;
    });
    d.submit(message(0));
    gate.wait_held(1);
    for n in 1..6 {
        d.submit(message(n));
    }
    // 1 in flight, 2 queued: 3 refused without waiting for the webhook.
    let early = d.drain();
    assert_eq!(early.len(), 3, "{early:?}");
    for c in &early {
        assert!(sent_xml(c).contains("<error type='wait'><resource-constraint"));
    }
    gate.open();
    let rest = collect_last(&mut d, 3);
    assert!(rest.iter().all(|c| c.send.is_none()));
}

#[test]
fn close_answers_everything_pending_and_interrupts_requests_in_flight() {
    let (server, gate) = gated(json("{}")); // never opened: the webhook hangs
    let mut d = dispatcher(&server.url, |c| c.max_in_flight = 2);
    for n in 0..10 {
        d.submit(message(n));
    }
    gate.wait_held(2);
    // Returns without waiting for the requests: if it waited, this test would hang.
    let done = d.close();
    assert_eq!(done.len(), 10);
    assert!(done.iter().all(|c| sent_xml(c).contains("<error type='wait'><service-unavailable")));
    // The requests in flight were interrupted, so the workers are gone and, once the webhook
    // gets to read again, it finds its connections closed.
    wait_until("every worker exited", || d.figures().workers == 0);
    gate.open();
    wait_until("every connection closed", || server.open.load(Ordering::SeqCst) == 0);
    // After closing, a submit is answered at once too.
    d.submit(message(11));
    assert_eq!(d.drain().len(), 1);
}

/// `close` interrupts a request on a client the component has since replaced (a new URL on
/// reload), not only on the current one: with a timeout of an hour, a request left running
/// would keep its worker past the test's hang guard.
#[test]
fn close_interrupts_requests_on_a_client_replaced_by_reconfigure() {
    let (old, gate) = gated(json("{}")); // never opened: the webhook hangs
    let new = serve(|_| json("{}"));
    let mut d = dispatcher(&old.url, |c| c.timeout = Duration::from_secs(3600));
    d.submit(message(1));
    gate.wait_held(1);
    d.reconfigure(Config { timeout: Duration::from_secs(3600), ..Config::with_url(&new.url).unwrap() }).unwrap();
    assert_eq!(d.close().len(), 1);
    wait_until("every thread exited", || d.threads_alive() == 0);
    gate.open();
    wait_until("the old webhook's connection closed", || old.open.load(Ordering::SeqCst) == 0);
}

/// The same for a client replaced when the pool shrank back to its warm set while a request
/// was still in flight.
#[test]
fn close_interrupts_requests_on_a_client_replaced_after_a_burst() {
    let gate = Arc::new(Gate::default());
    let g = Arc::clone(&gate);
    let server = serve(move |request| {
        if from_of(request) == "user0@localhost/r" {
            g.pass(); // never opened: hangs
        }
        Answer { status: 204, ..json("") }
    });
    let mut d = dispatcher(&server.url, |c| {
        c.timeout = Duration::from_secs(3600);
        c.warm_workers = 1;
        c.idle_timeout = Duration::from_millis(50);
    });
    d.submit(message_from(0, 0));
    gate.wait_held(1);
    d.submit(message_from(1, 0));
    collect(&d, 1);
    // The second worker idles out: the pool is back to its warm set, and the client is replaced.
    wait_until("one worker left", || d.figures().workers == 1);
    assert_eq!(d.close().len(), 1);
    wait_until("every thread exited", || d.threads_alive() == 0);
    gate.open();
    wait_until("every connection closed", || server.open.load(Ordering::SeqCst) == 0);
}

#[test]
fn close_ends_idle_workers() {
    let server = serve(|_| json("{}"));
    let mut d = dispatcher(&server.url, |c| c.warm_workers = 4);
    assert_eq!(d.figures().workers, 4);
    assert!(d.close().is_empty());
    wait_until("every worker exited", || d.figures().workers == 0);
}

#[test]
fn wakeup_fd_is_readable_only_while_completions_wait() {
    let server = serve(|_| json(r#"{"body":"x"}"#));
    let mut d = dispatcher(&server.url, |_| {});
    let fd = d.fd();
    let readable = || crate::wakeup::tests::take_byte(fd);
    assert!(!readable());
    d.submit(message(1));
    wait_until("the descriptor is readable", readable);
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

fn body_of(seen: &Seen) -> String {
    let v: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    v["body"].as_str().unwrap().to_owned()
}

fn message_from(sender: usize, n: usize) -> Incoming {
    Incoming { from: Some(format!("user{sender}@localhost/r")), id: Some(format!("s{sender}-{n}")), ..message(n) }
}

/// Runs `count` messages from each of `senders` senders through a webhook that holds each
/// request until another arrives or a short while passes, and returns, per sender, the largest
/// number of its requests the webhook was handling at once.
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
        c.max_in_flight = 4;
        c.ordered = ordered;
    });
    for n in 0..count {
        for sender in 0..senders {
            d.submit(message_from(sender, n));
        }
    }
    collect_last(&mut d, senders * count);
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
        let order: Vec<String> = seen.iter().filter(|s| from_of(s) == from).map(body_of).collect();
        let expected: Vec<String> = (0..12).map(|n| format!("hello {n}")).collect();
        assert_eq!(order, expected);
    }
}

#[test]
fn without_ordering_one_sender_is_posted_concurrently() {
    let (server, gate) = gated(Answer { status: 204, ..json("") });
    let mut d = dispatcher(&server.url, |c| c.ordered = false);
    for n in 0..16 {
        d.submit(message_from(0, n));
    }
    gate.wait_held(16);
    gate.open();
    collect_last(&mut d, 16);
}

/// Concurrency follows demand: with the default limit, a webhook holding every request sees
/// all of them at once, one worker each; after the burst the pool shrinks back to the warm set
/// and the connections the burst opened are closed.
#[test]
fn the_pool_grows_with_demand_and_shrinks_back_when_idle() {
    let (server, gate) = gated(Answer { status: 204, ..json("") });
    let mut d = dispatcher(&server.url, |c| {
        c.warm_workers = 2;
        c.idle_timeout = Duration::from_millis(200);
    });
    assert_eq!(d.figures().workers, 2);
    for sender in 0..150 {
        d.submit(message_from(sender, 0));
    }
    gate.wait_held(150);
    assert_eq!(d.figures().in_flight, 150);
    gate.open();
    collect(&d, 150);
    wait_until("back to the warm set", || d.figures().workers == 2);
    wait_until("the burst's connections closed", || server.open.load(Ordering::SeqCst) == 0);
    // The warm set still serves.
    d.submit(message(1));
    collect_last(&mut d, 1);
}

#[test]
fn the_limit_on_requests_in_flight_holds() {
    let (server, gate) = gated(Answer { status: 204, ..json("") });
    let mut d = dispatcher(&server.url, |c| c.max_in_flight = 3);
    for sender in 0..20 {
        d.submit(message_from(sender, 0));
    }
    gate.wait_held(3);
    assert_eq!(d.figures(), Figures { queued: 17, in_flight: 3, workers: 3, idle_workers: 0, endpoint_down: false });
    gate.open();
    collect_last(&mut d, 20);
    assert_eq!(gate.peak.load(Ordering::SeqCst), 3);
}

#[test]
fn an_unreachable_webhook_is_probed_not_hammered_and_nothing_is_lost() {
    // Down (503 from its proxy) until the test says otherwise.
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let down_requests = Arc::new(AtomicUsize::new(0));
    let (u, dr) = (Arc::clone(&up), Arc::clone(&down_requests));
    let server = serve(move |request| {
        if u.load(Ordering::SeqCst) {
            json(&serde_json::json!({ "body": body_of(request) }).to_string())
        } else {
            dr.fetch_add(1, Ordering::SeqCst);
            Answer { status: 503, ..json("") }
        }
    });
    let mut d = dispatcher(&server.url, |c| c.retry_window = Duration::from_secs(600));
    for n in 0..5 {
        for sender in 0..20 {
            d.submit(message_from(sender, n));
        }
    }
    wait_until("the outage is noticed", || d.figures().endpoint_down);
    // While down, only one probe at a time: a handful of requests, not one per stanza.
    let before = down_requests.load(Ordering::SeqCst);
    wait_until("three more probes", || down_requests.load(Ordering::SeqCst) >= before + 3);
    // The first attempt of each line's head (20), and the probes (one at a time, the first at
    // once): far fewer than the 100 stanzas held, let alone one per stanza per retry.
    let while_down = down_requests.load(Ordering::SeqCst);
    assert!(while_down < 40, "{while_down} requests while down for 100 stanzas");
    assert!(outcomes(&d).is_empty(), "nothing is answered while held");
    up.store(true, Ordering::SeqCst);
    let done = collect_last(&mut d, 100);
    assert_echoed_in_order(&done, 20, 5);
    assert!(!d.figures().endpoint_down);
    // Every stanza answered was posted with its delivery id; a retried one kept it.
    let seen = server.seen.lock().unwrap();
    let mut ids: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in seen.iter() {
        ids.entry(header(s, "x-delivery-id").unwrap()).or_default().push(header(s, "x-retry-count").unwrap());
    }
    assert_eq!(ids.len(), 100);
    for counts in ids.values() {
        let expected: Vec<String> = (0..counts.len()).map(|n| n.to_string()).collect();
        assert_eq!(counts, &expected);
    }
}

#[test]
fn a_webhook_down_longer_than_the_retry_window_gets_every_stanza_an_error() {
    let server = serve(|_| Answer { status: 502, ..json("") });
    let mut d = dispatcher(&server.url, |c| c.retry_window = Duration::from_millis(300));
    for sender in 0..30 {
        d.submit(message_from(sender, 0));
        d.submit(message_from(sender, 1));
    }
    let done = collect_last(&mut d, 60);
    assert!(done.iter().all(|c| sent_xml(c).contains("<error type='cancel'><remote-server-timeout")));
    assert!(done.iter().all(|c| sent_xml(c).contains("Bad gateway")));
    // Nothing after the end: each stanza had exactly one outcome.
    wait_until("the component stays idle", || d.pending() == 0);
    assert!(outcomes(&d).is_empty());
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
    let mut d = dispatcher(&server.url, |_| {});
    d.submit(message(1));
    let done = collect_last(&mut d, 1);
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
    collect_last(&mut d, 2);
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
        c.retries = Some(0);
        c.ordered = false;
    });
    d.submit(message(1));
    collect(&d, 1);
    d.reconfigure(Config { retries: Some(5), ..d.config() }).unwrap();
    d.submit(message(2));
    let done = collect_last(&mut d, 1);
    assert!(sent_xml(&done[0]).contains("internal-server-error"));
    assert_eq!(server.seen.lock().unwrap().len(), 2, "neither 503 with retries=0 nor 500 is retried");
}

fn retry_after_then_204(status: u16) -> (Server, Arc<Mutex<Vec<Instant>>>) {
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let t = Arc::clone(&times);
    let server = serve(move |_| {
        let mut times = t.lock().unwrap();
        times.push(Instant::now());
        if times.len() == 1 {
            Answer { status, headers: vec!["Retry-After: 1".into()], ..json("") }
        } else {
            Answer { status: 204, ..json("") }
        }
    });
    (server, times)
}

#[test]
fn retry_after_is_honoured_on_429_and_503() {
    for status in [429, 503] {
        let (server, times) = retry_after_then_204(status);
        let mut d = dispatcher(&server.url, |_| {});
        d.submit(message(1));
        assert_eq!(collect_last(&mut d, 1)[0].send, None);
        let times = times.lock().unwrap();
        assert_eq!(times.len(), 2);
        assert!(times[1] - times[0] >= Duration::from_secs(1), "{status}: retried after {:?}", times[1] - times[0]);
    }
}

#[test]
fn a_hostile_retry_after_is_capped_by_the_deadline() {
    let server =
        serve(|_| Answer { status: 429, headers: vec!["Retry-After: 18446744073709551615".into()], ..json("") });
    let mut d = dispatcher(&server.url, |c| c.timeout = Duration::from_millis(300));
    d.submit(message(1));
    let done = collect_last(&mut d, 1);
    let log = &done[0].log.as_ref().unwrap().1;
    assert!(log.contains("webhook answered HTTP 429"), "{log}");
    assert!(!log.contains("internal error"), "{log}");
}

#[test]
fn retries_stop_at_the_deadline() {
    let server = serve(|_| Answer { status: 503, ..json("") });
    let mut d = dispatcher(&server.url, |c| c.timeout = Duration::from_millis(1200));
    d.submit(message(1));
    let done = collect_last(&mut d, 1);
    assert!(sent_xml(&done[0]).contains("The webhook did not answer in time"), "{:?}", done[0]);
    let attempts = server.seen.lock().unwrap().len();
    let log = &done[0].log.as_ref().unwrap().1;
    assert!(log.contains("component_post_timeout ran out while the webhook was unreachable"), "{log}");
    assert!(log.contains("(last failure: webhook answered HTTP 503"), "{log}");
    assert!((2..100).contains(&attempts), "{attempts} attempts");
}

#[test]
fn close_interrupts_a_wait_for_retry_after() {
    let server = serve(|_| Answer { status: 429, headers: vec!["Retry-After: 600".into()], ..json("") });
    let mut d = dispatcher(&server.url, |c| c.timeout = Duration::from_secs(3600));
    d.submit(message(1));
    wait_until("the first attempt", || server.seen.lock().unwrap().len() == 1);
    assert_eq!(d.close().len(), 1);
    wait_until("every worker exited", || d.figures().workers == 0);
}

#[test]
fn requests_are_signed_and_carry_extra_headers() {
    let server = serve(|_| Answer { status: 204, ..json("") });
    let mut d = dispatcher(&server.url, |c| {
        c.secret = Some("It's a secret to everybody".into());
        c.headers = vec![("Authorization".into(), "Bearer abc".into())];
    });
    d.submit(message(1));
    collect_last(&mut d, 1);
    let seen = server.seen.lock().unwrap();
    let timestamp = header(&seen[0], "x-signature-timestamp").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(timestamp.parse::<u64>().unwrap()) < 10);
    let delivery_id = header(&seen[0], "x-delivery-id").unwrap();
    assert_eq!(header(&seen[0], "x-retry-count"), Some("0"));
    let expected =
        crate::signing::sign(b"It's a secret to everybody", timestamp, delivery_id, 0, seen[0].body.as_bytes());
    assert_eq!(header(&seen[0], "x-signature"), Some(expected.as_str()));
    assert_eq!(header(&seen[0], "authorization"), Some("Bearer abc"));
}

#[test]
fn reconfigure_keeps_everything_pending_and_applies_the_new_url() {
    let (old, gate) = gated(Answer { status: 204, ..json("") });
    let new = serve(|_| json(r#"{"body":"from the new webhook"}"#));
    let mut d = dispatcher(&old.url, |c| c.max_in_flight = 1);
    for n in 0..5 {
        d.submit(message_from(0, n));
    }
    gate.wait_held(1);
    d.reconfigure(Config { max_in_flight: 3, ..Config::with_url(&new.url).unwrap() }).unwrap();
    gate.open();
    let done = collect_last(&mut d, 5);
    // The one in flight finished at the old URL; the queued ones went to the new one, in order.
    assert!(done[0].send.is_none());
    assert!(done[1..].iter().all(|c| sent_xml(c).contains("from the new webhook")));
    let bodies: Vec<String> = new.seen.lock().unwrap().iter().map(body_of).collect();
    assert_eq!(bodies, ["hello 1", "hello 2", "hello 3", "hello 4"]);
}

#[test]
fn reconfigure_to_the_same_url_keeps_the_connections() {
    let server = serve(|_| Answer { status: 204, ..json("") });
    let mut d = dispatcher(&server.url, |_| {});
    d.submit(message(1));
    collect(&d, 1);
    d.reconfigure(Config { timeout: Duration::from_secs(7), ..d.config() }).unwrap();
    d.submit(message(2));
    collect_last(&mut d, 1);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

/// Each of `senders` got the echoes of its `count` messages (`hello 0` …), in order.
fn assert_echoed_in_order(done: &[Completion], senders: usize, count: usize) {
    for sender in 0..senders {
        let to = format!("to='user{sender}@localhost/r'");
        let order: Vec<String> = done.iter().map(sent_xml).filter(|xml| xml.contains(&to)).collect();
        let expected: Vec<String> = (0..count)
            .map(|n| format!("<message type='chat' {to} from='echo@bot.localhost'><body>hello {n}</body></message>"))
            .collect();
        assert_eq!(order, expected, "sender {sender}");
    }
}

#[test]
fn answers_of_one_sender_come_back_in_order() {
    // Replies take a varying time; with several workers, a reply released too early would
    // overtake its predecessor's.
    let server = serve(|request| {
        let body = body_of(request);
        let n: u64 = body.trim_start_matches("hello ").parse().unwrap();
        Answer {
            delay: Duration::from_micros((n * 7919) % 3000),
            ..json(&serde_json::json!({ "body": body }).to_string())
        }
    });
    let mut d = dispatcher(&server.url, |c| c.max_in_flight = 4);
    for n in 0..60 {
        for sender in 0..3 {
            d.submit(message_from(sender, n));
        }
    }
    let done = collect_last(&mut d, 180);
    assert_echoed_in_order(&done, 3, 60);
}

/// A stanza that waits for a worker (the limit is reached) is answered at its deadline by the
/// keeper, even though the request ahead of it never ends on its own.
#[test]
fn the_deadline_counts_time_spent_in_the_queue() {
    let (server, gate) = gated(json("{}")); // never opened
    let mut d = dispatcher(&server.url, |c| {
        c.max_in_flight = 1;
        c.timeout = Duration::from_millis(300);
    });
    for sender in 0..5 {
        d.submit(message_from(sender, 0));
    }
    let done = collect_last(&mut d, 5);
    assert!(done.iter().all(|c| sent_xml(c).contains("<error type='wait'><remote-server-timeout")));
    assert_eq!(done.iter().filter(|c| c.log.as_ref().unwrap().1.contains("in the queue")).count(), 4);
    assert_eq!(server.seen.lock().unwrap().len(), 1);
    gate.open();
}

/// A stanza that becomes ready only when its predecessor on its line completes, and then finds
/// every worker busy, is answered at its own deadline: the keeper is told of the new, earlier
/// deadline rather than noticing it on its next round, up to a timeout later.
///
/// How it is told apart without timing anything: A1 (behind A0) is due at `s + T`; B0, posted
/// `T/2` later to a webhook that never answers, is cut by its own request's deadline at
/// `b + T`. The keeper is made to plan its next round (a reconfiguration) `T/4` after B0,
/// while nothing is ready, so a keeper that is not told wakes at `b + T/4 + T`, after B0's
/// timeout. A1's answer must come before B0's.
#[test]
fn a_stanza_released_behind_a_busy_pool_is_answered_at_its_deadline() {
    const T: Duration = Duration::from_secs(2);
    let gate = Arc::new(Gate::default());
    let g = Arc::clone(&gate);
    let server = serve(move |request| {
        if from_of(request) == "user0@localhost/r" {
            g.pass();
            Answer { status: 204, ..json("") }
        } else {
            Answer { delay: Duration::from_secs(600), ..json("{}") }
        }
    });
    let mut d = dispatcher(&server.url, |c| {
        c.max_in_flight = 2;
        c.warm_workers = 0;
        c.timeout = T;
        c.chat_states = false;
    });
    let pause = |d: Duration| {
        let from = Instant::now();
        wait_until("a pause", || from.elapsed() >= d);
    };
    d.submit(message_from(0, 0));
    d.submit(message_from(0, 1)); // A1: waits behind A0
    gate.wait_held(1);
    pause(T / 2);
    d.submit(message_from(1, 0)); // B0: in flight until its deadline
    wait_until("A0 and B0 in flight", || d.figures().in_flight == 2);
    pause(T / 4);
    d.reconfigure(d.config()).unwrap(); // the keeper plans its next round now: nothing is ready
    d.submit(message_from(2, 0)); // C0: ready, taken by A0's worker when A0 completes
    gate.open();
    let done = collect_last(&mut d, 4);
    let position = |to: &str| {
        done.iter()
            .position(|c| sent_xml(c).contains(&format!("to='{to}'")) && sent_xml(c).contains("remote-server-timeout"))
            .unwrap_or_else(|| panic!("no timeout for {to}: {done:?}"))
    };
    let (a1, b0) = (position("user0@localhost/r"), position("user1@localhost/r"));
    assert!(done[a1].log.as_ref().unwrap().1.contains("in the queue"), "{:?}", done[a1]);
    assert!(a1 < b0, "A1 was answered after B0, whose deadline is T/2 later: {done:?}");
}

fn chatty(n: usize) -> Incoming {
    Incoming { chat_states: true, ..message(n) }
}

const COMPOSING: &str = "<message to='user1@localhost/r' from='echo@bot.localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>";
const ACTIVE: &str = "<message to='user1@localhost/r' from='echo@bot.localhost' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>";

/// A webhook that answers `answer` once the test opens its gate.
fn gated(answer: Answer) -> (Server, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let g = Arc::clone(&gate);
    (
        serve(move |_| {
            g.pass();
            answer.clone()
        }),
        gate,
    )
}

fn quick(c: &mut Config) {
    c.chat_state_delay = Duration::from_millis(50);
}

#[test]
fn a_slow_answer_is_preceded_by_composing_and_carries_active() {
    let (server, gate) = gated(json(r#"{"body":"thought about it"}"#));
    let mut d = dispatcher(&server.url, quick);
    d.submit(chatty(1));
    let composing = collect(&d, 1);
    assert_eq!(sent_xml(&composing[0]), COMPOSING);
    gate.open();
    let reply = collect_last(&mut d, 1);
    assert_eq!(
        sent_xml(&reply[0]),
        "<message type='chat' to='user1@localhost/r' from='echo@bot.localhost'><body>thought about it</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    );
}

#[test]
fn a_slow_answer_without_a_reply_is_followed_by_active() {
    for answer in [Answer { status: 204, ..json("") }, Answer { status: 500, ..json("") }] {
        let (server, gate) = gated(answer);
        let mut d = dispatcher(&server.url, quick);
        d.submit(chatty(1));
        assert_eq!(sent_xml(&collect(&d, 1)[0]), COMPOSING);
        gate.open();
        let after: Vec<String> = collect_last(&mut d, 2).iter().map(sent_xml).collect();
        assert!(!after[0].contains("chatstates"), "{after:?}");
        assert_eq!(after[1], ACTIVE);
    }
}

#[test]
fn a_fast_answer_gets_no_notification_only_active_in_the_reply() {
    let server = serve(|_| json(r#"{"body":"quick"}"#));
    let mut d = dispatcher(&server.url, |c| c.chat_state_delay = Duration::from_secs(3600));
    d.submit(chatty(1));
    let done = collect(&d, 1);
    assert!(sent_xml(&done[0])
        .ends_with("<body>quick</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"));
    d.submit(chatty(2));
    collect_last(&mut d, 1);
    wait_until("idle", || d.pending() == 0);
    assert!(d.drain().is_empty());
}

#[test]
fn no_chat_states_for_senders_without_them_or_with_the_option_off() {
    for (incoming, on) in [(message(1), true), (chatty(1), false)] {
        let (server, gate) = gated(json(r#"{"body":"plain"}"#));
        let mut d = dispatcher(&server.url, |c| {
            quick(c);
            c.chat_states = on;
        });
        d.submit(incoming);
        gate.wait_held(1);
        // The sentinel, instead of a guessed wait: a sender who wants chat states (with the
        // option on from now), whose <composing/> falls due after user1's would have. When it
        // comes, user1's would have come too.
        d.reconfigure(Config { chat_states: true, ..d.config() }).unwrap();
        d.submit(chatty(2));
        let composing = collect(&d, 1);
        assert_eq!(sent_xml(&composing[0]), COMPOSING.replace("user1", "user2"));
        gate.open();
        let done = collect_last(&mut d, 2);
        let to_user1: Vec<String> = done.iter().map(sent_xml).filter(|xml| xml.contains("to='user1@")).collect();
        assert_eq!(to_user1.len(), 1, "no <composing/> before the reply: {done:?}");
        if on {
            // Its sender did not announce chat states: none in the reply either. (With the
            // option off, the reply is sent after the sentinel turned it on, with <active/>.)
            assert!(!to_user1[0].contains("chatstates"), "{to_user1:?}");
        }
    }
}

#[test]
fn an_outage_is_reported_when_it_begins_and_ends() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let server = serve(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) < 3 {
            Answer { status: 502, ..json("") }
        } else {
            Answer { status: 204, ..json("") }
        }
    });
    let mut d = dispatcher(&server.url, |_| {});
    d.submit(message(1));
    let mut statuses = Vec::new();
    let mut answered = 0;
    wait_until("the answer after the outage", || {
        let (list, status) = d.drain_with_status();
        answered += list.iter().filter(|c| c.log.is_none()).count();
        statuses.extend(status);
        answered == 1
    });
    // Both changes may come in one batch; the status says the latest.
    let last = statuses.last().expect("a status");
    assert_eq!(*last, (Level::Info, "The webhook answers".to_string()));
    assert_eq!(d.stats().retries, 3);
    assert_eq!(d.stats().responses, [("5xx".to_string(), 3), ("2xx".to_string(), 1)]);
}

/// A PEM file of `n` certificates (their contents are not checked until a handshake).
fn pem_file(path: &std::path::Path, n: usize, tag: u8) {
    use base64::Engine;
    let mut pem = String::new();
    for i in 0..n {
        let der: Vec<u8> = (0..64).map(|b| b ^ tag ^ i as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str(&format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n"));
    }
    std::fs::write(path, pem).unwrap();
}

fn roots_of(d: &Dispatcher) -> Vec<Vec<u8>> {
    d.shared.settings().endpoint.roots.ders()
}

/// The only test that sets `SSL_CERT_FILE` (so no other reads it meanwhile): the system's
/// roots are found as OpenSSL finds them, an operator is told when there are none, and a CA
/// file changed on disk is read again at reconfiguration (reload), never in between.
#[test]
fn tls_roots_follow_ssl_cert_file_and_are_read_at_load_and_reload() {
    let dir = std::env::temp_dir().join(format!("component_http-roots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (system, extra) = (dir.join("system.pem"), dir.join("extra.pem"));
    pem_file(&system, 2, 0x10);
    pem_file(&extra, 1, 0x20);
    std::env::set_var("SSL_CERT_FILE", &system);
    std::env::remove_var("SSL_CERT_DIR");
    let https = |ca_file: bool| {
        let mut config = Config::with_url("https://127.0.0.1:9/hook").unwrap();
        config.ca_file = ca_file.then(|| extra.to_str().unwrap().to_owned());
        config
    };
    let logs = |d: &Dispatcher| -> Vec<(Level, String)> { d.drain().into_iter().filter_map(|c| c.log).collect() };

    // SSL_CERT_FILE's two, then the CA file's one.
    let mut d = Dispatcher::new(https(true)).unwrap();
    assert_eq!(roots_of(&d).len(), 3);
    assert_eq!(logs(&d), []);

    // Changed on disk: not applied by a fresh client after a burst, applied at reconfiguration.
    pem_file(&extra, 2, 0x30);
    d.shared.forget_idle_connections();
    assert_eq!(roots_of(&d).len(), 3);
    d.reconfigure(https(true)).unwrap();
    assert_eq!(roots_of(&d).len(), 4);
    d.close();

    // No system roots: said at load, as a warning beside a CA file, as an error without one.
    std::env::set_var("SSL_CERT_FILE", dir.join("missing.pem"));
    let d = Dispatcher::new(https(true)).unwrap();
    assert_eq!(roots_of(&d).len(), 2);
    let said = logs(&d);
    assert!(
        said.iter().any(|(level, line)| *level == Level::Warn
            && line.contains("no system CA certificates found in SSL_CERT_FILE")
            && line.contains("only component_post_ca_file's certificates are trusted")),
        "{said:?}"
    );
    let d = Dispatcher::new(https(false)).unwrap();
    let said = logs(&d);
    assert!(said.iter().any(|(level, line)| *level == Level::Error && line.contains("cannot be verified")), "{said:?}");
    std::env::remove_var("SSL_CERT_FILE");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_receipt_goes_before_the_reply_and_never_with_an_error() {
    let server = serve(|request| {
        if request.body.contains("\"fail\"") {
            Answer { status: 500, ..json("") }
        } else {
            json(r#"{"body":"ok"}"#)
        }
    });
    let mut d = dispatcher(&server.url, |_| {});
    let asking = |n: usize, body: &str| Incoming {
        receipt_request: true,
        body: Some(body.into()),
        xml: format!("<message><body>{body}</body></message>"),
        ..message_from(n, 1)
    };
    d.submit(asking(1, "hi"));
    let sent = collect(&d, 2);
    let receipt = sent_xml(&sent[0]);
    assert!(
        receipt.starts_with("<message id='") && receipt.ends_with(
            "-receipt' to='user1@localhost/r' from='echo@bot.localhost'><received xmlns='urn:xmpp:receipts' id='s1-1'/></message>"
        ),
        "{receipt}"
    );
    assert!(sent_xml(&sent[1]).contains("<body>ok</body>"), "{:?}", sent[1]);
    d.submit(asking(2, "fail"));
    let failed = collect_last(&mut d, 1);
    assert!(sent_xml(&failed[0]).contains("type='error'"), "{:?}", failed[0]);
}
