//! The server side of an open WebSocket connection (RFC 6455 §5–§7).
//!
//! Bytes in ([`WebSocket::handle_input`]), events out through a callback
//! that may reply through a [`Sender`], bytes to write out
//! ([`WebSocket::output`] / [`WebSocket::consume_output`]), deadlines in and
//! out ([`WebSocket::poll_timeout`] / [`WebSocket::handle_timeout`]). No
//! socket, no clock: the caller passes `now`.
//!
//! A complete unfragmented frame that is wholly inside the input is unmasked
//! in place and handed out as a borrowed slice; only a frame split across
//! reads, or a fragmented message, is copied into the reassembly buffer.
//! Every size check is made on the header, before a payload byte is kept.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::Limits;
use super::close::{encode_close_payload, parse_close_payload};
use super::error::{ProtocolError, SendError, code};
use super::frame::{MAX_HEADER_LEN, decode_header, header_len, opcode, write_frame};
use super::mask::{apply_mask, unmask_is_ascii};
use super::stamp::Stamp;
use super::utf8::Utf8Validator;

/// The payload of a complete text message: bytes the decoder has checked
/// to be UTF-8.
///
/// Text is handed over as bytes because most of it is checked for free: a
/// payload that unmasks to all-ASCII is known to be UTF-8 without a second
/// pass over it. Applications that can work on bytes (`serde_json::from_slice`,
/// an echo) use [`Text::as_bytes`]; [`Text::as_str`] gives a `&str`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Text<'a> {
    /// Valid UTF-8, always: the only constructors are `From<&str>` and
    /// [`Text::ascii`], which is given all-ASCII bytes only.
    bytes: &'a [u8],
}

impl<'a> Text<'a> {
    /// Wraps bytes the caller has found to be all ASCII.
    fn ascii(bytes: &'a [u8]) -> Text<'a> {
        debug_assert!(bytes.is_ascii(), "Text::ascii holds ASCII");
        Text { bytes }
    }

    /// The message's bytes (UTF-8).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The message as a `&str`. The crate forbids `unsafe`, so this runs
    /// std's validator again over bytes known to be UTF-8: one more pass
    /// over the message, which `as_bytes` avoids.
    pub fn as_str(&self) -> &'a str {
        core::str::from_utf8(self.bytes).expect("Text holds UTF-8")
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(text: &'a str) -> Text<'a> {
        Text {
            bytes: text.as_bytes(),
        }
    }
}

/// Something the peer sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (validated UTF-8).
    Text(Text<'a>),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; the pong is already queued.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame; the reply (or the end of the exchange) is queued.
    Close {
        /// Status code, if the frame had one.
        code: Option<u16>,
        /// Reason text.
        reason: &'a str,
    },
}

/// Why [`WebSocket::handle_timeout`] gave up on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// No frame within `limits.idle_timeout_ms` after the idle ping.
    Idle,
    /// The peer did not finish the close within `limits.close_timeout_ms`.
    Close,
}

/// Who started the close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    /// This server.
    Server,
    /// The peer.
    Client,
}

/// How the connection ended or is ending, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    /// Close code sent or received (1006 when the TCP connection ended without one).
    pub code: u16,
    /// Who started it.
    pub by: Initiator,
    /// A short reason for closes the server started.
    pub reason: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close and wait for the peer's (§7.1.2); data is discarded.
    CloseSent,
    /// We failed the connection (§7.1.7): close sent, input ignored, the
    /// write side is shut once the close frame is out.
    Failed,
    /// The close exchange is over or the connection is dead: flush, then
    /// close TCP (§7.1.1: the server closes first).
    Closed,
}

/// The output half: what the application may use while handling an event.
#[derive(Debug, Default)]
struct Output {
    buf: Vec<u8>,
    /// Bytes of `buf` already written (kept under 4 GiB by `consume_output`).
    pos: u32,
    /// Data messages queued since [`WebSocket::take_messages_sent`].
    sent: u32,
}

impl Output {
    fn queued(&self) -> usize {
        self.buf.len() - self.pos as usize
    }
}

/// State kept only once the connection leaves `Open` (one allocation per
/// closing connection keeps every open one smaller).
#[derive(Debug)]
struct Closing {
    info: CloseInfo,
    /// When a closing connection is dropped regardless.
    deadline: Option<Stamp>,
    /// Bytes received since the server sent its close frame.
    after_close: u64,
}

/// Records how the connection ends (the first deadline and count stay).
fn set_close(closing: &mut Option<Box<Closing>>, info: CloseInfo) {
    match closing {
        Some(c) => c.info = info,
        None => {
            *closing = Some(Box::new(Closing {
                info,
                deadline: None,
                after_close: 0,
            }))
        }
    }
}

/// Lets the application send while it handles an event.
pub struct Sender<'a> {
    out: &'a mut Output,
    state: &'a mut State,
    closing: &'a mut Option<Box<Closing>>,
    limits: &'a Limits,
}

