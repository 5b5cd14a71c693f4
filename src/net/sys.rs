//! The three system calls of every message, `epoll_wait`, `recv` and
//! `send`, made directly. On Linux they go through rustix's raw system
//! calls: libc's wrappers are cancellation points and pay for it on every
//! call (about a tenth of a lone message's instructions went to enabling
//! and disabling thread cancellation, which this server never uses), and
//! mio's `poll` adds a `Duration` conversion of the timeout. The epoll
//! instance is still mio's (its `Registry`): registration stays with mio,
//! only the wait is made here. Elsewhere, mio and std.

use std::io;

use mio::net::TcpStream;
use mio::{Poll, Token};

/// What one readiness event says, in the terms the loop uses (mio's
/// meaning of each flag).
#[derive(Clone, Copy, Debug)]
pub(super) struct Ready {
    pub token: Token,
    /// Readable, or read-closed, or an error: a read will say which.
    pub readable: bool,
    /// The peer closed its side, or the socket has an error.
    pub hup: bool,
    /// Writable, or write-closed, or an error: a write will say which.
    pub writable: bool,
}

/// Longest single wait: `epoll_pwait` takes an `int` of milliseconds, and a
/// wake-up an hour is free.
const MAX_WAIT_MS: u64 = 3_600_000;

/// The events of one wait.
pub(super) struct Events {
    #[cfg(target_os = "linux")]
    list: Vec<rustix::event::epoll::Event>,
    #[cfg(not(target_os = "linux"))]
    list: mio::Events,
}

impl Events {
    pub fn with_capacity(n: usize) -> Events {
        Events {
            #[cfg(target_os = "linux")]
            list: Vec::with_capacity(n),
            #[cfg(not(target_os = "linux"))]
            list: mio::Events::with_capacity(n),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Waits for events on `poll` for at most `timeout_ms` (forever when
    /// `None`).
    #[cfg(target_os = "linux")]
    pub fn wait(&mut self, poll: &mut Poll, timeout_ms: Option<u64>) -> io::Result<()> {
        use rustix::event::{Timespec, epoll};
        self.list.clear();
        let timeout = timeout_ms.map(|ms| {
            let ms = ms.min(MAX_WAIT_MS) as i64;
            Timespec {
                tv_sec: ms / 1000,
                tv_nsec: (ms % 1000) * 1_000_000,
            }
        });
        let spare = rustix::buffer::spare_capacity(&mut self.list);
        epoll::wait(poll.registry(), spare, timeout.as_ref())?;
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub fn wait(&mut self, poll: &mut Poll, timeout_ms: Option<u64>) -> io::Result<()> {
        let timeout = timeout_ms.map(|ms| std::time::Duration::from_millis(ms.min(MAX_WAIT_MS)));
        poll.poll(&mut self.list, timeout)
    }

    /// The events, as the loop reads them.
    #[cfg(target_os = "linux")]
    pub fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        use rustix::event::epoll::EventFlags as F;
        self.list.iter().map(|e| {
            let f = e.flags;
            // mio's reading: read-closed is HUP, or RDHUP with IN.
            let read_closed = f.contains(F::HUP) || f.contains(F::IN | F::RDHUP);
            let error = f.contains(F::ERR);
            Ready {
                token: Token(e.data.u64() as usize),
                readable: f.intersects(F::IN | F::PRI) || read_closed || error,
                hup: read_closed || error,
                writable: f.intersects(F::OUT | F::HUP | F::ERR),
            }
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        self.list.iter().map(|e| {
            let error = e.is_error();
            Ready {
                token: e.token(),
                readable: e.is_readable() || e.is_read_closed() || error,
                hup: e.is_read_closed() || error,
                writable: e.is_writable() || e.is_write_closed() || error,
            }
        })
    }
}

/// Reads what the socket has into `buf`.
#[cfg(target_os = "linux")]
pub(super) fn recv(sock: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    rustix::net::recv(sock, buf, rustix::net::RecvFlags::empty())
        .map(|(read, _)| read)
        .map_err(io::Error::from)
}

/// Writes what the socket takes of `buf` (no `SIGPIPE` on a closed peer).
#[cfg(target_os = "linux")]
pub(super) fn send(sock: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    rustix::net::send(sock, buf, rustix::net::SendFlags::NOSIGNAL).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn recv(mut sock: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    io::Read::read(&mut sock, buf)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn send(mut sock: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    io::Write::write(&mut sock, buf)
}
