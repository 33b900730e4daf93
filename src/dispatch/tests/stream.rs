//! Streamed answers through the dispatcher, against a webhook the test writes byte by byte.

use std::sync::mpsc::{channel, Receiver, Sender};

use super::*;
use crate::dispatch::stream::Hook;
use crate::stream::CUT_MARKER;

/// What the scripted webhook does next with the answer it is writing.
enum Step {
    /// Writes these bytes (and flushes).
    Write(String),
    /// Ends the body (the last chunk).
    End,
    /// Resets the connection (an abortive close).
    Reset,
}

/// A webhook answering every request with `200` of `content_type` and then whatever the test
/// sends through the returned channel, for one request at a time; a plain JSON reply to a
/// request whose body contains `plain`.
fn streaming_webhook(content_type: &'static str) -> (String, Sender<Step>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (steps, script) = channel::<Step>();
    let script = Arc::new(Mutex::new(script));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let script = Arc::clone(&script);
            thread::spawn(move || answer_one(stream, content_type, &script));
        }
    });
    (url, steps)
}

fn answer_one(stream: TcpStream, content_type: &str, script: &Mutex<Receiver<Step>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let (_, body) = crate::transport::tests::read_request(&mut reader).expect("a request");
    let mut writer = stream;
    if body.contains("plain") {
        let reply = r#"{"body": "plain reply"}"#;
        let out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        writer.write_all(out.as_bytes()).unwrap();
        return;
    }
    // Chunked, as streaming servers write: a connection that breaks is then not taken for the
    // end of the body.
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n");
    writer.write_all(head.as_bytes()).unwrap();
    let script = script.lock().unwrap();
    loop {
        match script.recv() {
            Ok(Step::Write(bytes)) => {
                let chunk = format!("{:x}\r\n{bytes}\r\n", bytes.len());
                if writer.write_all(chunk.as_bytes()).and_then(|()| writer.flush()).is_err() {
                    return;
                }
            }
            Ok(Step::Reset) => {
                // SO_LINGER 0: the close sends a RST.
                let fd = std::os::fd::AsRawFd::as_raw_fd(&writer);
                let linger = [1i32, 0i32];
                // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
                unsafe {
                    setsockopt(fd, 1, 13, linger.as_ptr().cast(), 8);
                }
                return;
            }
            Ok(Step::End) | Err(_) => {
                let _ = writer.write_all(b"0\r\n\r\n");
                return;
            }
        }
    }
}

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
}

fn delta(text: &str) -> Step {
    Step::Write(format!("{}\n", serde_json::json!({ "delta": text })))
}

fn streaming_dispatcher(url: &str, adjust: impl FnOnce(&mut Config)) -> Dispatcher {
    dispatcher(url, |config| {
        config.stream.interval = Duration::from_millis(50);
        adjust(config);
    })
}

/// Waits for the next completion that sends something or logs.
fn next(d: &Dispatcher, got: &mut VecDeque<Completion>) -> Completion {
    wait_until("a completion", || {
        got.extend(outcomes(d));
        !got.is_empty()
    });
    got.pop_front().unwrap()
}

fn body_of_stanza(c: &Completion) -> String {
    let xml = sent_xml(c);
    let start = xml.find("<body>").map_or(0, |i| i + 6);
    let end = xml.find("</body>").unwrap_or(start);
    xml[start..end].to_owned()
}

