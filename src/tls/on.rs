//! TLS with rustls (ring provider): the only file that names rustls.
//!
//! [`load`] builds a server configuration from PEM files and refuses, with a
//! one-line reason naming the file, a missing or unreadable file, a key that
//! does not match the certificate, and an expired certificate. [`Session`]
//! wraps one `rustls::ServerConnection`: ciphertext in from the socket,
//! plaintext out to the same sans-IO core that plain connections use, and
//! plaintext replies in, ciphertext out. A full rustls buffer is
//! backpressure, never an error.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

/// Plaintext and ciphertext rustls may buffer per connection before it
/// pushes back (its `set_buffer_limit`).
pub const BUFFER_LIMIT: usize = 64 * 1024;

use super::MinVersion;

/// A loaded server configuration, shared by every new session.
#[derive(Clone, Debug)]
pub struct Acceptor {
    config: Arc<ServerConfig>,
    /// Serial number of the certificate, for the log.
    pub serial: String,
    /// The first DNS name of the certificate, if it has one (where the
    /// redirect listener sends clients unless `tls.redirect_host` is set).
    pub dns_name: Option<String>,
}

/// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key).
pub fn load(cert: &Path, key: &Path, min: MinVersion) -> Result<Acceptor, String> {
    let cert_name = cert.display();
    let key_name = key.display();
    std::fs::metadata(cert).map_err(|e| format!("tls.cert {cert_name}: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("tls.cert {cert_name}: {}", pem_error(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert {cert_name}: {}", pem_error(&e)))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("tls.cert {cert_name}: no certificate in the file"));
    };
    let LeafFacts {
        serial,
        not_after,
        dns_name,
    } = leaf_facts(leaf).ok_or_else(|| {
        format!("tls.cert {cert_name}: the first certificate is not valid X.509 DER")
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if not_after < now {
        return Err(format!(
            "tls.cert {cert_name}: certificate expired at {}",
            crate::log::Timestamp::from_unix_secs(not_after)
        ));
    }
    std::fs::metadata(key).map_err(|e| format!("tls.key {key_name}: {e}"))?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("tls.key {key_name}: {}", pem_error(&e)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("tls.key {key_name}: does not match the certificate in {cert_name}")
            }
            other => format!("tls.key {key_name}: {other}"),
        })?;
    // Only HTTP/1.1 is spoken (RFC 6455 upgrades are HTTP/1.1).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The server's preference (rustls' order: AES-256-GCM, AES-128-GCM,
    // ChaCha20-Poly1305, all AEAD with forward secrecy) wins over the client's.
    config.ignore_client_order = true;
    Ok(Acceptor {
        config: Arc::new(config),
        serial,
        dns_name,
    })
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("{other:?}"),
    }
}

/// What the server reads from its own certificate.
struct LeafFacts {
    serial: String,
    not_after: u64,
    dns_name: Option<String>,
}

