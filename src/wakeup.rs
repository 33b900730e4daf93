//! The file descriptor that wakes Prosody's main loop when completions are waiting.
//!
//! A Unix socket pair: workers write one byte to one end, Prosody watches the other end with
//! `net.server.watchfd`. Only the first completion of a batch writes (the `armed` flag lives
//! under the completion list's lock), so a burst of answers costs one wake-up and one read.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

pub struct Wakeup {
    reader: UnixStream,
    writer: UnixStream,
}

impl Wakeup {
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
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        // A zero-timeout poll without pulling in libc: MSG_PEEK through a dup'd stream.
        let stream = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().unwrap();
        let stream = UnixStream::from(stream);
        stream.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        stream.peek(&mut buf).is_ok()
    }

    #[test]
    fn signal_then_clear() {
        let w = Wakeup::new().unwrap();
        assert!(!readable(w.fd()));
        for _ in 0..1000 {
            w.signal();
        }
        assert!(readable(w.fd()));
        w.clear();
        assert!(!readable(w.fd()));
    }
}