#[test]
fn a_stream_is_a_first_message_corrections_and_an_exact_final() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |_| {});
    d.submit(message(1));
    let mut got = VecDeque::new();
    steps.send(delta("Hel")).unwrap();
    let first = next(&d, &mut got);
    let xml = sent_xml(&first);
    assert!(xml.starts_with("<message type='chat' to='user1@localhost/r' from='echo@bot.localhost' id='"), "{xml}");
    assert!(xml.ends_with("-0'><body>Hel</body></message>"), "{xml}");
    let first_id = xml.split("id='").nth(1).unwrap().split('\'').next().unwrap().to_owned();
    steps.send(delta("lo")).unwrap();
    let correction = next(&d, &mut got);
    let xml = sent_xml(&correction);
    assert!(xml.contains(&format!("<body>Hello</body><replace id='{first_id}'")), "{xml}");
    assert!(xml.contains("<no-store xmlns='urn:xmpp:hints'/>"), "{xml}");
    steps.send(delta(", world")).unwrap();
    steps.send(Step::End).unwrap();
    let last = collect_last(&mut d, 1).pop().unwrap();
    let xml = sent_xml(&last);
    assert!(xml.contains(&format!("<body>Hello, world</body><replace id='{first_id}'")), "{xml}");
    assert!(!xml.contains("no-store"), "{xml}");
    assert_eq!(last.log, None);
    assert_eq!(d.stats().outcomes, [("reply".to_owned(), 1)]);
}

#[test]
fn an_answer_that_arrives_whole_is_one_plain_message_and_sse_is_read() {
    let (url, steps) = streaming_webhook("text/event-stream");
    let mut d = streaming_dispatcher(&url, |_| {});
    steps
        .send(Step::Write(
            ": comment\r\nevent: token\r\ndata: {\"delta\": \"Hi \"}\r\n\r\ndata: {\"body\": \"Hello\"}\n\ndata: [DONE]\n\n"
                .into(),
        ))
        .unwrap();
    d.submit(message(1));
    let all = collect_last(&mut d, 1);
    let xml = sent_xml(&all[0]);
    assert!(xml.ends_with("-0'><body>Hello</body></message>"), "{xml}");
    drop(steps);
}

#[test]
fn a_cut_stream_keeps_its_text_and_says_why() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |_| {});
    d.submit(message(1));
    let mut got = VecDeque::new();
    steps.send(delta("The answer is ")).unwrap();
    assert_eq!(body_of_stanza(&next(&d, &mut got)), "The answer is ");
    steps.send(Step::Write("{not json\n".into())).unwrap();
    let last = collect_last(&mut d, 1).pop().unwrap();
    assert_eq!(body_of_stanza(&last), format!("The answer is\n\n{CUT_MARKER}"));
    let (level, line) = last.log.unwrap();
    assert_eq!(level, Level::Warn);
    assert!(line.contains("streamed answer cut off") && line.contains("line 2"), "{line}");
}

#[test]
fn a_reset_before_any_text_is_an_error_to_the_sender() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |_| {});
    d.submit(message(1));
    steps.send(Step::Write("{}\n".into())).unwrap();
    steps.send(Step::Reset).unwrap();
    let last = collect_last(&mut d, 1).pop().unwrap();
    assert!(sent_xml(&last).contains("type='error'"), "{last:?}");
    assert!(last.log.unwrap().1.contains("streamed answer cut off: the connection broke"));
}

#[test]
fn a_silent_stream_ends_after_the_timeout_with_its_text() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |config| config.timeout = Duration::from_millis(300));
    d.submit(message(1));
    let mut got = VecDeque::new();
    steps.send(delta("Thinking")).unwrap();
    next(&d, &mut got);
    let last = collect_last(&mut d, 1).pop().unwrap();
    assert_eq!(body_of_stanza(&last), format!("Thinking\n\n{CUT_MARKER}"));
    assert!(last.log.unwrap().1.contains("(component_post_timeout)"));
    drop(steps);
}

