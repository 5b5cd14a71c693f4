//! TLS: rustls with the ring provider behind the default cargo feature
//! `tls`, the only code that names rustls. Without the feature the same
//! interface exists with no way to make a session (`load` says TLS is not
//! built in), so the rest of the server is the same code either way.

#[cfg(not(feature = "tls"))]
mod off;
#[cfg(feature = "tls")]
mod on;

pub use crate::config::MinVersion;
#[cfg(not(feature = "tls"))]
pub use off::{Acceptor, Connector, Fed, ReadWrite, Session, client, load};
#[cfg(feature = "tls")]
pub use on::{Acceptor, Connector, Fed, ReadWrite, Session, client, load};
