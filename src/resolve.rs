//! Name resolution for the webhook's host, bounded by the stanza's deadline.
//!
//! ureq's default resolver either blocks in `getaddrinfo` for as long as the system resolver
//! likes (no bound) or, when a timeout applies, starts a thread for every request (measured at
//! ~100 µs of CPU per stanza). This one looks a name up on a thread, bounded by the request's
//! remaining time, only when it is not already known: IP literals need no lookup, and an answer
//! is kept for [`FRESH_FOR`]. A connection failure forgets it, so a webhook that moved to
//! another address is found again on the next attempt. One lookup per name at a time: requests
//! that need a name being looked up wait for that lookup, each until its own deadline.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a looked-up address is used before it is looked up again.
const FRESH_FOR: Duration = Duration::from_secs(30);

/// What a lookup found: addresses, or why none (an `io::Error` is not `Clone`, so its kind and
/// text, to hand to every waiter).
type Found = Result<Vec<SocketAddr>, (io::ErrorKind, String)>;

/// The lookup itself: `host:port` → addresses. The system's, or a fake in tests.
type Lookup = Arc<dyn Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// One lookup under way, shared by everyone who needs the same name meanwhile (single flight:
/// a burst of stanzas after the cache expired starts one lookup, not one per stanza).
#[derive(Default)]
struct Flight {
    found: Mutex<Option<Found>>,
    done: Condvar,
    /// Wakes the requests that wait for it as tasks (see [`CachingResolver::lookup_async`]).
    done_async: tokio::sync::Notify,
}

#[derive(Default)]
struct Names {
    /// `host:port` → when it was looked up, and its addresses.
    known: HashMap<String, (Instant, Vec<SocketAddr>)>,
    /// `host:port` → the lookup under way.
    looking_up: HashMap<String, Arc<Flight>>,
}

/// Resolves the webhook's host name for ureq: answers kept for a while, one lookup per name at a time, each caller bounded by its own deadline.
#[derive(Clone)]
pub struct CachingResolver {
    names: Arc<Mutex<Names>>,
    lookup: Lookup,
}

impl Default for CachingResolver {
    fn default() -> Self {
        CachingResolver::with_lookup(|name| name.to_socket_addrs().map(Iterator::collect))
    }
}