#[test]
fn other_messages_to_a_chat_wait_for_the_streamed_answer() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    // At most `queue_size` messages wait for a conversation: here the other reply and one push.
    let mut d = streaming_dispatcher(&url, |config| config.queue_size = 2);
    d.submit(message(1));
    let mut got = VecDeque::new();
    steps.send(delta("Hel")).unwrap();
    next(&d, &mut got);
    // Another client of the same user (another line), answered at once by the webhook.
    let mut other = message(1);
    other.from = Some("user1@localhost/other".into());
    other.body = Some("plain".into());
    other.xml = "<message><body>plain</body></message>".into();
    d.submit(other);
    // A push for the same conversation is held too; one for another is not.
    let push = |to: &str| {
        Ok(Element::new("message")
            .with_attr("from", "echo@bot.localhost")
            .with_attr("to", to)
            .with_child(Element::new("body").with_text("pushed")))
    };
    wait_until("the other reply is held", || {
        lock(&d.shared.completions).chats.values().next().is_some_and(|held| !held.is_empty())
    });
    assert_eq!(d.hold(|| push("user1@localhost")), Some(true));
    assert_eq!(d.hold(|| push("user1@localhost/phone")), Some(false), "past queue_size: refused");
    assert_eq!(d.hold(|| push("user2@localhost")), None);
    steps.send(delta("lo")).unwrap();
    steps.send(Step::End).unwrap();
    let all = collect_last(&mut d, 3);
    let bodies: Vec<String> = all.iter().map(body_of_stanza).collect();
    assert_eq!(bodies, ["Hello", "plain reply", "pushed"]);
    assert!(sent_xml(&all[0]).contains("<replace"));
}

#[test]
fn closing_ends_a_stream_with_its_text() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |_| {});
    d.submit(message(1));
    let mut got = VecDeque::new();
    steps.send(delta("Half an answer")).unwrap();
    next(&d, &mut got);
    let closed: Vec<Completion> = d.close().into_iter().filter(|c| c.send.is_some()).collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(body_of_stanza(&closed[0]), format!("Half an answer\n\n{CUT_MARKER}"));
    wait_until("every thread exited", || d.threads_alive() == 0);
    assert!(outcomes(&d).iter().all(|c| c.send.is_none()));
}

#[test]
fn an_iq_cannot_be_answered_with_a_stream() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |_| {});
    let mut iq = message(1);
    iq.name = "iq".into();
    iq.stanza_type = Some("get".into());
    iq.xml = "<iq type='get'><query xmlns='urn:example'/></iq>".into();
    d.submit(iq);
    let last = collect_last(&mut d, 1).pop().unwrap();
    assert!(sent_xml(&last).starts_with("<iq") && sent_xml(&last).contains("type='error'"));
    assert!(last.log.unwrap().1.contains("cannot be answered with a stream"));
    drop(steps);
}

#[test]
fn an_ndjson_answer_that_arrives_whole_is_one_plain_message() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |_| {});
    let lines: String = (0..200).map(|i| format!("{}\n", serde_json::json!({ "delta": format!("w{i} ") }))).collect();
    steps.send(Step::Write(lines)).unwrap();
    steps.send(Step::End).unwrap();
    d.submit(message(1));
    let all = collect_last(&mut d, 1);
    let xml = sent_xml(&all[0]);
    assert!(!xml.contains("<replace"), "{xml}");
    assert_eq!(body_of_stanza(&all[0]), (0..200).map(|i| format!("w{i} ")).collect::<String>());
}

#[test]
fn a_stream_may_outlast_the_stanza_deadline_while_pieces_keep_coming() {
    // The stanza's deadline bounds a plain answer; a stream only the silence between pieces
    // (the same option) and its own total time.
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |config| {
        config.timeout = Duration::from_secs(1);
        config.stream.max_corrections = 100;
    });
    let started = Instant::now();
    d.submit(message(1));
    let mut got = VecDeque::new();
    let mut text = String::new();
    let mut n = 0;
    // A piece after each stanza the client got, until the stream is older than the deadline.
    while started.elapsed() < Duration::from_millis(1500) {
        let piece = format!("w{n} ");
        text.push_str(&piece);
        steps.send(delta(&piece)).unwrap();
        assert_eq!(body_of_stanza(&next(&d, &mut got)), text);
        n += 1;
    }
    steps.send(Step::End).unwrap();
    let last = collect_last(&mut d, 1).pop().unwrap();
    assert_eq!(last.log, None);
    assert_eq!(body_of_stanza(&last), text);
}

/// Whether `mutex` can be taken, trying a bounded number of times: another thread may hold it
/// for a moment, but the thread asking never gets a lock it holds itself.
fn free<T>(mutex: &Mutex<T>) -> bool {
    (0..10_000).any(|_| {
        let free = mutex.try_lock().is_ok();
        if !free {
            thread::yield_now();
        }
        free
    })
}

