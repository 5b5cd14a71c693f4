//! The security policy that answers the handshake's decision point.
//!
//! Every upgrade request that passed the RFC 6455 checks comes here through
//! [`crate::proto::handshake::respond`], which is the only way to produce a
//! `101`. Today the gate selects the subprotocol; origin checks,
//! credentials and rate limits plug in here, each refusing with its own
//! status from SPEC.md §2.

pub mod jwt;
pub mod password;
pub mod users;

use crate::app::PROTOCOLS;
use crate::proto::handshake::{Accept, Decision, Policy, UpgradeRequest};

/// What the gate knows about an accepted peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity;

/// The handshake policy of the server.
#[derive(Debug, Default)]
pub struct Gate {
    _private: (),
}

impl Gate {
    /// The gate for a server.
    pub fn new() -> Self {
        Gate::default()
    }
}

impl Policy for Gate {
    type Identity = Identity;

    fn decide(&mut self, request: &UpgradeRequest<'_, '_, '_>) -> Decision<Identity> {
        Decision::Accept(Accept {
            protocol: request.select_protocol(PROTOCOLS),
            identity: Identity,
        })
    }
}
