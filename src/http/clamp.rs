//! A deadline a worker can move while its request runs: every read, write and name lookup of
//! the requests this thread makes is cut short at the instant set with [`read_by`].
//!
//! Why: ureq fixes a request's timeouts when it is sent, before anyone knows whether the answer
//! is one object or a stream. A plain answer must end by the stanza's deadline, as always; a
//! stream may last up to `<prefix>stream_timeout`, but no read of it may wait longer than the
//! stream's own next deadline (`Draft::deadline`: the idle time, or the end of its total time).
//! ureq's per-phase budgets run from the end of the phase before, and `timeout_per_read` would
//! apply to every answer, so neither can say "by this instant". So the request's global
//! timeout is only a backstop, and this connector, last in the chain, passes every transport
//! call a timeout cut down to the thread's instant. The worker sets it to the stanza's deadline
//! when it posts, and to the stream's deadline before each read of a stream.
//!
//! The instant is per thread, not per connection: a kept-alive connection is used by whichever
//! worker takes it next, and that worker's instant is the one that counts.

use std::cell::Cell;
use std::fmt;
use std::time::Instant;

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};
use ureq::Timeout;

thread_local! {
    static READ_BY: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Cuts every read, write and lookup of this thread's requests short at `at` (none: no cut).
pub fn read_by(at: Option<Instant>) {
    READ_BY.with(|read_by| read_by.set(at));
}

/// `timeout`, no later than this thread's instant. A cut timeout reports the global phase:
/// for a plain answer that is what it replaces, and a stream's reader tells its own deadline
/// from a broken connection by the clock, not by the error.
pub fn clamped(timeout: NextTimeout) -> NextTimeout {
    let Some(at) = READ_BY.with(Cell::get) else { return timeout };
    let left = at.saturating_duration_since(Instant::now());
    if timeout.after.is_not_happening() || left < *timeout.after {
        NextTimeout { after: left.into(), reason: Timeout::Global, ..timeout }
    } else {
        timeout
    }
}

/// The connector that wraps every transport the chain before it made in a [`Clamped`] one.
#[derive(Debug, Default)]
pub struct Clamp;

impl<In: Transport> Connector<In> for Clamp {
    type Out = Clamped<In>;

    fn connect(&self, _details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(Clamped))
    }
}

/// A transport whose waits end at this thread's instant at the latest.
pub struct Clamped<T>(T);

impl<T> fmt::Debug for Clamped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clamped")
    }
}

impl<T: Transport> Transport for Clamped<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.0.transmit_output(amount, clamped(timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.0.await_input(clamped(timeout))
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_a_later_timeout_is_cut() {
        let within = |secs| NextTimeout { after: Duration::from_secs(secs).into(), ..NextTimeout::default() };
        read_by(None);
        assert_eq!(clamped(within(5)), within(5));
        read_by(Some(Instant::now() + Duration::from_secs(60)));
        assert_eq!(clamped(within(5)), within(5));
        let never = clamped(NextTimeout::default());
        assert!(!never.after.is_not_happening() && *never.after <= Duration::from_secs(60));
        read_by(Some(Instant::now()));
        let cut = clamped(within(5));
        assert_eq!((*cut.after, cut.reason), (Duration::ZERO, Timeout::Global));
        read_by(None);
    }
}