#[test]
fn nothing_a_stream_sends_holds_the_main_lock_while_it_is_applied() {
    // A word and a megabyte of white space, then keep-alives: each piece is applied and each
    // due stanza sent without the dispatcher's state or completions lock, so `submit` and
    // `drain` on Prosody's main thread never wait for it.
    let (url, steps) = streaming_webhook("application/x-ndjson");
    // No intermediate correction: the first message, then the final one.
    let mut d = streaming_dispatcher(&url, |config| config.stream.interval = Duration::from_secs(3600));
    let seen: Arc<Mutex<Vec<(Hook, bool, bool)>>> = Arc::default();
    let (mid_piece, paused) = channel::<bool>();
    let (go, resume) = channel::<()>();
    let paused_once = Mutex::new(Some((mid_piece, resume)));
    let record = Arc::clone(&seen);
    *lock(&d.shared.hook) = Some(Arc::new(move |shared: &Shared, at: Hook| {
        let keeper = thread::current().name() == Some("component_http-keeper");
        let unlocked = free(&shared.state) && free(&shared.completions);
        lock(&record).push((at, keeper, unlocked));
        // The first piece waits, mid-way, for the test's `submit`.
        if at == Hook::Applying {
            if let Some((mid_piece, resume)) = lock(&paused_once).take() {
                mid_piece.send(unlocked).unwrap();
                let _ = resume.recv();
            }
        }
    }));
    d.submit(message(1));
    let spaces = " ".repeat(1_040_000);
    steps.send(Step::Write(format!("{}\n", serde_json::json!({ "delta": format!("a{spaces}") })))).unwrap();
    // Asked first: `submit` would wait forever for a lock held mid-piece.
    assert!(paused.recv().unwrap(), "the worker holds a lock of the main thread while it applies a piece");
    // Prosody's main thread, while the worker is mid-piece.
    let mut other = message(2);
    other.body = Some("plain".into());
    other.xml = "<message><body>plain</body></message>".into();
    d.submit(other);
    assert_eq!(d.pending(), 2);
    assert!(outcomes(&d).is_empty());
    go.send(()).unwrap();
    // The first message goes from the keeper: the worker waits for the next piece meanwhile.
    let mut got = VecDeque::new();
    let mut bodies = vec![body_of_stanza(&next(&d, &mut got)), body_of_stanza(&next(&d, &mut got))];
    bodies.sort();
    assert_eq!(bodies, [format!("a{spaces}"), "plain reply".to_owned()]);
    for _ in 0..20 {
        steps.send(Step::Write("{}\n".into())).unwrap();
    }
    steps.send(delta("b")).unwrap();
    steps.send(Step::End).unwrap();
    let last = collect_last(&mut d, 1).pop().unwrap();
    assert_eq!(body_of_stanza(&last), format!("a{spaces}b"));
    let seen = lock(&seen);
    assert!(seen.iter().any(|(at, keeper, _)| *at == Hook::Polling && *keeper), "the keeper polled: {seen:?}");
    let held: Vec<_> = seen.iter().filter(|(_, _, unlocked)| !unlocked).collect();
    assert!(held.is_empty(), "a lock of the main thread was held at {held:?}");
}

/// A message from another client of user 1, which the webhook answers at once.
fn plain_from_other_client(n: usize) -> Incoming {
    let mut other = message(1);
    other.from = Some(format!("user1@localhost/other{n}"));
    other.id = Some(format!("o{n}"));
    other.body = Some("plain".into());
    other.xml = "<message><body>plain</body></message>".into();
    other
}