/// Serial (hex), notAfter (Unix seconds) and the first DNS name of the
/// subjectAltName extension of a DER certificate.
///
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
/// serialNumber INTEGER, signature AlgorithmIdentifier, issuer Name,
/// validity SEQUENCE { notBefore Time, notAfter Time }, subject Name,
/// subjectPublicKeyInfo, [1] [2] unique ids OPTIONAL, [3] extensions
/// OPTIONAL }, ... } (RFC 5280 §4.1).
fn leaf_facts(der: &[u8]) -> Option<LeafFacts> {
    let (_, cert, _) = der_item(der)?;
    let (_, tbs, _) = der_item(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = der_item(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    let (tag, serial, after) = der_item(rest)?;
    if tag != 0x02 {
        return None;
    }
    let serial_hex: String = serial
        .iter()
        .skip_while(|b| **b == 0)
        .map(|b| format!("{b:02X}"))
        .collect();
    let (_, _, after) = der_item(after)?; // signature algorithm
    let (_, _, after) = der_item(after)?; // issuer
    let (tag, validity, _) = der_item(after)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, after) = der_item(validity)?; // notBefore
    let (tag, not_after, _) = der_item(after)?;
    let not_after = parse_time(tag, not_after)?;
    let (_, _, rest) = der_item(rest_after_validity(tbs)?)?; // subject
    let (_, _, mut rest) = der_item(rest)?; // subjectPublicKeyInfo
    let mut dns_name = None;
    while let Some((tag, contents, after)) = der_item(rest) {
        if tag == 0xa3 {
            dns_name = first_dns_name(contents);
        }
        rest = after;
    }
    Some(LeafFacts {
        serial: serial_hex,
        not_after,
        dns_name,
    })
}

/// The bytes of a tbsCertificate after its validity.
fn rest_after_validity(tbs: &[u8]) -> Option<&[u8]> {
    let mut rest = tbs;
    let (tag, _, after) = der_item(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..4 {
        // serial, signature, issuer, validity
        rest = der_item(rest)?.2;
    }
    Some(rest)
}

/// The first dNSName of a subjectAltName (OID 2.5.29.17) among the
/// contents of the `[3]` extensions: `Extensions ::= SEQUENCE OF Extension
/// { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }`,
/// `GeneralName` dNSName `[2] IA5String`.
fn first_dns_name(explicit: &[u8]) -> Option<String> {
    const SAN: &[u8] = &[0x55, 0x1d, 0x11];
    let (_, mut list, _) = der_item(explicit)?;
    while let Some((_, ext, after)) = der_item(list) {
        list = after;
        let (tag, oid, mut rest) = der_item(ext)?;
        if tag != 0x06 || oid != SAN {
            continue;
        }
        let (mut tag, mut value, after) = der_item(rest)?;
        if tag == 0x01 {
            rest = after;
            (tag, value, _) = der_item(rest)?;
        }
        if tag != 0x04 {
            return None;
        }
        let (_, mut names, _) = der_item(value)?;
        while let Some((tag, name, after)) = der_item(names) {
            if tag == 0x82 {
                return std::str::from_utf8(name).ok().map(str::to_owned);
            }
            names = after;
        }
        return None;
    }
    None
}

/// One DER item: (tag, contents, rest).
fn der_item(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// UTCTime (0x17, YYMMDDHHMMSSZ) or GeneralizedTime (0x18, YYYYMMDDHHMMSSZ).
fn parse_time(tag: u8, s: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?.strip_suffix('Z')?;
    let (year, rest) = match (tag, s.len()) {
        (0x17, 12) => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (0x18, 14) => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (mon, day, h, m, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    let days = days_from_civil(year, mon, day);
    let t = days * 86_400 + h * 3600 + m * 60 + sec;
    u64::try_from(t).ok()
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One TLS connection.
pub struct Session {
    conn: ServerConnection,
}

/// What feeding ciphertext produced.
pub enum Fed {
    /// Plaintext may be available; keep going.
    Ok,
    /// The peer sent close_notify: no more plaintext will come.
    Closed,
}

impl Session {
    /// A new session for an accepted connection.
    pub fn new(acceptor: &Acceptor) -> io::Result<Session> {
        let mut conn = ServerConnection::new(acceptor.config.clone()).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(Session { conn })
    }

    /// Feeds ciphertext; fails with the TLS error after queueing its alert.
    pub fn feed(
        &mut self,
        mut ciphertext: &[u8],
        mut plaintext: impl FnMut(&mut [u8]),
        scratch: &mut [u8],
    ) -> Result<Fed, String> {
        while !ciphertext.is_empty() {
            match self.conn.read_tls(&mut ciphertext) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            let state = self.conn.process_new_packets().map_err(|e| e.to_string())?;
            if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() {
                loop {
                    match self.conn.reader().read(scratch) {
                        Ok(0) => return Ok(Fed::Closed),
                        Ok(n) => plaintext(&mut scratch[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
        }
        Ok(Fed::Ok)
    }

    /// Takes as much plaintext to send as rustls will buffer; returns how much.
    pub fn write_plaintext(&mut self, data: &[u8]) -> usize {
        self.conn.writer().write(data).unwrap_or(0)
    }

    /// Whether ciphertext is waiting to be written.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes ciphertext to `sock`.
    pub fn write_tls(&mut self, sock: &mut dyn Write) -> io::Result<usize> {
        self.conn.write_tls(sock)
    }

    /// Whether the TLS handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Queues a close_notify alert.
    pub fn send_close_notify(&mut self) {
        self.conn.send_close_notify();
    }
}

/// A blocking TLS client stream to `host` over `tcp`, trusting only the
/// certificates in `ca` (PEM): the `palisade publish` command's.
pub fn client(
    tcp: std::net::TcpStream,
    host: &str,
    ca: &Path,
) -> Result<Box<dyn ReadWrite>, String> {
    Connector::new(host, ca)?.connect(tcp)
}

/// TLS client sessions to one server name, trusting only the
/// certificates of one PEM file: made once, used for every connection
/// (`palisade publish`, the event loops' connections to Redis).
#[derive(Clone)]
pub struct Connector {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

impl Connector {
    /// Reads `ca`; fails with a message naming the file or the name.
    pub fn new(host: &str, ca: &Path) -> Result<Connector, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("{}: {}", ca.display(), pem_error(&e)))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {}", ca.display(), pem_error(&e)))?;
            // A system bundle may hold certificates rustls cannot parse:
            // those are skipped, as long as one is left.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(format!("{}: no usable CA certificate", ca.display()));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| format!("{host:?} is not a server name"))?;
        Ok(Connector {
            config: Arc::new(config),
            name,
        })
    }

    /// A TLS stream over `sock` (blocking or not: on a non-blocking
    /// socket reads and writes fail with `WouldBlock` when it would).
    pub fn connect<S: Read + Write + Send + 'static>(
        &self,
        sock: S,
    ) -> Result<Box<dyn ReadWrite>, String> {
        let conn = rustls::ClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .map_err(|e| e.to_string())?;
        Ok(Box::new(rustls::StreamOwned::new(conn, sock)))
    }
}

/// A byte stream both ways.
pub trait ReadWrite: Read + Write + Send {}

impl<T: Read + Write + Send> ReadWrite for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x18, b"20000229000000Z"), Some(951_782_400));
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x17, b"garbage"), None);
    }

    #[test]
    fn development_certificate_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let a = load(
            &dir.join("localhost.pem"),
            &dir.join("localhost.key"),
            MinVersion::Tls12,
        )
        .unwrap();
        assert!(!a.serial.is_empty());
        assert_eq!(a.dns_name.as_deref(), Some("localhost"));
        let ca = load(&dir.join("ca.pem"), &dir.join("ca.key"), MinVersion::Tls12).unwrap();
        assert_eq!(ca.dns_name, None);
        let e = load(
            &dir.join("localhost.pem"),
            &dir.join("ca.key"),
            MinVersion::Tls12,
        )
        .unwrap_err();
        assert!(e.contains("does not match the certificate"), "{e}");
        let e = load(
            &dir.join("missing.pem"),
            &dir.join("localhost.key"),
            MinVersion::Tls12,
        )
        .unwrap_err();
        assert!(
            e.starts_with("tls.cert ") && e.contains("missing.pem"),
            "{e}"
        );
        let e = load(
            &dir.join("localhost.pem"),
            &dir.join("README.md"),
            MinVersion::Tls12,
        )
        .unwrap_err();
        assert!(e.starts_with("tls.key "), "{e}");
    }
}
