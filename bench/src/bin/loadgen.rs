//! Standalone load generator against an already running XMPP server.
//!
//! loadgen --addr 127.0.0.1:5222 [--sessions 16] [--windows 1,16,256] [--messages 20000] …
//! loadgen --addr 127.0.0.1:5222 --sessions 1000 --per-session --messages 2000   (slow bots)
//!
//! Users u1..uN must exist with the given password. Prints one JSON object
//! per window on stdout (the orchestrator, `bench`, uses the same code
//! in-process and adds the /proc and webhook measurements). `loadgen --help`
//! lists every option.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use benchlib::loadgen::{Client, ClientConfig, PhaseOptions};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Closed-loop c2s load generator for mod_component_http's benchmarks")]
struct Args {
    /// Prosody's c2s address
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Users are <PREFIX>1..<PREFIX>N
    #[arg(long, default_value = "u")]
    user_prefix: String,
    #[arg(long, default_value = "pw")]
    password: String,
    #[arg(long, default_value_t = 16)]
    sessions: usize,
    /// Where the messages go
    #[arg(long = "to", default_value = "bot.localhost")]
    target: String,
    /// Messages outstanding in all, one phase per value
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    windows: Vec<usize>,
    /// Messages per phase
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Each session has one message outstanding and sends the next when it is answered (one
    /// phase; --windows is ignored; each session sends MESSAGES / SESSIONS)
    #[arg(long)]
    per_session: bool,
    /// End a phase after this many seconds without a reply
    #[arg(long, default_value_t = 10)]
    stall_timeout: u64,
    /// Hard cap per phase, seconds
    #[arg(long, default_value_t = 600)]
    phase_timeout: u64,
    /// Seconds for each session's login (thousands at once take a while)
    #[arg(long, default_value_t = 10)]
    login_timeout: u64,
    /// Logins under way at once (0: all at once)
    #[arg(long, default_value_t = 64)]
    login_concurrency: usize,
}

fn main() {
    let a = Args::parse();
    let cfg = ClientConfig {
        addr: a.addr,
        domain: a.domain,
        user_prefix: a.user_prefix,
        password: a.password,
        sessions: a.sessions,
        target: a.target,
        login_timeout: Duration::from_secs(a.login_timeout),
        login_concurrency: a.login_concurrency,
    };
    let mut client = match Client::connect(&cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: login failed: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("loadgen: {} sessions logged in", a.sessions);
    let stop = AtomicBool::new(false);
    let windows = if a.per_session { vec![a.sessions] } else { a.windows };
    for w in windows {
        let r = client.run_phase(
            &PhaseOptions {
                window: w,
                messages: a.messages,
                stall_timeout: Duration::from_secs(a.stall_timeout),
                deadline: Duration::from_secs(a.phase_timeout),
                settle: Duration::from_millis(200),
                per_session: a.per_session,
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