#[test]
fn answers_held_behind_a_stream_are_bounded_by_the_queue_size() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |config| config.queue_size = 3);
    d.submit(message(1));
    let mut got = VecDeque::new();
    steps.send(delta("Hel")).unwrap();
    assert_eq!(body_of_stanza(&next(&d, &mut got)), "Hel");
    for n in 0..5 {
        // One at a time, so none finds the queue itself full.
        d.submit(plain_from_other_client(n));
        wait_until("a worker took it", || d.figures().queued == 0);
    }
    // Every answer is in: three wait for the stream, the two beyond the bound are refused now,
    // while it still streams, each with an error to its sender and a log line.
    wait_until("the five answers", || d.pending() == 1);
    got.extend(outcomes(&d));
    assert_eq!(got.len(), 2, "{got:?}");
    for refused in got.drain(..) {
        let xml = sent_xml(&refused);
        assert!(xml.starts_with("<message to='user1@localhost/other") && xml.contains("type='error'"), "{xml}");
        assert!(xml.contains("<resource-constraint"), "{xml}");
        let (level, line) = refused.log.unwrap();
        assert_eq!(level, Level::Warn);
        assert!(line.contains("component_post_queue_size") && line.contains("streamed answer"), "{line}");
    }
    // Pushes count against the same bound.
    let push = || {
        Ok(Element::new("message")
            .with_attr("from", "echo@bot.localhost")
            .with_attr("to", "user1@localhost")
            .with_child(Element::new("body").with_text("pushed")))
    };
    assert_eq!(d.hold(push), Some(false));
    steps.send(delta("lo")).unwrap();
    steps.send(Step::End).unwrap();
    let bodies: Vec<String> = collect_last(&mut d, 4).iter().map(body_of_stanza).collect();
    assert_eq!(bodies, ["Hello", "plain reply", "plain reply", "plain reply"]);
}

#[test]
fn a_follow_up_behind_a_stream_is_answered_by_its_own_deadline() {
    // The stream outlives the follow-up's deadline (pieces keep coming), so the follow-up,
    // which waits behind it in its sender's line, gets its timeout while the stream still runs.
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |config| {
        config.timeout = Duration::from_millis(300);
        config.stream.timeout = Duration::from_secs(5);
        config.stream.interval = Duration::from_secs(3600); // no intermediate correction
    });
    let applied = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&applied);
    *lock(&d.shared.hook) = Some(Arc::new(move |_: &Shared, at: Hook| {
        if at == Hook::Applying {
            count.fetch_add(1, Ordering::SeqCst);
        }
    }));
    d.submit(message(1));
    let mut got = VecDeque::new();
    steps.send(delta("Thinking")).unwrap();
    assert_eq!(body_of_stanza(&next(&d, &mut got)), "Thinking");
    let mut follow_up = message(1);
    follow_up.id = Some("stop".into());
    d.submit(follow_up);
    // Keep-alives, each once the one before was read, until the follow-up has its answer.
    while got.is_empty() {
        let before = applied.load(Ordering::SeqCst);
        steps.send(Step::Write("{}\n".into())).unwrap();
        wait_until("the keep-alive was read", || applied.load(Ordering::SeqCst) > before);
        got.extend(outcomes(&d));
    }
    let answer = got.pop_front().unwrap();
    let xml = sent_xml(&answer);
    assert!(xml.contains("id='stop'") && xml.contains("<remote-server-timeout"), "{xml}");
    let line = answer.log.unwrap().1;
    assert!(line.contains("component_post_timeout") && line.contains("earlier stanza"), "{line}");
    steps.send(delta(".")).unwrap();
    steps.send(Step::End).unwrap();
    let last = collect_last(&mut d, 1).pop().unwrap();
    assert_eq!((body_of_stanza(&last), last.log), ("Thinking.".to_owned(), None));
}

/// Makes the hook panic at `at`, on the keeper's thread only if `keeper_only`: a bug, injected.
fn panic_at(d: &Dispatcher, at: Hook, keeper_only: bool) {
    *lock(&d.shared.hook) = Some(Arc::new(move |_: &Shared, now: Hook| {
        let keeper = thread::current().name() == Some("component_http-keeper");
        if now == at && (keeper || !keeper_only) {
            panic!("a bug, injected by the test");
        }
    }));
}

