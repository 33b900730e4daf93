//! The users of bench/stream: SESSIONS c2s sessions (u1..uN), each asking the bot one question
//! at once and reading its streamed answer (a first message, corrections, a final one) to the
//! end. In Rust, a thread per session and no interpreter lock, so that 1,000 users reading
//! corrections at once keep up with Prosody instead of competing with it for the same two
//! cores (the end-to-end suite's slixmpp clients did not: bench/README.md).
//!
//! stream_users --addr 127.0.0.1:5222 --sessions 1000 [--to echo@bot.localhost] [--timeout 140]
//!
//! Protocol with the orchestrator: once every session is logged in (with initial presence), it
//! prints `LOGGED IN` and waits for a line on stdin; then session i sends `q<i>` with an
//! `<active/>` chat state, and each session reads the bot's messages with a body until the
//! final one: a correction (`<replace/>`) without `<no-store/>`, or a message that is no
//! correction and carries `<active/>` (an answer that did not stream). After every session saw
//! its final, or --timeout seconds, it prints one JSON line: per session, in order, `question`,
//! `messages` (the bot's messages with a body until the final or the end), `body_bytes` (their
//! bodies' bytes, as read: entities decoded), `first_at` and
//! `final_at` (CLOCK_MONOTONIC seconds, Python's `time.monotonic()`; null if none), `last`
//! (the last body read) and `final` (whether it was the final).

use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use benchlib::xmpp;
use clap::Parser;

#[derive(Parser)]
#[command(about = "The users of bench/stream: each asks the bot once and reads the streamed answer")]
struct Args {
    /// Prosody's c2s address
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, default_value = "localhost")]
    domain: String,
    #[arg(long, default_value = "pw")]
    password: String,
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// The bot
    #[arg(long, default_value = "echo@bot.localhost")]
    to: String,
    /// Seconds to wait for every final, from the questions
    #[arg(long, default_value_t = 140.0)]
    timeout: f64,
    /// Logins at once
    #[arg(long, default_value_t = 16)]
    login_concurrency: usize,
    /// Seconds for one login
    #[arg(long, default_value_t = 60)]
    login_timeout: u64,
}

const CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";

/// What one session read of its answer.
#[derive(Default)]
struct Answer {
    messages: u64,
    body_bytes: u64,
    first_at: Option<f64>,
    final_at: Option<f64>,
    last: Option<String>,
    done: bool,
}

/// Every session's answer, and how many are done.
struct Board {
    answers: Mutex<(Vec<Answer>, usize)>,
    changed: Condvar,
}

/// Seconds on CLOCK_MONOTONIC, the clock of Python's `time.monotonic()` in the orchestrator.
fn monotonic() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The bot's final message of an answer (as bench/stream's Python users judged it).
fn is_final(st: &xmpp::Stanza) -> bool {
    let replace = st.has_child("replace");
    (replace && !st.has_child("no-store")) || (!replace && st.has_child("active"))
}

/// Reads session `i`'s stanzas into the board until its final (or the stream ends).
fn read_answer(board: &Board, i: usize, bot: &str, mut reader: xmpp::StanzaReader) {
    while let Ok(st) = reader.next() {
        let from_bot = st.from.as_deref().is_some_and(|f| f == bot || f.starts_with(&format!("{bot}/")));
        if st.name != "message" || !from_bot || st.body.is_none() {
            continue;
        }
        let now = monotonic();
        let last = is_final(&st);
        let mut guard = board.answers.lock().expect("board");
        let (answers, done) = &mut *guard;
        let a = &mut answers[i];
        if a.done {
            continue; // after the final: not part of the answer
        }
        a.messages += 1;
        a.body_bytes += st.body.as_ref().map_or(0, |b| b.len() as u64);
        a.first_at.get_or_insert(now);
        a.last = st.body;
        if last {
            a.final_at = Some(now);
            a.done = true;
            *done += 1;
            board.changed.notify_all();
            return;
        }
    }
}

fn main() {
    let args = Args::parse();
    let board = Arc::new(Board {
        answers: Mutex::new(((0..args.sessions).map(|_| Answer::default()).collect(), 0)),
        changed: Condvar::new(),
    });

    // Logins: --login-concurrency threads take the next user until none is left; each session
    // then reads on a thread of its own.
    let next = Arc::new(AtomicUsize::new(0));
    let (logged_in, logins) = mpsc::channel();
    for _ in 0..args.login_concurrency.max(1) {
        let (board, logged_in, next) = (board.clone(), logged_in.clone(), next.clone());
        let (addr, domain, password, bot) = (args.addr, args.domain.clone(), args.password.clone(), args.to.clone());
        let (sessions, timeout) = (args.sessions, Duration::from_secs(args.login_timeout));
        std::thread::spawn(move || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= sessions {
                return;
            }
            let session = xmpp::login(addr, &domain, &format!("u{}", i + 1), &password, "stream", timeout)
                .and_then(|s| (&*s.writer).write_all(b"<presence/>").map(|()| s));
            let (board, bot) = (board.clone(), bot.clone());
            let result = session.and_then(|s| {
                let writer = s.writer.clone();
                std::thread::Builder::new()
                    .name(format!("user-{i}"))
                    .stack_size(256 * 1024)
                    .spawn(move || read_answer(&board, i, &bot, s.reader))
                    .map(|_| writer)
            });
            if logged_in.send((i, result)).is_err() {
                return;
            }
        });
    }
    drop(logged_in);
    let mut writers: Vec<Option<Arc<TcpStream>>> = (0..args.sessions).map(|_| None).collect();
    for (i, result) in logins {
        match result {
            Ok(w) => writers[i] = Some(w),
            Err(e) => {
                eprintln!("stream_users: login of u{}: {e}", i + 1);
                std::process::exit(1);
            }
        }
    }
    println!("LOGGED IN");
    let _ = io::stdout().flush();
    let mut line = String::new();
    let _ = io::stdin().lock().read_line(&mut line);

    let started = Instant::now();
    for (i, w) in writers.iter().enumerate() {
        let w = w.as_ref().expect("every session logged in");
        let message = format!(
            "<message to='{}' type='chat' id='msg-{i}'><body>q{}</body><active xmlns='{CHAT_STATES}'/></message>",
            args.to,
            i + 1
        );
        if let Err(e) = (&**w).write_all(message.as_bytes()) {
            eprintln!("stream_users: the question of u{}: {e}", i + 1);
        }
    }
    let deadline = started + Duration::from_secs_f64(args.timeout);
    let mut guard = board.answers.lock().expect("board");
    while guard.1 < args.sessions {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        guard = board.changed.wait_timeout(guard, left).expect("board").0;
    }
    let rows: Vec<serde_json::Value> = guard
        .0
        .iter()
        .enumerate()
        .map(|(i, a)| {
            serde_json::json!({
                "question": format!("q{}", i + 1),
                "messages": a.messages,
                "body_bytes": a.body_bytes,
                "first_at": a.first_at,
                "final_at": a.final_at,
                "last": a.last,
                "final": a.done,
            })
        })
        .collect();
    println!("{}", serde_json::Value::Array(rows));
    let _ = io::stdout().flush();
    // The readers still blocked on their sockets end with the process.
    std::process::exit(0);
}
