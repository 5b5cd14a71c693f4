//! Peer errors and the answer each one gets on the wire.
//!
//! This file is the one place where a peer's mistake is mapped to a close code
//! (after the handshake) or an HTTP status (during it). Our own misuse of the
//! API is a different type ([`SendError`]).

use core::fmt;

/// Close codes the server sends (RFC 6455 §7.4.1).
pub mod code {
    /// 1000: normal closure.
    pub const NORMAL: u16 = 1000;
    /// 1001: the server is going away.
    pub const GOING_AWAY: u16 = 1001;
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// 1007: payload inconsistent with the message type (bad UTF-8).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// 1008: policy violation.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// 1009: message too big to process.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// 1011: unexpected condition on the server.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// A peer violated RFC 6455 or a configured limit after the handshake.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client frame without the mask bit (§5.1).
    UnmaskedFrame,
    /// RSV1–3 set without a negotiated extension (§5.2).
    ReservedBits,
    /// Opcode 0x3–0x7 or 0xB–0xF (§5.2).
    ReservedOpcode,
    /// Control frame with a payload over 125 bytes (§5.5).
    ControlFrameTooLong,
    /// Control frame without FIN (§5.5).
    FragmentedControlFrame,
    /// Continuation frame with no message to continue (§5.4).
    UnexpectedContinuation,
    /// New text or binary frame inside a fragmented message (§5.4).
    ExpectedContinuation,
    /// 64-bit payload length with the most significant bit set (§5.2).
    LengthMsbSet,
    /// Payload length not in its minimal encoding: the 16-bit form for less
    /// than 126 bytes, or the 64-bit form for less than 65,536 (§5.2).
    NonMinimalLength,
    /// Frame payload announced over `limits.max_frame_bytes`.
    FrameTooLarge,
    /// Message announced over `limits.max_message_bytes`.
    MessageTooLarge,
    /// Message in more than `limits.max_fragments` frames.
    TooManyFragments,
    /// Text message or close reason that is not UTF-8 (§8.1).
    InvalidUtf8,
    /// Close frame with a 1-byte payload (§5.5.1).
    InvalidClosePayload,
    /// Close code that may not be sent on the wire (§7.4).
    InvalidCloseCode,
}

impl ProtocolError {
    /// The close code this error is answered with.
    pub const fn close_code(self) -> u16 {
        match self {
            ProtocolError::FrameTooLarge
            | ProtocolError::MessageTooLarge
            | ProtocolError::TooManyFragments => code::MESSAGE_TOO_BIG,
            ProtocolError::InvalidUtf8 => code::INVALID_PAYLOAD,
            _ => code::PROTOCOL_ERROR,
        }
    }

    /// A short reason, sent as the close reason and logged.
    pub const fn reason(self) -> &'static str {
        match self {
            ProtocolError::UnmaskedFrame => "unmasked frame",
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::ReservedOpcode => "reserved opcode",
            ProtocolError::ControlFrameTooLong => "control frame too long",
            ProtocolError::FragmentedControlFrame => "fragmented control frame",
            ProtocolError::UnexpectedContinuation => "continuation without a message",
            ProtocolError::ExpectedContinuation => "expected a continuation frame",
            ProtocolError::LengthMsbSet => "payload length has its top bit set",
            ProtocolError::NonMinimalLength => "payload length not minimally encoded",
            ProtocolError::FrameTooLarge => "frame too large",
            ProtocolError::MessageTooLarge => "message too large",
            ProtocolError::TooManyFragments => "too many fragments",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::InvalidClosePayload => "close payload of 1 byte",
            ProtocolError::InvalidCloseCode => "invalid close code",
        }
    }
}

impl core::error::Error for ProtocolError {}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close {})", self.reason(), self.close_code())
    }
}

