//! The two system calls of every message, `recv` and `send`, made
//! directly. On Linux they go through rustix's raw system calls: libc's
//! wrappers are cancellation points and pay for it on every call (about a
//! tenth of a lone message's instructions went to enabling and disabling
//! thread cancellation, which this server never uses). Elsewhere, std.

use std::io;

use mio::net::TcpStream;

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
