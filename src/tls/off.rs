//! The server built without the `tls` feature: plain listeners only. A
//! configured certificate is a start-up error that says how to get TLS.

use std::io::{self, Write};
use std::path::Path;

use super::MinVersion;

/// Never made: `load` always fails in a build without TLS.
#[derive(Clone, Debug)]
pub struct Acceptor {
    /// Serial number of the certificate, for the log.
    pub serial: String,
    /// The first DNS name of the certificate.
    pub dns_name: Option<String>,
}

/// Refuses: this build has no TLS.
pub fn load(cert: &Path, _key: &Path, _min: MinVersion) -> Result<Acceptor, String> {
    Err(format!(
        "tls.cert {}: this palisade was built without TLS (cargo feature `tls`, on by default)",
        cert.display()
    ))
}

/// A TLS session; none exists in a build without TLS.
pub enum Session {}

/// What feeding ciphertext produced (never made without TLS).
#[allow(dead_code)]
pub enum Fed {
    /// Plaintext may be available; keep going.
    Ok,
    /// The peer sent close_notify.
    Closed,
}

impl Session {
    /// Never succeeds (there is no `Acceptor` to call it with).
    pub fn new(_acceptor: &Acceptor) -> io::Result<Session> {
        Err(io::Error::other("built without TLS"))
    }

    pub fn feed(
        &mut self,
        _ciphertext: &[u8],
        _plaintext: impl FnMut(&mut [u8]),
        _scratch: &mut [u8],
    ) -> Result<Fed, String> {
        match *self {}
    }

    pub fn write_plaintext(&mut self, _data: &[u8]) -> usize {
        match *self {}
    }

    pub fn wants_write(&self) -> bool {
        match *self {}
    }

    pub fn write_tls(&mut self, _sock: &mut dyn Write) -> io::Result<usize> {
        match *self {}
    }

    pub fn is_handshaking(&self) -> bool {
        match *self {}
    }

    pub fn send_close_notify(&mut self) {
        match *self {}
    }
}

/// A byte stream both ways.
pub trait ReadWrite: std::io::Read + Write + Send {}

impl<T: std::io::Read + Write + Send> ReadWrite for T {}

/// Never made: [`Connector::new`] always fails in a build without TLS.
#[derive(Clone)]
pub enum Connector {}

impl Connector {
    /// Refuses: this build has no TLS.
    pub fn new(_host: &str, _ca: &Path) -> Result<Connector, String> {
        Err("this palisade was built without TLS (cargo feature `tls`, on by default)".into())
    }

    /// Unreachable: there is no connector.
    pub fn connect<S: std::io::Read + Write + Send + 'static>(
        &self,
        _sock: S,
    ) -> Result<Box<dyn ReadWrite>, String> {
        match *self {}
    }
}

/// Refuses: this build has no TLS.
pub fn client(
    _tcp: std::net::TcpStream,
    _host: &str,
    _ca: &Path,
) -> Result<Box<dyn ReadWrite>, String> {
    Err("this palisade was built without TLS (cargo feature `tls`, on by default)".into())
}