impl Sender<'_> {
    fn check(&mut self) -> Result<(), SendError> {
        if *self.state != State::Open {
            return Err(SendError::Closed);
        }
        if self.out.queued() > self.limits.max_outbound_bytes {
            self.fail(code::POLICY_VIOLATION, "slow consumer");
            return Err(SendError::SlowConsumer);
        }
        Ok(())
    }

    /// Queues a text message: a `&str`, or a received [`Text`] as it is.
    pub fn send_text<'t>(&mut self, text: impl Into<Text<'t>>) -> Result<(), SendError> {
        self.check()?;
        write_frame(&mut self.out.buf, opcode::TEXT, text.into().as_bytes());
        self.out.sent = self.out.sent.wrapping_add(1);
        Ok(())
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.check()?;
        write_frame(&mut self.out.buf, opcode::BINARY, data);
        self.out.sent = self.out.sent.wrapping_add(1);
        Ok(())
    }

    /// Queues a text message that `write` appends straight into the output
    /// buffer (no intermediate allocation). What it writes must be UTF-8;
    /// otherwise nothing is sent and the result is `Err(SendError::NotUtf8)`.
    pub fn send_text_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), SendError> {
        self.check()?;
        let buf = &mut self.out.buf;
        let start = buf.len();
        // Reserve a 4-byte header (the 126 form); most replies fit it.
        buf.extend_from_slice(&[0; 4]);
        write(buf);
        let len = buf.len() - start - 4;
        if core::str::from_utf8(&buf[start + 4..]).is_err() {
            buf.truncate(start);
            return Err(SendError::NotUtf8);
        }
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = super::frame::encode_header(true, opcode::TEXT, len as u64, None, &mut h);
        match n {
            2 => {
                buf.copy_within(start + 4.., start + 2);
                buf.truncate(buf.len() - 2);
            }
            4 => {}
            _ => {
                buf.splice(start + 4..start + 4, [0u8; 6]);
            }
        }
        buf[start..start + n].copy_from_slice(&h[..n]);
        self.out.sent = self.out.sent.wrapping_add(1);
        Ok(())
    }

    /// Queues bytes encoded already: whole data frames as [`write_frame`]
    /// makes them, or the rest of one whose start the caller wrote to the
    /// peer itself (a publication encoded once for many connections).
    /// Counted as one
    /// message.
    pub fn send_encoded(&mut self, frames: &[u8]) -> Result<(), SendError> {
        self.check()?;
        self.out.buf.extend_from_slice(frames);
        self.out.sent = self.out.sent.wrapping_add(1);
        Ok(())
    }

    /// Starts the closing handshake with `code` and `reason` (§7.1.2). Further
    /// data from the peer is discarded until its close arrives.
    pub fn close(&mut self, code: u16, reason: &'static str) {
        if *self.state != State::Open {
            return;
        }
        write_close(&mut self.out.buf, code, reason);
        *self.state = State::CloseSent;
        set_close(
            self.closing,
            CloseInfo {
                code,
                by: Initiator::Server,
                reason,
            },
        );
    }

    fn fail(&mut self, code: u16, reason: &'static str) {
        if matches!(*self.state, State::Open | State::CloseSent) {
            if *self.state == State::Open {
                write_close(&mut self.out.buf, code, reason);
            }
            *self.state = State::Failed;
            set_close(
                self.closing,
                CloseInfo {
                    code,
                    by: Initiator::Server,
                    reason,
                },
            );
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.out.queued()
    }
}

fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut payload = [0u8; 125];
    let n = encode_close_payload(code, reason, &mut payload);
    write_frame(out, opcode::CLOSE, &payload[..n]);
}

const NO_MESSAGE: u8 = 0xff;

/// Frame and message reassembly state.
#[derive(Debug)]
struct Decoder {
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: u8,
    in_frame: bool,
    fin: bool,
    opcode: u8,
    key: [u8; 4],
    key_pos: u8,
    remaining: u64,
    /// Opcode of the data message in progress, or `NO_MESSAGE`.
    message: u8,
    fragments: u32,
    message_len: u64,
    utf8: Utf8Validator,
    payload: Vec<u8>,
    control: Vec<u8>,
    /// The last message delivered from `payload`; clear it on the next call.
    clear_payload: bool,
    /// The last control frame delivered from `control`; clear it likewise.
    clear_control: bool,
    /// Input not decoded yet because the outbound queue was over the
    /// high-water mark (see [`WebSocket::handle_input`]).
    held: Vec<u8>,
}

