//! The one HTTP request of an upload: the file's bytes PUT to the slot's URL, with the headers
//! the slot names, before a deadline. A task on the uploads' own [`Reactor`] (see [`Putter`]),
//! never on Prosody's thread, made with the event-driven client the webhook's requests use
//! ([`crate::transport`]): no redirect followed, no `*_PROXY` variable read.
//!
//! Everything HTTP about an upload is in [`put`], so moving uploads to another HTTP client is a
//! change of this file only.

use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use tokio_rustls::rustls::ClientConfig;

use super::slot::Slot;
use super::File;
use crate::http::Roots;
use crate::resolve::CachingResolver;
use crate::transport::{self, Client, Reactor, Request};

/// How many times a PUT is tried: once, and once more if the first failed and time is left.
pub const ATTEMPTS: u32 = 2;

/// Where one module's PUTs run: a native thread of their own, each PUT a task on it, started
/// for the module's first file (most bots send none) and stopped with the module's uploads,
/// taking any PUT still under way with it. Not the webhook's thread: the uploads of a module
/// are made before its webhook's client, and mod_rest without a callback URL has none.
pub struct Putter {
    reactor: Reactor,
    /// Shared by the module's PUTs: the upload service's name is looked up once in a while,
    /// not once per file.
    resolver: CachingResolver,
}

impl Putter {
    /// Starts the thread.
    pub fn start() -> io::Result<Putter> {
        Ok(Putter { reactor: Reactor::start()?, resolver: CachingResolver::default() })
    }

    /// PUTs `file` to `slot` (see [`put`]) as a task, and calls `done` with the outcome, on the
    /// putter's thread.
    pub fn spawn(
        &self,
        slot: Slot,
        file: File,
        deadline: Instant,
        done: impl FnOnce(Result<(), String>) + Send + 'static,
    ) {
        let resolver = self.resolver.clone();
        self.reactor.spawn(async move { done(put(&slot, file, deadline, resolver).await) });
    }
}