impl std::fmt::Debug for CachingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingResolver").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl CachingResolver {
    pub(crate) fn with_lookup(lookup: impl Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static) -> Self {
        CachingResolver { names: Arc::default(), lookup: Arc::new(lookup) }
    }

    /// Forgets every looked-up address (after a connection failure). A lookup under way still
    /// answers those waiting for it.
    pub fn forget(&self) {
        lock(&self.names).known.clear();
    }

    /// The addresses of `host_port` if they are known, else the lookup under way for it
    /// (started now if there was none).
    fn known_or_flight(&self, host_port: &str, now: Instant) -> io::Result<Result<Vec<SocketAddr>, Arc<Flight>>> {
        let mut names = lock(&self.names);
        if let Some((at, addrs)) = names.known.get(host_port) {
            if now.duration_since(*at) < FRESH_FOR {
                return Ok(Ok(addrs.clone()));
            }
        }
        Ok(Err(match names.looking_up.get(host_port) {
            Some(flight) => Arc::clone(flight),
            None => {
                let flight = Arc::new(Flight::default());
                // The lookup's thread waits for this lock: it finds itself registered.
                self.start(host_port, &flight)?;
                names.looking_up.insert(host_port.to_owned(), Arc::clone(&flight));
                flight
            }
        }))
    }

    /// Looks `host_port` up for a task: the same cache and the same single lookup as the
    /// blocking path, waited for without blocking the thread. The caller bounds the wait.
    pub async fn lookup_async(&self, host_port: &str) -> io::Result<Vec<SocketAddr>> {
        let flight = match self.known_or_flight(host_port, Instant::now())? {
            Ok(addrs) => return Ok(addrs),
            Err(flight) => flight,
        };
        loop {
            // Registered before the check, so an answer that comes in between still wakes it.
            let done = flight.done_async.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if let Some(found) = lock(&flight.found).as_ref() {
                return match found {
                    Ok(addrs) if addrs.is_empty() => {
                        Err(io::Error::new(io::ErrorKind::NotFound, format!("{host_port}: no address found")))
                    }
                    Ok(addrs) => Ok(addrs.clone()),
                    Err((kind, why)) => Err(io::Error::new(*kind, why.clone())),
                };
            }
            done.await;
        }
    }

    fn lookup(&self, host_port: &str, within: Duration) -> Result<Vec<SocketAddr>, ureq::Error> {
        let now = Instant::now();
        let flight = match self.known_or_flight(host_port, now).map_err(ureq::Error::Io)? {
            Ok(addrs) => return Ok(addrs),
            Err(flight) => flight,
        };
        // Each waiter is bounded by its own deadline; the lookup goes on for the others.
        let give_up = now.checked_add(within);
        let mut found = lock(&flight.found);
        loop {
            if let Some(found) = found.as_ref() {
                return match found {
                    Ok(addrs) if addrs.is_empty() => Err(ureq::Error::HostNotFound),
                    Ok(addrs) => Ok(addrs.clone()),
                    Err((kind, why)) => Err(ureq::Error::Io(io::Error::new(*kind, why.clone()))),
                };
            }
            let left = give_up.map_or(Duration::MAX, |at| at.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Err(ureq::Error::Timeout(ureq::Timeout::Resolve));
            }
            found = flight.done.wait_timeout(found, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Looks `host_port` up on a thread of its own, so every wait is bounded: getaddrinfo has
    /// no timeout of its own. A lookup that outlives every waiter's deadline still fills the
    /// cache when it ends.
    fn start(&self, host_port: &str, flight: &Arc<Flight>) -> io::Result<()> {
        let (names, lookup, flight, name) =
            (Arc::clone(&self.names), Arc::clone(&self.lookup), Arc::clone(flight), host_port.to_owned());
        std::thread::Builder::new()
            .name("component_http-resolve".into())
            // getaddrinfo may run NSS modules with stacks of their own making: room to spare.
            .stack_size(256 * 1024)
            .spawn(move || {
                let at = Instant::now();
                let found = lookup(&name).map_err(|e| (e.kind(), e.to_string()));
                {
                    let mut names = lock(&names);
                    if names.looking_up.get(&name).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                        names.looking_up.remove(&name);
                    }
                    if let Some(addrs) = found.as_ref().ok().filter(|addrs| !addrs.is_empty()) {
                        names.known.insert(name, (at, addrs.clone()));
                    }
                }
                *lock(&flight.found) = Some(found);
                flight.done.notify_all();
                flight.done_async.notify_waiters();
            })
            .map(drop)
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
            // No later than the worker's read-by instant: the stanza's deadline.
            Err(_) => self.lookup(&format!("{host}:{port}"), *crate::http::clamped(timeout).after)?,
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
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        assert!(resolver.names.lock().unwrap().known.contains_key("localhost:9"));
        resolver.forget();
        assert!(resolver.names.lock().unwrap().known.is_empty());
    }

    /// A lookup that blocks until the test opens it, counting how often it was called.
    fn fake() -> (CachingResolver, Arc<(AtomicUsize, Mutex<bool>, Condvar)>) {
        let control = Arc::new((AtomicUsize::new(0), Mutex::new(false), Condvar::new()));
        let c = Arc::clone(&control);
        let resolver = CachingResolver::with_lookup(move |_| {
            c.0.fetch_add(1, Ordering::SeqCst);
            let mut open = c.1.lock().unwrap();
            while !*open {
                open = c.2.wait(open).unwrap();
            }
            Ok(vec!["192.0.2.1:80".parse().unwrap()])
        });
        (resolver, control)
    }

    fn open(control: &(AtomicUsize, Mutex<bool>, Condvar)) {
        *control.1.lock().unwrap() = true;
        control.2.notify_all();
    }

    fn waiters(resolver: &CachingResolver, name: &str) -> usize {
        resolver.names.lock().unwrap().looking_up.get(name).map_or(0, |flight| Arc::strong_count(flight) - 2)
    }

    #[test]
    fn a_burst_of_misses_shares_one_lookup() {
        let (resolver, control) = fake();
        let threads: Vec<_> = (0..100)
            .map(|_| {
                let resolver = resolver.clone();
                std::thread::spawn(move || resolver.lookup("bot.example:80", Duration::from_secs(600)))
            })
            .collect();
        // Every request waits for the one lookup before it ends.
        let give_up = Instant::now() + Duration::from_secs(120);
        while waiters(&resolver, "bot.example:80") < 100 {
            assert!(Instant::now() < give_up, "the requests never all waited");
            std::thread::yield_now();
        }
        open(&control);
        for thread in threads {
            assert_eq!(thread.join().unwrap().unwrap(), ["192.0.2.1:80".parse::<SocketAddr>().unwrap()]);
        }
        assert_eq!(control.0.load(Ordering::SeqCst), 1, "one lookup for 100 requests");
        // Now known: no lookup at all.
        resolver.lookup("bot.example:80", Duration::from_secs(600)).unwrap();
        assert_eq!(control.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn each_waiter_keeps_its_own_deadline() {
        let (resolver, control) = fake();
        let patient = {
            let resolver = resolver.clone();
            std::thread::spawn(move || resolver.lookup("bot.example:80", Duration::from_secs(600)))
        };
        let give_up = Instant::now() + Duration::from_secs(120);
        while waiters(&resolver, "bot.example:80") < 1 {
            assert!(Instant::now() < give_up, "the lookup never started");
            std::thread::yield_now();
        }
        // The lookup still hangs: a request with little time left gives up on its own.
        let hurried = resolver.lookup("bot.example:80", Duration::from_millis(20));
        assert!(matches!(hurried, Err(ureq::Error::Timeout(ureq::Timeout::Resolve))), "{hurried:?}");
        open(&control);
        assert!(patient.join().unwrap().is_ok());
        assert_eq!(control.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn tasks_share_the_lookup_too() {
        let (resolver, control) = fake();
        let reactor = crate::transport::Reactor::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..100 {
            let (resolver, tx) = (resolver.clone(), tx.clone());
            reactor.spawn(async move {
                let _ = tx.send(resolver.lookup_async("bot.example:80").await.unwrap());
            });
        }
        // Every task waits for the one lookup (and holds no thread meanwhile).
        let give_up = Instant::now() + Duration::from_secs(120);
        while waiters(&resolver, "bot.example:80") < 100 {
            assert!(Instant::now() < give_up, "the tasks never all waited");
            std::thread::yield_now();
        }
        open(&control);
        for _ in 0..100 {
            let got = rx.recv_timeout(Duration::from_secs(120)).unwrap();
            assert_eq!(got, ["192.0.2.1:80".parse::<SocketAddr>().unwrap()]);
        }
        assert_eq!(control.0.load(Ordering::SeqCst), 1, "one lookup for 100 tasks");
    }

    #[test]
    fn a_failed_lookup_is_shared_and_not_remembered() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let resolver = CachingResolver::with_lookup(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::other("no such name"))
        });
        for _ in 0..2 {
            let got = resolver.lookup("nowhere.example:80", Duration::from_secs(600));
            assert!(matches!(&got, Err(ureq::Error::Io(e)) if e.to_string() == "no such name"), "{got:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