/// What the decoder produced; borrows the input or the reassembly buffer.
enum Decoded<'a> {
    Text(Text<'a>),
    Binary(&'a [u8]),
    Control(u8, &'a [u8]),
}

enum Step {
    NeedMore,
    Continue,
    /// A control frame whose whole payload is in the input: `n` bytes at `pos`.
    ControlInPlace(usize),
    ControlBuffered,
    /// A whole unfragmented data message in the input: `n` bytes at `pos`.
    DataInPlace(usize),
    DataBuffered,
}

impl Decoder {
    fn new() -> Self {
        Decoder {
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            in_frame: false,
            fin: false,
            opcode: 0,
            key: [0; 4],
            key_pos: 0,
            remaining: 0,
            message: NO_MESSAGE,
            fragments: 0,
            message_len: 0,
            utf8: Utf8Validator::new(),
            payload: Vec::new(),
            control: Vec::new(),
            clear_payload: false,
            clear_control: false,
            held: Vec::new(),
        }
    }

    fn clear_delivered(&mut self) {
        if self.clear_payload {
            self.payload.clear();
            self.clear_payload = false;
        }
        if self.clear_control {
            self.control.clear();
            self.clear_control = false;
        }
    }

    /// Whether no frame or message is in progress (held input aside).
    fn is_clean(&self) -> bool {
        self.hdr_len == 0 && !self.in_frame && self.message == NO_MESSAGE
    }

    /// Whether a frame or message is partly received.
    fn is_mid_message(&self) -> bool {
        self.hdr_len > 0 || self.in_frame || self.message != NO_MESSAGE || !self.held.is_empty()
    }

    /// Checks a new header against the protocol state and the limits.
    fn begin_frame(
        &mut self,
        h: super::frame::FrameHeader,
        limits: &Limits,
    ) -> Result<(), ProtocolError> {
        // §5.2: "RSV1, RSV2, RSV3: MUST be 0 unless an extension is negotiated".
        if h.rsv != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        // §5.2: "If an unknown opcode is received, the receiving endpoint MUST
        // _Fail the WebSocket Connection_."
        if !opcode::is_known(h.opcode) {
            return Err(ProtocolError::ReservedOpcode);
        }
        // §5.1: "The server MUST close the connection upon receiving a frame
        // that is not masked."
        let Some(key) = h.mask else {
            return Err(ProtocolError::UnmaskedFrame);
        };
        if opcode::is_control(h.opcode) {
            // §5.5: "All control frames MUST have a payload length of 125
            // bytes or less and MUST NOT be fragmented."
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if h.len > 125 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        } else {
            self.begin_data(&h, limits)?;
        }
        self.in_frame = true;
        self.fin = h.fin;
        self.opcode = h.opcode;
        self.key = key;
        self.key_pos = 0;
        self.remaining = h.len;
        Ok(())
    }

    /// The checks of a text, binary or continuation header against the
    /// message in progress (§5.4) and the caps, decided from the header.
    fn begin_data(
        &mut self,
        h: &super::frame::FrameHeader,
        limits: &Limits,
    ) -> Result<(), ProtocolError> {
        let starts = h.opcode != opcode::CONTINUATION;
        // §5.4: continuation only inside a message; no new message inside one.
        if !starts && self.message == NO_MESSAGE {
            return Err(ProtocolError::UnexpectedContinuation);
        }
        if starts && self.message != NO_MESSAGE {
            return Err(ProtocolError::ExpectedContinuation);
        }
        // Caps decided from the header, compared as u64 before any cast.
        if h.len > limits.max_frame_bytes {
            return Err(ProtocolError::FrameTooLarge);
        }
        let before = if starts { 0 } else { self.message_len };
        let total = before.saturating_add(h.len);
        if total > limits.max_message_bytes {
            return Err(ProtocolError::MessageTooLarge);
        }
        let fragments = if starts { 1 } else { self.fragments + 1 };
        if fragments > limits.max_fragments {
            return Err(ProtocolError::TooManyFragments);
        }
        if starts {
            self.message = h.opcode;
            self.utf8.reset();
            self.payload.clear();
        }
        self.fragments = fragments;
        self.message_len = total;
        Ok(())
    }

    /// Reads a header from the stash and `input`; false when more is needed.
    fn read_header(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        limits: &Limits,
    ) -> Result<bool, ProtocolError> {
        if self.hdr_len == 0 {
            let rest = &input[*pos..];
            return match decode_header(rest)? {
                Some((h, n)) => {
                    *pos += n;
                    self.begin_frame(h, limits)?;
                    Ok(true)
                }
                None => {
                    self.hdr[..rest.len()].copy_from_slice(rest);
                    self.hdr_len = rest.len() as u8;
                    *pos = input.len();
                    Ok(false)
                }
            };
        }
        loop {
            let have = self.hdr_len as usize;
            let need = if have < 2 { 2 } else { header_len(self.hdr[1]) };
            if have == need {
                break;
            }
            let take = (need - have).min(input.len() - *pos);
            self.hdr[have..have + take].copy_from_slice(&input[*pos..*pos + take]);
            self.hdr_len += take as u8;
            *pos += take;
            if (self.hdr_len as usize) < need && *pos == input.len() {
                return Ok(false);
            }
        }
        let n = self.hdr_len as usize;
        self.hdr_len = 0;
        let (h, _) = decode_header(&self.hdr[..n])?.expect("a whole header is stashed");
        self.begin_frame(h, limits)?;
        Ok(true)
    }

    /// Decides the next step with short borrows only.
    fn step(
        &mut self,
        input: &mut [u8],
        pos: &mut usize,
        limits: &Limits,
    ) -> Result<Step, ProtocolError> {
        if !self.in_frame && !self.read_header(input, pos, limits)? {
            return Ok(Step::NeedMore);
        }
        let avail = (input.len() - *pos) as u64;
        if opcode::is_control(self.opcode) {
            if self.control.is_empty() && self.remaining <= avail {
                self.in_frame = false;
                return Ok(Step::ControlInPlace(self.remaining as usize));
            }
            let n = self.remaining.min(avail) as usize;
            let chunk = &mut input[*pos..*pos + n];
            self.key_pos = apply_mask(chunk, self.key, self.key_pos as usize) as u8;
            self.control.extend_from_slice(chunk);
            *pos += n;
            self.remaining -= n as u64;
            if self.remaining > 0 {
                return Ok(Step::NeedMore);
            }
            self.in_frame = false;
            return Ok(Step::ControlBuffered);
        }
        if self.fin && self.fragments == 1 && self.payload.is_empty() && self.remaining <= avail {
            self.in_frame = false;
            return Ok(Step::DataInPlace(self.remaining as usize));
        }
        let n = self.remaining.min(avail) as usize;
        let chunk = &mut input[*pos..*pos + n];
        self.key_pos = apply_mask(chunk, self.key, self.key_pos as usize) as u8;
        if self.message == opcode::TEXT {
            // §8.1: fail as soon as the text cannot be UTF-8, even mid-frame.
            self.utf8
                .feed(chunk)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        self.payload.extend_from_slice(chunk);
        *pos += n;
        self.remaining -= n as u64;
        if self.remaining > 0 {
            return Ok(Step::NeedMore);
        }
        self.in_frame = false;
        if !self.fin {
            return Ok(Step::Continue);
        }
        if self.message == opcode::TEXT {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(Step::DataBuffered)
    }

    /// The next complete message or control frame in `input[*pos..]`.
    fn next<'a>(
        &'a mut self,
        input: &'a mut [u8],
        pos: &mut usize,
        limits: &Limits,
    ) -> Result<Option<Decoded<'a>>, ProtocolError> {
        self.clear_delivered();
        let step = loop {
            match self.step(input, pos, limits)? {
                Step::NeedMore => return Ok(None),
                Step::Continue => continue,
                other => break other,
            }
        };
        match step {
            Step::ControlInPlace(n) => {
                let start = *pos;
                *pos += n;
                let payload = &mut input[start..start + n];
                apply_mask(payload, self.key, 0);
                Ok(Some(Decoded::Control(self.opcode, payload)))
            }
            Step::ControlBuffered => {
                self.clear_control = true;
                Ok(Some(Decoded::Control(self.opcode, &self.control)))
            }
            Step::DataInPlace(n) => {
                let start = *pos;
                *pos += n;
                let payload = &mut input[start..start + n];
                let op = self.message;
                self.message = NO_MESSAGE;
                if op == opcode::TEXT {
                    // The whole text is here: checked while it is unmasked.
                    Ok(Some(Decoded::Text(
                        unmasked_text(payload, self.key).ok_or(ProtocolError::InvalidUtf8)?,
                    )))
                } else {
                    apply_mask(payload, self.key, 0);
                    Ok(Some(Decoded::Binary(payload)))
                }
            }
            Step::DataBuffered => {
                self.clear_payload = true;
                let op = self.message;
                self.message = NO_MESSAGE;
                if op == opcode::TEXT {
                    // Validated piece by piece already; std's validator makes
                    // sure of it once more (fragmented text is rare).
                    let text = core::str::from_utf8(&self.payload)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                    Ok(Some(Decoded::Text(Text::from(text))))
                } else {
                    Ok(Some(Decoded::Binary(&self.payload)))
                }
            }
            Step::NeedMore | Step::Continue => unreachable!("handled in the loop"),
        }
    }
}

/// Unmasks a whole text payload in place and checks it is UTF-8: an
/// all-ASCII payload (the common case) is known to be from the unmasking
/// pass alone; anything else goes through std's validator.
fn unmasked_text(payload: &mut [u8], key: [u8; 4]) -> Option<Text<'_>> {
    if unmask_is_ascii(payload, key) {
        Some(Text::ascii(payload))
    } else {
        core::str::from_utf8(payload).ok().map(Text::from)
    }
}

/// A whole masked, unfragmented text or binary frame at the start of a
/// buffer, within the limits.
struct WholeFrame {
    opcode: u8,
    key: [u8; 4],
    header_len: usize,
    len: usize,
}

/// Recognises the common frame in one look: FIN set, no reserved bits,
/// text or binary, masked, a 7- or 16-bit length, all of it in `buf`, and
/// within `max_frame_bytes`, `max_message_bytes` and `max_fragments`.
/// Anything else (including every error) is left to the decoder.
fn whole_data_frame(buf: &[u8], limits: &Limits) -> Option<WholeFrame> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    if !(b0 == 0x80 | opcode::TEXT || b0 == 0x80 | opcode::BINARY) || b1 & 0x80 == 0 {
        return None;
    }
    let (len, header_len) = match b1 & 0x7f {
        127 => return None,
        126 => {
            let len = usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
            // Not minimally encoded (§5.2): the decoder refuses it.
            if len < 126 {
                return None;
            }
            (len, 8)
        }
        short => (usize::from(short), 6),
    };
    if buf.len() < header_len || buf.len() - header_len < len {
        return None;
    }
    let fits = len as u64 <= limits.max_frame_bytes
        && len as u64 <= limits.max_message_bytes
        && limits.max_fragments >= 1;
    if !fits {
        return None;
    }
    let k = &buf[header_len - 4..header_len];
    Some(WholeFrame {
        opcode: b0 & 0x0f,
        key: [k[0], k[1], k[2], k[3]],
        header_len,
        len,
    })
}

