//! Stream mode (`--stream`): every POST with a JSON "body" string is answered like a language
//! model's API, on the wire exactly as the end-to-end suite's StreamHook writes a
//! `like_a_model` script (tests/e2e/e2e_stream_hook.py, bench/stream): a `200` with
//! `Content-Type: application/x-ndjson` and chunked transfer encoding, then one chunk per delta,
//! `{"delta": "<body>:<k> "}` and a newline, delta 0 at `--first` seconds after the request was
//! read and delta k at `first + k / rate`, for k up to `round(rate * duration)`, then the last
//! chunk; the connection is kept alive for the next request.
//!
//! Every stream is a timer on the server's one thread, so a thousand streams cost a thousand
//! timers, not a thousand threads. What the benchmark reads back: a record per request (when it
//! was read and its first text written, on CLOCK_MONOTONIC as Python's `time.monotonic()`, and
//! how its stream ended), and how late each delta was written against its schedule (a webhook
//! that falls behind shows here, not in the module's figures).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::time::{Duration, Instant};

use mio::Token;

/// The pace of every answer: `--first`, `--rate`, `--duration`.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub first: Duration,
    pub rate: f64,
    pub duration: f64,
}

impl Pace {
    /// Deltas after the first (as bench/stream's `like_a_model`: Python's round, half to even).
    fn more(&self) -> u64 {
        let x = self.rate * self.duration;
        let r = x.round();
        let even = if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - 1.0 } else { r };
        even.max(0.0) as u64
    }

    fn due(&self, start: Instant, k: u64) -> Instant {
        start + self.first + Duration::from_secs_f64(k as f64 / self.rate)
    }
}

/// How a stream ended.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Streaming,
    Complete,
    /// The module closed the connection (or it broke) before the last chunk.
    PeerClosed,
}

impl Ending {
    fn name(self) -> &'static str {
        match self {
            Ending::Streaming => "streaming",
            Ending::Complete => "complete",
            Ending::PeerClosed => "peer closed",
        }
    }
}

/// One request answered with a stream.
struct Record {
    question: String,
    retry: Option<String>,
    received_at: f64,
    first_text_at: Option<f64>,
    deltas: u64,
    ending: Ending,
}

/// A stream under way, kept on its connection.
pub struct Streaming {
    record: usize,
    start: Instant,
    next: u64,
}

/// Every stream of the server: their timers, records and lateness.
pub struct Streams {
    pace: Pace,
    /// (due, connection): a connection has at most one stream, hence one timer, at a time.
    timers: BinaryHeap<Reverse<(Instant, Token)>>,
    records: Vec<Record>,
    /// How late each delta was written after its due time, in µs.
    lateness_us: Vec<u32>,
    /// The most a delta due in each second (since the server started) was late, in µs: when
    /// the webhook fell behind, if it did.
    worst_by_second: Vec<u32>,
    started: Instant,
    active: u64,
    max_active: u64,
    deltas: u64,
}

/// Seconds on CLOCK_MONOTONIC, the clock of Python's `time.monotonic()` in the orchestrator.
fn monotonic() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct we pass and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

impl Streams {
    pub fn new(pace: Pace) -> Streams {
        Streams {
            pace,
            timers: BinaryHeap::new(),
            records: Vec::new(),
            lateness_us: Vec::new(),
            worst_by_second: Vec::new(),
            started: Instant::now(),
            active: 0,
            max_active: 0,
            deltas: 0,
        }
    }

    /// Answers a request whose body is `question`: writes the head to `out` and arms the timer
    /// of the first delta. `received` is when the request was read (the script's clock).
    pub fn begin(
        &mut self,
        token: Token,
        question: String,
        retry: Option<String>,
        received: Instant,
        out: &mut Vec<u8>,
    ) -> Streaming {
        out.extend_from_slice(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let received_at = monotonic() - received.elapsed().as_secs_f64();
        self.records.push(Record {
            question,
            retry,
            received_at,
            first_text_at: None,
            deltas: 0,
            ending: Ending::Streaming,
        });
        self.active += 1;
        self.max_active = self.max_active.max(self.active);
        self.timers.push(Reverse((self.pace.due(received, 0), token)));
        Streaming { record: self.records.len() - 1, start: received, next: 0 }
    }

    /// When the next delta of any stream falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((due, _))| *due)
    }

    /// The connection of a stream whose delta is due by `now`, taking its timer.
    pub fn pop_due(&mut self, now: Instant) -> Option<Token> {
        match self.timers.peek() {
            Some(Reverse((due, _))) if *due <= now => self.timers.pop().map(|Reverse((_, token))| token),
            _ => None,
        }
    }

