//! The file descriptor that wakes Prosody's main loop when completions are waiting.
//!
//! A Unix socket pair: workers write one byte to one end, Prosody watches the other end with
//! `net.server.watchfd`. Only the first completion of a batch writes (the `armed` flag lives
//! under the completion list's lock), so a burst of answers costs one wake-up and one read.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// A socket pair: workers write a byte when completions are ready, Prosody watches the other end.
pub struct Wakeup {
    reader: UnixStream,
    writer: UnixStream,
}

impl Wakeup {
    /// A new pair, both ends non-blocking.
    pub fn new() -> std::io::Result<Wakeup> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Wakeup { reader, writer })
    }

    /// The descriptor Prosody watches for readability.
    pub fn fd(&self) -> RawFd {
        self.reader.as_raw_fd()
    }

    /// Makes the descriptor readable. A full socket buffer already means "readable", so a
    /// `WouldBlock` is as good as a write.
    pub fn signal(&self) {
        match (&self.writer).write(&[1]) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => {} // the reader is gone: nobody is left to wake
        }
    }

    /// Empties the descriptor so that it stops being readable.
    pub fn clear(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.reader).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reads one byte through a duplicate of `fd` without blocking: true if there was one.
    pub(crate) fn take_byte(fd: RawFd) -> bool {
        // SAFETY: the callers pass the `fd()` of a `Wakeup` they still hold, so the descriptor stays
        // open while it is borrowed here; it is only duplicated, never closed through the borrow.
        let dup = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().unwrap();
        let stream = UnixStream::from(dup);
        stream.set_nonblocking(true).unwrap();
        (&stream).read(&mut [0u8; 1]).map(|n| n == 1).unwrap_or(false)
    }

    #[test]
    fn signal_makes_readable_and_clear_empties() {
        let w = Wakeup::new().unwrap();
        assert!(!take_byte(w.fd()));
        w.signal();
        assert!(take_byte(w.fd()));
        // Far more signals than the socket buffer holds: none blocks, one clear empties all.
        for _ in 0..1_000_000 {
            w.signal();
        }
        w.clear();
        assert!(!take_byte(w.fd()));
    }
}
