//! Microbenchmark of the native dispatcher alone, without Prosody: how much CPU the worker
//! threads and the completion path cost per stanza against the fast local webhook.
//!
//! Usage: dispatch [--messages N] [--window W] [--workers K] [--senders S]
//!
//! Keeps W stanzas outstanding from S senders, waits on the wake-up descriptor with poll(2) as
//! Prosody's main loop does, and reports per stanza: wall time, CPU of this process (main thread
//! plus workers), CPU of the main thread alone, and context switches.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use component_http_native::config::Config;
use component_http_native::dispatch::Dispatcher;
use component_http_native::stanza::Incoming;

fn cpu_us(who: i32) -> (f64, i64, i64) {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 * 1e6 + tv.tv_usec as f64;
    (t(usage.ru_utime) + t(usage.ru_stime), usage.ru_nvcsw, usage.ru_nivcsw)
}

fn main() {
    let mut messages = 50_000usize;
    let mut window = 256usize;
    let mut workers = 4usize;
    let mut senders = 16usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok()).expect("a number");
        match a.as_str() {
            "--messages" => messages = value(),
            "--window" => window = value(),
            "--workers" => workers = value(),
            "--senders" => senders = value(),
            other => panic!("unknown argument {other}"),
        }
    }
    let webhook_bin = std::env::current_exe().unwrap().with_file_name("webhook");
    let mut webhook = Command::new(webhook_bin).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("webhook");
    let mut line = String::new();
    BufReader::new(webhook.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("LISTENING ").expect("LISTENING line").to_owned();

    let mut config = Config::with_url(&format!("http://{addr}/hook")).unwrap();
    config.max_in_flight = workers;
    config.warm_workers = config.warm_workers.min(workers);
    config.queue_size = window.max(1) * 2;
    let mut dispatcher = Dispatcher::new(config).unwrap();
    let fd = dispatcher.fd();

    let stanza = |n: usize| Incoming {
        name: "message".into(),
        to: Some("echo@bot.localhost".into()),
        from: Some(format!("user{}@localhost/bench", n % senders)),
        id: Some(format!("m{n}")),
        stanza_type: Some("chat".into()),
        xml: format!("<message to='echo@bot.localhost' type='chat' id='m{n}'><body>m{n}</body></message>"),
        body: Some(format!("m{n}")),
        chat_states: false,
        receipt_request: false,
        room: None,
    };

    let (cpu0, vol0, invol0) = cpu_us(libc::RUSAGE_SELF);
    let (main0, _, _) = cpu_us(libc::RUSAGE_THREAD);
    let started = Instant::now();
    let (mut sent, mut done, mut replies, mut wakeups) = (0usize, 0usize, 0usize, 0usize);
    while done < messages {
        while sent < messages && sent - done < window {
            dispatcher.submit(stanza(sent));
            sent += 1;
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        unsafe { libc::poll(&mut pfd, 1, 10_000) };
        wakeups += 1;
        for completion in dispatcher.drain() {
            done += 1;
            replies += usize::from(completion.send.is_some());
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, vol1, invol1) = cpu_us(libc::RUSAGE_SELF);
    let (main1, _, _) = cpu_us(libc::RUSAGE_THREAD);
    let n = messages as f64;
    println!(
        "messages {messages} window {window} workers {workers} senders {senders}: {:.0} msg/s, \
         process CPU {:.1} µs/msg, main thread {:.1} µs/msg, workers {:.1} µs/msg, \
         {:.2} context switches/msg ({:.2} involuntary), {:.1} stanzas per wake-up, replies {replies}",
        n / wall,
        (cpu1 - cpu0) / n,
        (main1 - main0) / n,
        ((cpu1 - cpu0) - (main1 - main0)) / n,
        ((vol1 - vol0) + (invol1 - invol0)) as f64 / n,
        (invol1 - invol0) as f64 / n,
        n / wakeups as f64,
    );
    dispatcher.close();
    drop(webhook.stdin.take());
    let _ = webhook.wait();
}