    /// Writes the delta due on `s` to `out` (and the last chunk after the last delta), arming
    /// the next timer. True when the stream is complete.
    pub fn step(&mut self, s: &mut Streaming, token: Token, out: &mut Vec<u8>) -> bool {
        let due = self.pace.due(s.start, s.next);
        let late = Instant::now().saturating_duration_since(due);
        let late_us = late.as_micros().min(u32::MAX as u128) as u32;
        self.lateness_us.push(late_us);
        let second = due.saturating_duration_since(self.started).as_secs() as usize;
        if self.worst_by_second.len() <= second {
            self.worst_by_second.resize(second + 1, 0);
        }
        self.worst_by_second[second] = self.worst_by_second[second].max(late_us);
        let record = &mut self.records[s.record];
        let text = format!("{}:{} ", record.question, s.next);
        // Byte for byte as Python's json.dumps writes it (a space after the colon).
        let line = format!("{{\"delta\": {}}}\n", serde_json::Value::from(text));
        let _ = write!(out, "{:x}\r\n{line}\r\n", line.len());
        record.deltas += 1;
        record.first_text_at.get_or_insert_with(monotonic);
        self.deltas += 1;
        if s.next >= self.pace.more() {
            out.extend_from_slice(b"0\r\n\r\n");
            self.end(s, Ending::Complete);
            return true;
        }
        s.next += 1;
        self.timers.push(Reverse((self.pace.due(s.start, s.next), token)));
        false
    }

    /// A stream cut short: its connection is gone. Its timer, if any, finds no stream and is
    /// dropped when it falls due.
    pub fn cut(&mut self, s: &Streaming) {
        self.end(s, Ending::PeerClosed);
    }

    fn end(&mut self, s: &Streaming, how: Ending) {
        self.records[s.record].ending = how;
        self.active -= 1;
    }

    /// The stream fields of the `stats` line (lateness in ms).
    pub fn stats_json(&self) -> String {
        let mut late = self.lateness_us.clone();
        late.sort_unstable();
        let at = |p: f64| {
            if late.is_empty() {
                0.0
            } else {
                late[((p / 100.0) * (late.len() - 1) as f64).round() as usize] as f64 / 1e3
            }
        };
        let count = |e: Ending| self.records.iter().filter(|r| r.ending == e).count();
        format!(
            "\"streams\":{},\"streams_complete\":{},\"streams_cut\":{},\"streaming\":{},\"max_streaming\":{},\"deltas\":{},\"late_p50_ms\":{},\"late_p99_ms\":{},\"late_max_ms\":{},\"late_max_ms_by_second\":{:?}",
            self.records.len(),
            count(Ending::Complete),
            count(Ending::PeerClosed),
            self.active,
            self.max_active,
            self.deltas,
            at(50.0),
            at(99.0),
            at(100.0),
            self.worst_by_second.iter().map(|us| us / 1000).collect::<Vec<_>>()
        )
    }

    /// Every request answered with a stream, in arrival order, as one JSON array.
    pub fn records_json(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "body": r.question,
                    "retry": r.retry,
                    "received_at": r.received_at,
                    "first_text_at": r.first_text_at,
                    "deltas": r.deltas,
                    "ending": r.ending.name(),
                })
            })
            .collect();
        serde_json::Value::Array(rows).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_many_deltas_as_the_python_script() {
        let pace = |rate, duration| Pace { first: Duration::ZERO, rate, duration }.more();
        assert_eq!(pace(20.0, 20.0), 400);
        // Python's round: half to even.
        assert_eq!(pace(1.0, 2.5), 2);
        assert_eq!(pace(1.0, 3.5), 4);
        assert_eq!(pace(3.0, 0.1), 0);
    }

    #[test]
    fn writes_streamhooks_chunks_then_the_last_one() {
        let mut streams = Streams::new(Pace { first: Duration::ZERO, rate: 10.0, duration: 0.1 });
        let (token, mut out) = (Token(7), Vec::new());
        let mut s = streams.begin(token, "q\"1".into(), None, Instant::now(), &mut out);
        assert!(!streams.step(&mut s, token, &mut out));
        assert!(streams.step(&mut s, token, &mut out));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n\
             15\r\n{\"delta\": \"q\\\"1:0 \"}\n\r\n15\r\n{\"delta\": \"q\\\"1:1 \"}\n\r\n0\r\n\r\n"
        );
        assert!(streams.stats_json().contains("\"streams_complete\":1"));
    }
}
