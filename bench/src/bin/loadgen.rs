//! Standalone load generator against an already running XMPP server.
//!
//! loadgen --addr 127.0.0.1:5222 [--domain localhost] [--user-prefix u]
//!         [--password pw] [--sessions 16] [--to bot.localhost]
//!         [--windows 1,16,256] [--messages 20000] [--stall-timeout 10]
//!
//! Users u1..uN must exist with the given password. Prints one JSON object
//! per window on stdout (the orchestrator, `bench`, uses the same code
//! in-process and adds the /proc and webhook measurements).

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use benchlib::loadgen::{Client, ClientConfig, PhaseOptions};

fn main() {
    let mut addr: Option<SocketAddr> = None;
    let mut domain = "localhost".to_string();
    let mut prefix = "u".to_string();
    let mut password = "pw".to_string();
    let mut sessions = 16usize;
    let mut target = "bot.localhost".to_string();
    let mut windows = vec![1usize, 16, 256];
    let mut messages = 20_000usize;
    let mut stall = 10u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--addr" => addr = Some(val().parse().expect("--addr HOST:PORT")),
            "--domain" => domain = val(),
            "--user-prefix" => prefix = val(),
            "--password" => password = val(),
            "--sessions" => sessions = val().parse().expect("--sessions N"),
            "--to" => target = val(),
            "--windows" => windows = val().split(',').map(|w| w.trim().parse().expect("--windows 1,16")).collect(),
            "--messages" => messages = val().parse().expect("--messages N"),
            "--stall-timeout" => stall = val().parse().expect("--stall-timeout SECONDS"),
            "-h" | "--help" => {
                eprintln!("see the header of bench/src/bin/loadgen.rs");
                return;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let cfg = ClientConfig {
        addr: addr.expect("--addr is required"),
        domain,
        user_prefix: prefix,
        password,
        sessions,
        target,
        login_timeout: Duration::from_secs(10),
    };
    let mut client = match Client::connect(&cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: login failed: {e}");
            std::process::exit(1);
        }
    };
    let stop = AtomicBool::new(false);
    for w in windows {
        let r = client.run_phase(
            &PhaseOptions {
                window: w,
                messages,
                stall_timeout: Duration::from_secs(stall),
                deadline: Duration::from_secs(600),
                settle: Duration::from_millis(200),
            },
            &stop,
        );
        println!("{}", serde_json::to_string(&r).unwrap());
        if r.aborted.is_some() && !client.sessions_alive() {
            break;
        }
    }
    client.close();
}