/// After a stream a panic ended: its chat and its sender's line were let go, and the
/// dispatcher works on.
fn chat_and_line_let_go(d: &mut Dispatcher) {
    *lock(&d.shared.hook) = None;
    let push = || {
        Ok(Element::new("message")
            .with_attr("from", "echo@bot.localhost")
            .with_attr("to", "user1@localhost")
            .with_child(Element::new("body").with_text("pushed")))
    };
    assert_eq!(d.hold(push), None, "the conversation is no longer held");
    let mut same_line = message(1);
    same_line.body = Some("plain".into());
    same_line.xml = "<message><body>plain</body></message>".into();
    d.submit(same_line);
    let all = collect_last(d, 1);
    assert_eq!(body_of_stanza(&all[0]), "plain reply");
}

/// Waits for the completion that ends a stream a panic broke, or for the panicking thread to
/// die (the failure this guards against), whichever comes first.
fn ended_by_the_guard(d: &Dispatcher, got: &mut VecDeque<Completion>) -> Completion {
    let threads = d.threads_alive();
    wait_until("the stream ended, or the thread died", || {
        got.extend(outcomes(d));
        !got.is_empty() || d.threads_alive() < threads
    });
    let last = got.pop_front().expect("the thread that panicked died and the stream never ended");
    let (level, line) = last.log.clone().unwrap();
    assert_eq!(level, Level::Warn);
    assert!(line.contains("streamed answer cut off: internal error (a bug in mod_component_http)"), "{line}");
    last
}

#[test]
fn a_panic_while_a_stream_is_read_ends_that_stream_alone() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |config| config.idle_timeout = Duration::from_secs(3600));
    d.submit(message(1));
    let mut got = VecDeque::new();
    steps.send(delta("Half")).unwrap();
    assert_eq!(body_of_stanza(&next(&d, &mut got)), "Half");
    panic_at(&d, Hook::Applying, false);
    steps.send(delta(" more")).unwrap();
    let last = ended_by_the_guard(&d, &mut got);
    assert_eq!(body_of_stanza(&last), format!("Half\n\n{CUT_MARKER}"));
    assert!(sent_xml(&last).contains("<replace"));
    chat_and_line_let_go(&mut d);
}

#[test]
fn a_panic_while_the_keeper_polls_a_stream_ends_that_stream_alone() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |config| config.idle_timeout = Duration::from_secs(3600));
    d.submit(message(1));
    let mut got = VecDeque::new();
    steps.send(delta("Half")).unwrap();
    assert_eq!(body_of_stanza(&next(&d, &mut got)), "Half");
    // The worker applies the piece and waits for the next; the keeper polls it.
    panic_at(&d, Hook::Polling, true);
    steps.send(delta(" more")).unwrap();
    let last = ended_by_the_guard(&d, &mut got);
    // (" more" is applied first, unless a round of the keeper came between.)
    let body = body_of_stanza(&last);
    assert!([format!("Half more\n\n{CUT_MARKER}"), format!("Half\n\n{CUT_MARKER}")].contains(&body), "{body}");
    assert!(lock(&d.shared.state).keeper_alive, "the keeper carries on");
    chat_and_line_let_go(&mut d);
    drop(steps);
}

#[test]
fn a_panic_while_a_stream_is_ended_still_lets_go_of_its_chat_and_line() {
    let (url, steps) = streaming_webhook("application/x-ndjson");
    let mut d = streaming_dispatcher(&url, |config| config.idle_timeout = Duration::from_secs(3600));
    d.submit(message(1));
    let mut got = VecDeque::new();
    steps.send(delta("Half")).unwrap();
    assert_eq!(body_of_stanza(&next(&d, &mut got)), "Half");
    panic_at(&d, Hook::Concluding, false);
    steps.send(Step::End).unwrap();
    let last = next(&d, &mut got);
    assert_eq!(last.send, None, "not even its last stanza could be made");
    let (level, line) = last.log.unwrap();
    assert_eq!(level, Level::Error);
    assert!(line.contains("ended without its last stanza: internal error (a bug in mod_component_http)"), "{line}");
    chat_and_line_let_go(&mut d);
}