/// Input accepted after the server's close frame before the connection is
/// dropped: a few messages' worth, then reading stops.
fn after_close_allowance(limits: &Limits) -> u64 {
    4 * limits.max_message_bytes + 64 * 1024
}

/// The server side of one WebSocket connection after the `101`.
#[derive(Debug)]
///
/// Kept small (see the size test): an idle connection holds no buffer and
/// no decoder; the decoder exists only while a frame or message is partly
/// received, and the closing state only once the connection closes.
pub struct WebSocket {
    out: Output,
    state: State,
    /// Frame and message reassembly, while a frame or message is partly
    /// received (a complete frame in one read needs none).
    dec: Option<Box<Decoder>>,
    closing: Option<Box<Closing>>,
    /// When the last complete frame arrived (liveness).
    last_frame: Stamp,
    /// Set while an idle ping is unanswered.
    ping_sent: Option<Stamp>,
    /// When the peer's credentials expire (closed `1008 token expired`).
    expires_at: Option<Stamp>,
}

/// A [`Sender`] over a connection's output and close state, borrowing only
/// those fields (the decoder may be borrowed at the same time).
macro_rules! sender {
    ($ws:expr, $limits:expr) => {
        Sender {
            out: &mut $ws.out,
            state: &mut $ws.state,
            closing: &mut $ws.closing,
            limits: $limits,
        }
    };
}

