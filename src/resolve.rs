//! Name resolution for the webhook's host, bounded by the stanza's deadline.
//!
//! ureq's default resolver either blocks in `getaddrinfo` for as long as the system resolver
//! likes (no bound) or, when a timeout applies, starts a thread for every request (measured at
//! ~100 µs of CPU per stanza). This one looks a name up on a thread, bounded by the request's
//! remaining time, only when it is not already known: IP literals need no lookup, and an answer
//! is kept for [`FRESH_FOR`]. A connection failure forgets it, so a webhook that moved to
//! another address is found again on the next attempt.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a looked-up address is used before it is looked up again.
const FRESH_FOR: Duration = Duration::from_secs(30);

/// `host:port` → when it was looked up, and its addresses.
type Known = HashMap<String, (Instant, Vec<SocketAddr>)>;

#[derive(Debug, Default, Clone)]
pub struct CachingResolver {
    known: Arc<Mutex<Known>>,
}

impl CachingResolver {
    /// Forgets every looked-up address (after a connection failure).
    pub fn forget(&self) {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn lookup(&self, host_port: &str, within: Duration) -> Result<Vec<SocketAddr>, ureq::Error> {
        let now = Instant::now();
        if let Some((at, addrs)) = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(host_port) {
            if now.duration_since(*at) < FRESH_FOR {
                return Ok(addrs.clone());
            }
        }
        // On a thread of its own so the wait is bounded: getaddrinfo has no timeout of its own.
        // A lookup that outlives the deadline finishes in the background and is dropped.
        let (tx, rx) = mpsc::sync_channel(1);
        let name = host_port.to_owned();
        std::thread::Builder::new()
            .name("component_http-resolve".into())
            // getaddrinfo may run NSS modules with stacks of their own making: room to spare.
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = tx.send(name.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
            })
            .map_err(ureq::Error::Io)?;
        let addrs = match rx.recv_timeout(within) {
            Ok(result) => result.map_err(ureq::Error::Io)?,
            Err(_) => return Err(ureq::Error::Timeout(ureq::Timeout::Resolve)),
        };
        if addrs.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        self.known.lock().unwrap_or_else(|p| p.into_inner()).insert(host_port.to_owned(), (now, addrs.clone()));
        Ok(addrs)
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let authority = uri.authority().ok_or(ureq::Error::HostNotFound)?;
        let default_port = if uri.scheme_str() == Some("https") { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let addrs = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => self.lookup(&format!("{host}:{port}"), *timeout.after)?,
        };
        // ureq keeps at most 16 addresses.
        let mut resolved = self.empty();
        for addr in addrs.into_iter().take(16) {
            resolved.push(addr);
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_cached_names_need_no_lookup() {
        let resolver = CachingResolver::default();
        let config = ureq::config::Config::default();
        let timeout = || NextTimeout { after: Duration::from_secs(1).into(), ..Default::default() };
        let uri: Uri = "http://127.0.0.1:8080/x".parse().unwrap();
        let got = resolver.resolve(&uri, &config, timeout()).unwrap();
        assert_eq!(got.iter().copied().collect::<Vec<_>>(), ["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]);
        let uri: Uri = "https://[::1]/x".parse().unwrap();
        let got = resolver.resolve(&uri, &config, timeout()).unwrap();
        assert_eq!(got.iter().copied().collect::<Vec<_>>(), ["[::1]:443".parse::<SocketAddr>().unwrap()]);
        let uri: Uri = "http://localhost:9/x".parse().unwrap();
        assert!(!resolver.resolve(&uri, &config, timeout()).unwrap().is_empty());
        assert!(resolver.known.lock().unwrap().contains_key("localhost:9"));
        resolver.forget();
        assert!(resolver.known.lock().unwrap().is_empty());
    }
}