/// PUTs `file` to `slot` before `deadline`: tried [`ATTEMPTS`] times at most. Every answer but a
/// `2xx` is a failure, said with its status; a failure after the last try, or when the
/// deadline has passed, is returned with what went wrong each time. Runs on a [`Reactor`].
pub async fn put(slot: &Slot, file: File, deadline: Instant, resolver: CachingResolver) -> Result<(), String> {
    let failed =
        |failures: Vec<String>| format!("the upload to the slot's PUT URL failed: {}", failures.join("; then "));
    let (client, headers) = match prepare(slot, &file, deadline, resolver) {
        Ok(prepared) => prepared,
        Err(why) => return Err(failed(vec![why])),
    };
    // Held once: each attempt sends the same bytes without a copy.
    let body = Bytes::from(file.data);
    let mut failures = Vec::new();
    for _ in 0..ATTEMPTS {
        if Instant::now() >= deadline {
            failures.push("the stanza's deadline passed".to_owned());
            break;
        }
        let request = Request { headers: headers.clone(), body: body.clone(), deadline, path: None };
        match client.put(request).await {
            Ok(response) if (200..300).contains(&response.status) => return Ok(()),
            Ok(response) => failures.push(format!("HTTP {}", response.status)),
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    Err(failed(failures))
}

/// The client for the slot's URL, and the headers of its PUT: the slot's, and the file's type.
fn prepare(
    slot: &Slot,
    file: &File,
    deadline: Instant,
    resolver: CachingResolver,
) -> Result<(Client, Vec<(HeaderName, HeaderValue)>), String> {
    let mut headers = Vec::with_capacity(slot.headers.len() + 1);
    headers.push((CONTENT_TYPE, HeaderValue::from_str(&file.content_type).map_err(|e| e.to_string())?));
    for (name, value) in &slot.headers {
        let bad = |e: &dyn std::fmt::Display| format!("the slot's header {name:?} cannot be sent: {e}");
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?;
        let value = HeaderValue::from_str(value).map_err(|e| bad(&e))?;
        headers.push((name, value));
    }
    let https = slot.put.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    let options = transport::Options {
        // The deadline alone bounds every phase, connecting included.
        connect_timeout: deadline.saturating_duration_since(Instant::now()),
        // A client per upload: nothing to keep a connection for.
        max_idle: 0,
        tls: https.then(tls),
        user_agent: concat!("mod_component_http/", env!("CARGO_PKG_VERSION")),
    };
    Ok((Client::new(&slot.put, resolver, options)?, headers))
}

/// The TLS settings of every PUT of the process: the system's CA certificates, read the first
/// time a file goes to an `https://` URL, as the webhook's client reads them ([`Roots`]) but
/// without its `*_ca_file`.
fn tls() -> Arc<ClientConfig> {
    static TLS: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(TLS.get_or_init(|| transport::tls_config(Roots::system().der_certs())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// What the test server saw: the request line and headers, and the body, of each request.
    type Seen = std::thread::JoinHandle<Vec<(String, Vec<u8>)>>;

    /// A server answering each request on `listener` with the next status of `statuses`, and
    /// what it received: (request line and headers, body) per request.
    fn serve(statuses: Vec<u16>) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/put/slot1", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for status in statuses {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = n.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.push((head, body));
                let mut stream = stream;
                write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            }
            seen
        });
        (url, handle)
    }

    /// [`put`] as the uploads run it, on a [`Putter`]; waits for its outcome.
    fn put_and_wait(slot: &Slot, file: &File, deadline: Instant) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        // Kept until the outcome came: dropping it would end the task.
        let putter = Putter::start().unwrap();
        putter.spawn(slot.clone(), file.clone(), deadline, move |result| {
            let _ = tx.send(result);
        });
        // A hang, not a measurement.
        rx.recv_timeout(Duration::from_secs(120)).expect("the PUT's task never ended")
    }

    fn file() -> File {
        File::new(b"\x89PNG bytes".to_vec(), "chart.png", "image/png", "").unwrap()
    }

    #[test]
    fn the_bytes_go_with_the_slots_headers_and_their_type() {
        let (url, server) = serve(vec![201]);
        let slot = Slot {
            put: url,
            headers: vec![("Authorization".into(), "Bearer t0ken".into())],
            get: "http://x/get".into(),
        };
        put_and_wait(&slot, &file(), Instant::now() + Duration::from_secs(30)).unwrap();
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 1);
        let (head, body) = &seen[0];
        assert!(head.starts_with("PUT /put/slot1 HTTP/1.1\r\n"), "{head}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("authorization: bearer t0ken\r\n"), "{head}");
        assert!(head.contains("content-type: image/png\r\n"), "{head}");
        assert_eq!(body, b"\x89PNG bytes");
    }

    #[test]
    fn a_failed_put_is_tried_once_more_then_fails_saying_why() {
        let (url, server) = serve(vec![500, 204]);
        let slot = Slot { put: url, headers: Vec::new(), get: "http://x/get".into() };
        put_and_wait(&slot, &file(), Instant::now() + Duration::from_secs(30)).unwrap();
        assert_eq!(server.join().unwrap().len(), 2, "one retry");
        let (url, server) = serve(vec![500, 403]);
        let slot = Slot { put: url, headers: Vec::new(), get: "http://x/get".into() };
        let why = put_and_wait(&slot, &file(), Instant::now() + Duration::from_secs(30)).unwrap_err();
        assert_eq!(why, "the upload to the slot's PUT URL failed: HTTP 500; then HTTP 403");
        assert_eq!(server.join().unwrap().len(), 2, "no third try");
        // Past the deadline, nothing is tried.
        let slot = Slot { put: "http://127.0.0.1:9/".into(), headers: Vec::new(), get: "http://x/get".into() };
        let why = put_and_wait(&slot, &file(), Instant::now()).unwrap_err();
        assert!(why.ends_with("the stanza's deadline passed"), "{why}");
    }
}