/// A request head that cannot be answered with `101` (RFC 6455 §4.2.1).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Head larger than `limits.max_request_head_bytes`.
    HeadTooLarge,
    /// More than `limits.max_headers` header fields.
    TooManyHeaders,
    /// Head not complete within `limits.handshake_timeout_ms`.
    Timeout,
    /// Not parseable as an HTTP/1.1 request.
    Malformed,
    /// Request target not in origin form, or with invalid characters.
    BadTarget,
    /// An upgrade request that is not HTTP/1.1 (§4.1: "HTTP/1.1 or higher").
    HttpVersion,
    /// A request with a body where none is allowed.
    UnexpectedBody,
    /// Method other than GET on the WebSocket path.
    MethodNotAllowed,
    /// No `Host`, more than one, or one that is not RFC 3986
    /// `host [":" port]`.
    BadHost,
    /// No `websocket` token in `Upgrade` or no `upgrade` token in `Connection`.
    NotUpgrade,
    /// `Sec-WebSocket-Version` absent or not 13.
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` absent, repeated, or not base64 of 16 bytes.
    BadKey,
    /// `Sec-WebSocket-Protocol` that is not a comma list of tokens.
    BadProtocol,
}

impl HandshakeError {
    /// The HTTP status this error is answered with.
    pub const fn status(self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => 431,
            HandshakeError::Timeout => 408,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::NotUpgrade | HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// A short reason, sent as the `text/plain` body and logged.
    pub const fn reason(self) -> &'static str {
        match self {
            HandshakeError::HeadTooLarge => "request head too large",
            HandshakeError::TooManyHeaders => "too many header fields",
            HandshakeError::Timeout => "request head not received in time",
            HandshakeError::Malformed => "malformed HTTP request",
            HandshakeError::BadTarget => "invalid request target",
            HandshakeError::HttpVersion => "WebSocket upgrade requires HTTP/1.1",
            HandshakeError::UnexpectedBody => "unexpected request body",
            HandshakeError::MethodNotAllowed => "method not allowed",
            HandshakeError::BadHost => "missing, repeated or invalid Host header",
            HandshakeError::NotUpgrade => "not a WebSocket upgrade request",
            HandshakeError::UnsupportedVersion => "unsupported Sec-WebSocket-Version",
            HandshakeError::BadKey => "missing or invalid Sec-WebSocket-Key",
            HandshakeError::BadProtocol => "invalid Sec-WebSocket-Protocol",
        }
    }

    /// Extra header the error response carries, if any.
    pub const fn extra_header(self) -> Option<(&'static str, &'static str)> {
        match self {
            HandshakeError::MethodNotAllowed => Some(("Allow", "GET")),
            HandshakeError::NotUpgrade => Some(("Upgrade", "websocket")),
            HandshakeError::UnsupportedVersion => Some(("Sec-WebSocket-Version", "13")),
            _ => None,
        }
    }
}

impl core::error::Error for HandshakeError {}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status())
    }
}

/// Our own misuse of a connection (not the peer's fault).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The connection is closing or closed; nothing more may be sent.
    Closed,
    /// The outbound queue is over `limits.max_outbound_bytes`: the peer does
    /// not read (a slow consumer). The connection is being closed with 1008.
    SlowConsumer,
    /// Text to send was not UTF-8; nothing was sent.
    NotUtf8,
}

impl core::error::Error for SendError {}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed => "connection is closing",
            SendError::SlowConsumer => "outbound queue full (slow consumer)",
            SendError::NotUtf8 => "text message is not UTF-8",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::prelude::rust_2024::*;

    #[test]
    fn every_protocol_error_has_its_spec_code() {
        use ProtocolError::*;
        let table = [
            (UnmaskedFrame, 1002),
            (ReservedBits, 1002),
            (ReservedOpcode, 1002),
            (ControlFrameTooLong, 1002),
            (FragmentedControlFrame, 1002),
            (UnexpectedContinuation, 1002),
            (ExpectedContinuation, 1002),
            (LengthMsbSet, 1002),
            (NonMinimalLength, 1002),
            (FrameTooLarge, 1009),
            (MessageTooLarge, 1009),
            (TooManyFragments, 1009),
            (InvalidUtf8, 1007),
            (InvalidClosePayload, 1002),
            (InvalidCloseCode, 1002),
        ];
        for (e, c) in table {
            assert_eq!(e.close_code(), c, "{e:?}");
            assert!(e.reason().len() <= 123);
        }
    }

    #[test]
    fn every_handshake_error_has_its_spec_status() {
        use HandshakeError::*;
        let table = [
            (HeadTooLarge, 431),
            (TooManyHeaders, 431),
            (Timeout, 408),
            (Malformed, 400),
            (BadTarget, 400),
            (HttpVersion, 400),
            (UnexpectedBody, 400),
            (MethodNotAllowed, 405),
            (BadHost, 400),
            (NotUpgrade, 426),
            (UnsupportedVersion, 426),
            (BadKey, 400),
            (BadProtocol, 400),
        ];
        for (e, s) in table {
            assert_eq!(e.status(), s, "{e:?}");
        }
        assert_eq!(MethodNotAllowed.extra_header(), Some(("Allow", "GET")));
        assert_eq!(NotUpgrade.extra_header(), Some(("Upgrade", "websocket")));
        assert_eq!(
            UnsupportedVersion.extra_header(),
            Some(("Sec-WebSocket-Version", "13"))
        );
    }
}
