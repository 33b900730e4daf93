//! Name resolution for the webhook's host, bounded by the stanza's deadline.
//!
//! `getaddrinfo` blocks for as long as the system resolver likes, and a lookup on a thread per
//! request costs a thread per request (measured at ~100 µs of CPU per stanza with ureq's). This
//! one looks a name up on a helper thread only when it is not already known (IP literals need
//! no lookup: see [`crate::transport`]), and an answer is kept for [`FRESH_FOR`]. A connection
//! failure forgets it, so a webhook that moved to another address is found again on the next
//! attempt. One lookup per name at a time: requests that need a name being looked up wait for
//! that lookup as tasks (no thread each), each until its own deadline (the caller's bound).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    /// Wakes the requests that wait for it.
    done: tokio::sync::Notify,
}

#[derive(Default)]
struct Names {
    /// `host:port` → when it was looked up, and its addresses.
    known: HashMap<String, (Instant, Vec<SocketAddr>)>,
    /// `host:port` → the lookup under way.
    looking_up: HashMap<String, Arc<Flight>>,
}

/// Resolves the webhook's host name: answers kept for a while, one lookup per name at a time, each caller bounded by its own deadline.
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

    /// The addresses of `host_port`: known ones, or those the lookup under way (started if
    /// there is none) finds; waited for without blocking the thread. The caller bounds the
    /// wait; a lookup that outlives every waiter still fills the cache when it ends.
    pub async fn lookup(&self, host_port: &str) -> io::Result<Vec<SocketAddr>> {
        let flight = match self.known_or_flight(host_port, Instant::now())? {
            Ok(addrs) => return Ok(addrs),
            Err(flight) => flight,
        };
        loop {
            // Registered before the check, so an answer that comes in between still wakes it.
            let done = flight.done.notified();
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
                flight.done.notify_waiters();
            })
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Condvar;

    use crate::transport::Reactor;

    /// Runs `task` on `reactor` and waits for its result.
    fn run<T: Send + 'static>(reactor: &Reactor, task: impl std::future::Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        reactor.spawn(async move {
            let _ = tx.send(task.await);
        });
        rx.recv_timeout(Duration::from_secs(120)).expect("the task never finished")
    }

    #[test]
    fn cached_names_need_no_lookup() {
        let reactor = Reactor::start().unwrap();
        let resolver = CachingResolver::default();
        let r = resolver.clone();
        assert!(!run(&reactor, async move { r.lookup("localhost:9").await }).unwrap().is_empty());
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

    fn wait_for_waiters(resolver: &CachingResolver, n: usize) {
        let give_up = Instant::now() + Duration::from_secs(120);
        while waiters(resolver, "bot.example:80") < n {
            assert!(Instant::now() < give_up, "the requests never all waited");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_burst_of_misses_shares_one_lookup() {
        let (resolver, control) = fake();
        let reactor = Reactor::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..100 {
            let (resolver, tx) = (resolver.clone(), tx.clone());
            reactor.spawn(async move {
                let _ = tx.send(resolver.lookup("bot.example:80").await.unwrap());
            });
        }
        // Every request waits for the one lookup (as a task: no thread each) before it ends.
        wait_for_waiters(&resolver, 100);
        open(&control);
        for _ in 0..100 {
            let got = rx.recv_timeout(Duration::from_secs(120)).unwrap();
            assert_eq!(got, ["192.0.2.1:80".parse::<SocketAddr>().unwrap()]);
        }
        assert_eq!(control.0.load(Ordering::SeqCst), 1, "one lookup for 100 requests");
        // Now known: no lookup at all.
        let r = resolver.clone();
        run(&reactor, async move { r.lookup("bot.example:80").await }).unwrap();
        assert_eq!(control.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn each_waiter_keeps_its_own_deadline() {
        let (resolver, control) = fake();
        let reactor = Reactor::start().unwrap();
        let (tx, patient) = std::sync::mpsc::channel();
        let r = resolver.clone();
        reactor.spawn(async move {
            let _ = tx.send(r.lookup("bot.example:80").await);
        });
        wait_for_waiters(&resolver, 1);
        // The lookup still hangs: a request with little time left gives up on its own.
        let r = resolver.clone();
        let hurried =
            run(
                &reactor,
                async move { tokio::time::timeout(Duration::from_millis(20), r.lookup("bot.example:80")).await },
            );
        assert!(hurried.is_err(), "{hurried:?}");
        open(&control);
        assert!(patient.recv_timeout(Duration::from_secs(120)).unwrap().is_ok());
        assert_eq!(control.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_lookup_is_shared_and_not_remembered() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let resolver = CachingResolver::with_lookup(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::other("no such name"))
        });
        let reactor = Reactor::start().unwrap();
        for _ in 0..2 {
            let r = resolver.clone();
            let got = run(&reactor, async move { r.lookup("nowhere.example:80").await });
            assert!(matches!(&got, Err(e) if e.to_string() == "no such name"), "{got:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