impl WebSocket {
    /// A connection that just sent its `101`; `out` may already hold it.
    pub fn new(now: Stamp, out: Vec<u8>) -> Self {
        WebSocket {
            out: Output {
                buf: out,
                pos: 0,
                sent: 0,
            },
            state: State::Open,
            dec: None,
            closing: None,
            last_frame: now,
            ping_sent: None,
            expires_at: None,
        }
    }

    /// Closes the connection with `1008 token expired` at `at`.
    pub fn set_expiry(&mut self, at: Stamp) {
        self.expires_at = Some(at);
    }

    /// Processes bytes from the peer, in order, calling `on_event` for each
    /// message and control frame. The input is unmasked in place.
    ///
    /// A protocol error fails the connection: replies already queued by
    /// earlier messages stay ahead of the close frame, and later input is
    /// ignored (§7.1.7).
    ///
    /// Decoding stops when the outbound queue passes the high-water mark
    /// (`max_outbound_bytes / 2`): the rest of `input` is held (at most what
    /// one call passed) and decoded by a later call, once
    /// [`WebSocket::wants_resume`] says the peer has read its replies. So a
    /// peer that pipelines many small requests with large replies is slowed
    /// down, not judged a slow consumer for replies it had no time to read.
    pub fn handle_input<F>(
        &mut self,
        now: Stamp,
        input: &mut [u8],
        limits: &Limits,
        mut on_event: F,
    ) where
        F: FnMut(Event<'_>, &mut Sender<'_>),
    {
        // The common read: one whole data frame, nothing held or half
        // decoded, room for the reply. The same checks as `decode`'s fast
        // path, without its loop.
        if self.state == State::Open
            && self.dec.is_none()
            && self.out.queued() <= limits.max_outbound_bytes / 2
        {
            if let Some(f) = whole_data_frame(input, limits) {
                if f.header_len + f.len == input.len() {
                    self.last_frame = now;
                    self.ping_sent = None;
                    let payload = &mut input[f.header_len..];
                    deliver_whole(&f, payload, &mut sender!(self, limits), &mut on_event);
                    self.arm_close_deadline(now, limits);
                    return;
                }
            }
        }
        let held = self.dec.as_mut().map(|d| core::mem::take(&mut d.held));
        if let Some(mut held) = held.filter(|h| !h.is_empty()) {
            let pos = self.decode(now, &mut held, limits, &mut on_event);
            if pos < held.len() && self.state != State::Closed {
                held.drain(..pos);
                held.extend_from_slice(input);
                if let Some(d) = self.dec.as_mut() {
                    d.held = held;
                }
                return;
            }
        }
        let pos = self.decode(now, input, limits, &mut on_event);
        if pos < input.len() && matches!(self.state, State::Open | State::CloseSent) {
            let d = self.dec.get_or_insert_with(|| Box::new(Decoder::new()));
            d.held.extend_from_slice(&input[pos..]);
        }
    }

