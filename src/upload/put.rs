//! The one HTTP request of an upload: the file's bytes PUT to the slot's URL, with the headers
//! the slot names, before a deadline. Runs on the upload's own thread, never on Prosody's.
//!
//! Everything HTTP about an upload is in [`put`], so moving uploads to another HTTP client is a
//! change of this file only.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::slot::Slot;
use super::File;

/// How many times a PUT is tried: once, and once more if the first failed and time is left.
pub const ATTEMPTS: u32 = 2;

/// PUTs `file` to `slot` before `deadline`: tried [`ATTEMPTS`] times at most. Every answer but a
/// `2xx` is a failure, said with its status; a failure after the last try, or when the
/// deadline has passed, is returned with what went wrong each time.
pub fn put(slot: &Slot, file: &File, deadline: Instant) -> Result<(), String> {
    let mut failures = Vec::new();
    for _ in 0..ATTEMPTS {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            failures.push("the stanza's deadline passed".to_owned());
            break;
        }
        match put_once(slot, file, left) {
            Ok(()) => return Ok(()),
            Err(why) => failures.push(why),
        }
    }
    Err(format!("the upload to the slot's PUT URL failed: {}", failures.join("; then ")))
}

fn put_once(slot: &Slot, file: &File, left: std::time::Duration) -> Result<(), String> {
    let mut request =
        agent().put(&slot.put).header("Content-Type", &file.content_type).config().timeout_global(Some(left)).build();
    for (name, value) in &slot.headers {
        request = request.header(name, value);
    }
    match request.send(&file.data[..]) {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
        Err(error) => Err(error.to_string()),
    }
}

/// One agent for every upload of the process: trusts the system's CA certificates (read once,
/// the first time a file is uploaded), follows no redirect and no `*_PROXY` variable (as the
/// webhook's client), and reports non-2xx answers as answers.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let system = rustls_native_certs::load_native_certs();
        let certs: Vec<Certificate<'static>> =
            system.certs.iter().map(|der| Certificate::from_der(der).to_owned()).collect();
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .tls_config(TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(certs))).build())
            .user_agent(concat!("mod_component_http/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    })
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
        put(&slot, &file(), Instant::now() + Duration::from_secs(30)).unwrap();
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
        put(&slot, &file(), Instant::now() + Duration::from_secs(30)).unwrap();
        assert_eq!(server.join().unwrap().len(), 2, "one retry");
        let (url, server) = serve(vec![500, 403]);
        let slot = Slot { put: url, headers: Vec::new(), get: "http://x/get".into() };
        let why = put(&slot, &file(), Instant::now() + Duration::from_secs(30)).unwrap_err();
        assert_eq!(why, "the upload to the slot's PUT URL failed: HTTP 500; then HTTP 403");
        assert_eq!(server.join().unwrap().len(), 2, "no third try");
        // Past the deadline, nothing is tried.
        let slot = Slot { put: "http://127.0.0.1:9/".into(), headers: Vec::new(), get: "http://x/get".into() };
        let why = put(&slot, &file(), Instant::now()).unwrap_err();
        assert!(why.ends_with("the stanza's deadline passed"), "{why}");
    }
}