    /// Decodes `input` until it ends, the connection fails or closes, or
    /// the outbound queue is over the high-water mark; returns the bytes
    /// used.
    fn decode<F>(
        &mut self,
        now: Stamp,
        input: &mut [u8],
        limits: &Limits,
        on_event: &mut F,
    ) -> usize
    where
        F: FnMut(Event<'_>, &mut Sender<'_>),
    {
        if self.state != State::Open {
            self.count_after_close(input.len(), limits);
        }
        if matches!(self.state, State::Failed | State::Closed) {
            return input.len();
        }
        // Most reads hold whole frames only: those are decoded by the fast
        // path below, or with a decoder on the stack (`fresh`); one is kept
        // only when a frame or message is left over.
        let (mut pos, mut fresh, stamp) = (0, None::<Decoder>, now);
        let high_water = limits.max_outbound_bytes / 2;
        while pos < input.len() && self.out.queued() <= high_water {
            let clean = self.state == State::Open
                && self.dec.as_ref().is_none_or(|d| d.is_clean())
                && fresh.as_ref().is_none_or(|d| d.is_clean());
            let more = match clean
                .then(|| whole_data_frame(&input[pos..], limits))
                .flatten()
            {
                // A whole unfragmented text or binary frame with no message
                // in progress: the same checks as the decoder's, without
                // its state machine.
                Some(f) => {
                    let start = pos + f.header_len;
                    pos = start + f.len;
                    self.last_frame = stamp;
                    self.ping_sent = None;
                    let payload = &mut input[start..pos];
                    deliver_whole(&f, payload, &mut sender!(self, limits), on_event);
                    true
                }
                None => self.decode_next(&mut fresh, input, &mut pos, stamp, limits, on_event),
            };
            if matches!(self.state, State::Failed | State::Closed) {
                pos = input.len();
                break;
            }
            if !more {
                break;
            }
        }
        if let Some(d) = fresh {
            if d.is_mid_message() || pos < input.len() {
                self.dec = Some(Box::new(d));
            }
        }
        self.arm_close_deadline(now, limits);
        pos
    }

    /// The next frame or message through the decoder (the connection's, or
    /// `fresh` on the stack); false when the input ends mid-frame or the
    /// connection failed.
    #[inline]
    fn decode_next<F>(
        &mut self,
        fresh: &mut Option<Decoder>,
        input: &mut [u8],
        pos: &mut usize,
        now: Stamp,
        limits: &Limits,
        on_event: &mut F,
    ) -> bool
    where
        F: FnMut(Event<'_>, &mut Sender<'_>),
    {
        let dec: &mut Decoder = match self.dec.as_deref_mut() {
            Some(d) => d,
            None => fresh.get_or_insert_with(Decoder::new),
        };
        match dec.next(input, pos, limits) {
            Ok(Some(decoded)) => {
                self.last_frame = now;
                self.ping_sent = None;
                deliver(decoded, &mut sender!(self, limits), on_event);
                true
            }
            Ok(None) => false,
            Err(e) => {
                sender!(self, limits).fail(e.close_code(), e.reason());
                *pos = input.len();
                false
            }
        }
    }

    /// After our close frame the peer may still have a little in flight
    /// before its own close; a peer that keeps streaming is not worth
    /// reading for the rest of close_timeout.
    fn count_after_close(&mut self, n: usize, limits: &Limits) {
        if let Some(c) = self.closing.as_mut() {
            c.after_close = c.after_close.saturating_add(n as u64);
            if c.after_close > after_close_allowance(limits) {
                self.state = State::Closed;
            }
        }
    }

    fn arm_close_deadline(&mut self, now: Stamp, limits: &Limits) {
        if self.state == State::Open {
            return;
        }
        if let Some(c) = self.closing.as_mut() {
            if c.deadline.is_none() {
                c.deadline = Some(now.after(limits.close_timeout));
            }
        }
    }

    /// Runs `f` with a [`Sender`] (to send outside of an event).
    pub fn with_sender<R>(
        &mut self,
        now: Stamp,
        limits: &Limits,
        f: impl FnOnce(&mut Sender<'_>) -> R,
    ) -> R {
        let mut tx = sender!(self, limits);
        let r = f(&mut tx);
        self.arm_close_deadline(now, limits);
        r
    }

    /// Starts the closing handshake from the server side.
    pub fn close(&mut self, now: Stamp, limits: &Limits, code: u16, reason: &'static str) {
        self.with_sender(now, limits, |tx| tx.close(code, reason));
    }

    /// The peer closed its side of TCP. Returns how the connection ended.
    pub fn handle_eof(&mut self) -> CloseInfo {
        if self.state == State::Open || self.closing.is_none() {
            // §7.1.5: a connection closed without a close frame is 1006.
            set_close(
                &mut self.closing,
                CloseInfo {
                    code: 1006,
                    by: Initiator::Client,
                    reason: "connection closed without a close frame",
                },
            );
        }
        self.state = State::Closed;
        self.closing.as_ref().expect("set above").info
    }

    /// The earliest moment [`WebSocket::handle_timeout`] has work to do.
    pub fn poll_timeout(&self, limits: &Limits) -> Stamp {
        match self.state {
            State::Open => {
                let idle = self
                    .ping_sent
                    .unwrap_or(self.last_frame)
                    .after(limits.idle_timeout);
                self.expires_at.map_or(idle, |e| e.min(idle))
            }
            _ => self
                .closing
                .as_ref()
                .and_then(|c| c.deadline)
                .unwrap_or(self.last_frame.after(limits.close_timeout)),
        }
    }

    /// Handles deadlines: sends the idle ping, or gives up on a silent or
    /// non-closing peer. Returns why the connection must be dropped now.
    pub fn handle_timeout(&mut self, now: Stamp, limits: &Limits) -> Option<Expired> {
        let stamp = now;
        if stamp < self.poll_timeout(limits) {
            return None;
        }
        if self.state == State::Open && self.expires_at.is_some_and(|e| stamp >= e) {
            self.close(now, limits, code::POLICY_VIOLATION, "token expired");
            return None;
        }
        match self.state {
            State::Open if self.ping_sent.is_none() => {
                write_frame(&mut self.out.buf, opcode::PING, b"");
                self.ping_sent = Some(stamp);
                None
            }
            State::Open => {
                // A peer that left its replies unread past the high-water
                // mark (so it was not read either) is a slow consumer; any
                // other silent peer is idle. Either way TCP is closed now.
                let info = if self.out.queued() > limits.max_outbound_bytes / 2 {
                    CloseInfo {
                        code: code::POLICY_VIOLATION,
                        by: Initiator::Server,
                        reason: "slow consumer",
                    }
                } else {
                    CloseInfo {
                        code: 1006,
                        by: Initiator::Server,
                        reason: "idle timeout",
                    }
                };
                set_close(&mut self.closing, info);
                self.state = State::Closed;
                Some(Expired::Idle)
            }
            _ => {
                self.state = State::Closed;
                Some(Expired::Close)
            }
        }
    }

    /// Bytes waiting to be written to the peer.
    pub fn output(&self) -> &[u8] {
        &self.out.buf[self.out.pos as usize..]
    }

    /// The data messages queued since the last call (a count for the
    /// caller's statistics; control frames are not counted).
    pub fn take_messages_sent(&mut self) -> u32 {
        core::mem::take(&mut self.out.sent)
    }

    /// Marks `n` bytes of [`WebSocket::output`] as written.
    pub fn consume_output(&mut self, n: usize) {
        let out = &mut self.out;
        let pos = (out.pos as usize + n).min(out.buf.len());
        if pos == out.buf.len() {
            out.buf.clear();
            out.pos = 0;
        } else if pos >= 64 * 1024 {
            out.buf.drain(..pos);
            out.pos = 0;
        } else {
            out.pos = pos as u32;
        }
    }

    /// Whether the caller should read more input: the connection is not
    /// over and its outbound queue is under the high-water mark
    /// (backpressure: a peer that does not read its replies is not read).
    pub fn wants_read(&self, limits: &Limits) -> bool {
        self.state != State::Closed
            && self.out.queued() <= limits.max_outbound_bytes / 2
            && self.dec.as_ref().is_none_or(|d| d.held.is_empty())
    }

    /// Whether input held back at the high-water mark can be decoded now:
    /// call [`WebSocket::handle_input`] (with no new input) when true.
    pub fn wants_resume(&self, limits: &Limits) -> bool {
        self.state != State::Closed
            && self.out.queued() <= limits.max_outbound_bytes / 2
            && self.dec.as_ref().is_some_and(|d| !d.held.is_empty())
    }

    /// Whether the TCP connection should be closed now: the close exchange
    /// is over (or the peer is gone) and everything is written.
    pub fn is_finished(&self) -> bool {
        self.state == State::Closed && self.out.queued() == 0
    }

    /// Whether the caller should shut the write side of TCP: the connection
    /// failed and the close frame is written (§7.1.7).
    pub fn wants_shutdown_write(&self) -> bool {
        self.state == State::Failed && self.out.queued() == 0
    }

    /// Whether the connection is open for messages.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// How the connection is closing or closed, once it is.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.closing.as_ref().map(|c| c.info)
    }

    /// Whether no message is partly received and nothing is queued: the
    /// buffers can be returned to a pool.
    pub fn is_idle(&self) -> bool {
        self.dec.as_ref().is_none_or(|d| !d.is_mid_message()) && self.out.queued() == 0
    }

    /// Takes the (empty) buffers for reuse elsewhere; see [`WebSocket::is_idle`].
    /// An output buffer of at most `keep_output` bytes of capacity stays:
    /// a connection that keeps talking would take one back at its next
    /// message, and the round trip through a pool costs more than a short
    /// message's whole decode (pass 0 to take it too).
    #[inline]
    pub fn take_buffers(&mut self, keep_output: usize, give: impl FnMut(Vec<u8>)) {
        // The common case, checked inline: a short message's connection
        // with nothing but its small output buffer.
        if self.dec.is_none() && self.out.buf.capacity() <= keep_output {
            return;
        }
        self.give_buffers(keep_output, give);
    }

    fn give_buffers(&mut self, keep_output: usize, mut give: impl FnMut(Vec<u8>)) {
        if self.out.queued() == 0 && self.out.buf.capacity() > keep_output {
            give(core::mem::take(&mut self.out.buf));
            self.out.pos = 0;
        }
        if self.dec.as_ref().is_some_and(|d| !d.is_mid_message()) {
            let mut dec = self.dec.take().expect("checked above");
            dec.clear_delivered();
            for buf in [
                core::mem::take(&mut dec.payload),
                core::mem::take(&mut dec.control),
            ] {
                if buf.capacity() > 0 {
                    give(buf);
                }
            }
        }
    }

    /// Gives the connection an empty output buffer when it has none.
    pub fn provide_output_buffer(&mut self, take: impl FnOnce() -> Option<Vec<u8>>) {
        if self.out.buf.capacity() == 0 {
            if let Some(buf) = take() {
                debug_assert!(buf.is_empty());
                self.out.buf = buf;
                self.out.pos = 0;
            }
        }
    }

    /// Bytes held for this connection (reassembly and output), for accounting.
    pub fn buffered_bytes(&self) -> usize {
        let dec = self.dec.as_ref().map_or(0, |d| {
            d.payload.capacity() + d.control.capacity() + d.held.capacity()
        });
        dec + self.out.buf.capacity()
    }
}

/// A whole unfragmented text or binary frame found by the fast path: the
/// payload unmasked (text checked for UTF-8 on the way) and handed out.
#[inline]
fn deliver_whole<F>(f: &WholeFrame, payload: &mut [u8], tx: &mut Sender<'_>, on_event: &mut F)
where
    F: FnMut(Event<'_>, &mut Sender<'_>),
{
    if f.opcode == opcode::TEXT {
        match unmasked_text(payload, f.key) {
            Some(text) => on_event(Event::Text(text), tx),
            None => {
                let e = ProtocolError::InvalidUtf8;
                tx.fail(e.close_code(), e.reason());
            }
        }
    } else {
        apply_mask(payload, f.key, 0);
        on_event(Event::Binary(payload), tx);
    }
}

/// What the decoder produced, handed out (messages only while open) or,
/// for control frames, answered.
#[inline]
fn deliver<F>(decoded: Decoded<'_>, tx: &mut Sender<'_>, on_event: &mut F)
where
    F: FnMut(Event<'_>, &mut Sender<'_>),
{
    match decoded {
        Decoded::Text(text) if *tx.state == State::Open => on_event(Event::Text(text), tx),
        Decoded::Binary(bytes) if *tx.state == State::Open => on_event(Event::Binary(bytes), tx),
        Decoded::Text(_) | Decoded::Binary(_) => {}
        Decoded::Control(op, payload) => {
            if let Err(e) = handle_control(op, payload, tx, on_event) {
                tx.fail(e.close_code(), e.reason());
            }
        }
    }
}

/// Answers a control frame (§5.5).
fn handle_control<F>(
    op: u8,
    payload: &[u8],
    tx: &mut Sender<'_>,
    on_event: &mut F,
) -> Result<(), ProtocolError>
where
    F: FnMut(Event<'_>, &mut Sender<'_>),
{
    match op {
        opcode::PING => {
            // §5.5.2: answer with a pong carrying the same payload, unless we
            // already sent a close (§5.5.1: nothing follows a close).
            if *tx.state == State::Open {
                write_frame(&mut tx.out.buf, opcode::PONG, payload);
                on_event(Event::Ping(payload), tx);
            }
        }
        opcode::PONG => {
            if *tx.state == State::Open {
                on_event(Event::Pong(payload), tx);
            }
        }
        _ => {
            let parsed = parse_close_payload(payload)?;
            let (code, reason) = parsed.map_or((None, ""), |(c, r)| (Some(c), r));
            match *tx.state {
                State::Open => {
                    // §5.5.1: reply with a close, echoing the code (1000 when
                    // the peer sent none; 1005 may not be sent).
                    let reply = code.unwrap_or(code::NORMAL);
                    write_close(&mut tx.out.buf, reply, "");
                    *tx.state = State::Closed;
                    set_close(
                        tx.closing,
                        CloseInfo {
                            code: code.unwrap_or(1005),
                            by: Initiator::Client,
                            reason: "",
                        },
                    );
                    on_event(Event::Close { code, reason }, tx);
                }
                State::CloseSent => *tx.state = State::Closed,
                State::Failed | State::Closed => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
