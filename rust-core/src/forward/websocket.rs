//! RFC 6455 framing on the backend hop, for hosts whose client side is message-level.
//!
//! IIS's WebSocket module parses the client's frames itself and hands a module fragments
//! (payload bytes with "UTF-8", "final" and "close" flags) through `IWebSocketContext`, so the
//! backend's upgraded byte stream has to be framed and unframed between the two. That is done
//! here, in the engine, so the host stays a translator: [`Decoder`] turns the backend's frames
//! into [`Event`]s (payload pieces are handed on as they arrive, so a large message never has
//! to fit in memory), and [`encode`] builds the masked frames a client sends (RFC 6455 §5.3:
//! the backend must reject unmasked client frames).

use bytes::{Buf, Bytes, BytesMut};

/// Continuation frame opcode.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

/// The close status meaning "no status code was present" (RFC 6455 §7.4.1); never sent.
pub const CLOSE_NO_STATUS: u16 = 1005;

/// What the backend said, frame by frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A piece of a data message: `text` for a text message, `fin` on its last piece.
    Data {
        /// The payload bytes (unmasked).
        payload: Bytes,
        /// The message is text (UTF-8), not binary.
        text: bool,
        /// This piece ends the message.
        fin: bool,
    },
    /// A ping: answer with a pong carrying the same payload.
    Ping(Bytes),
    /// An unsolicited or answering pong: nothing to do.
    Pong,
    /// A close frame: its status ([`CLOSE_NO_STATUS`] when none) and UTF-8 reason.
    Close {
        /// The status code.
        status: u16,
        /// The reason (may be empty).
        reason: Bytes,
    },
}

/// Why the backend's stream is not valid RFC 6455 framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid WebSocket framing from the backend: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// The data frame being read.
#[derive(Debug)]
struct Current {
    fin: bool,
    remaining: u64,
    mask: Option<[u8; 4]>,
    mask_pos: usize,
}

/// An incremental frame parser: push bytes with [`Decoder::buffer_mut`], take events with
/// [`Decoder::next_event`] until it returns `None`.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    current: Option<Current>,
    /// The kind of the data message in progress (`Some(text)`), between its first and last frame.
    message: Option<bool>,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// The buffer to read the backend's bytes into (appended to what is not parsed yet).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            if let Some(cur) = &mut self.current {
                if cur.remaining > 0 && self.buf.is_empty() {
                    return Ok(None);
                }
                let n = cur.remaining.min(self.buf.len() as u64) as usize;
                let mut piece = self.buf.split_to(n);
                if let Some(key) = cur.mask {
                    unmask(&mut piece, key, cur.mask_pos);
                    cur.mask_pos = (cur.mask_pos + n) % 4;
                }
                cur.remaining -= n as u64;
                let text = self.message.unwrap_or(false);
                let fin = cur.fin && cur.remaining == 0;
                if cur.remaining == 0 {
                    self.current = None;
                    if fin {
                        self.message = None;
                    }
                }
                // An empty piece that ends nothing carries nothing worth a host write.
                if n == 0 && !fin {
                    continue;
                }
                return Ok(Some(Event::Data {
                    payload: piece.freeze(),
                    text,
                    fin,
                }));
            }
            let Some(head) = parse_head(&self.buf)? else {
                return Ok(None);
            };
            if head.opcode >= OP_CLOSE {
                if !head.fin || head.len > 125 {
                    return Err(ProtocolError("a fragmented or oversized control frame"));
                }
                let total = head.header_len + head.len as usize;
                if self.buf.len() < total {
                    return Ok(None);
                }
                self.buf.advance(head.header_len);
                let mut payload = self.buf.split_to(head.len as usize);
                if let Some(key) = head.mask {
                    unmask(&mut payload, key, 0);
                }
                let payload = payload.freeze();
                return match head.opcode {
                    OP_PING => Ok(Some(Event::Ping(payload))),
                    OP_PONG => Ok(Some(Event::Pong)),
                    OP_CLOSE => close_event(payload).map(Some),
                    _ => Err(ProtocolError("an unknown control opcode")),
                };
            }
            match (head.opcode, self.message) {
                (OP_CONTINUATION, Some(_)) => {}
                (OP_CONTINUATION, None) => {
                    return Err(ProtocolError("a continuation frame outside a message"))
                }
                (OP_TEXT | OP_BINARY, None) => self.message = Some(head.opcode == OP_TEXT),
                (OP_TEXT | OP_BINARY, Some(_)) => {
                    return Err(ProtocolError("a new message before the last one ended"))
                }
                _ => return Err(ProtocolError("an unknown data opcode")),
            }
            self.buf.advance(head.header_len);
            self.current = Some(Current {
                fin: head.fin,
                remaining: head.len,
                mask: head.mask,
                mask_pos: 0,
            });
        }
    }
}

struct Head {
    fin: bool,
    opcode: u8,
    len: u64,
    mask: Option<[u8; 4]>,
    header_len: usize,
}

fn parse_head(b: &[u8]) -> Result<Option<Head>, ProtocolError> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x70 != 0 {
        return Err(ProtocolError(
            "reserved bits set (no extension was negotiated)",
        ));
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0F;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at) = match b[1] & 0x7F {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([b[2], b[3]])), 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[2..10]);
            (u64::from_be_bytes(n), 10)
        }
        n => (u64::from(n), 2),
    };
    if len >> 63 != 0 {
        return Err(ProtocolError("a payload length with the top bit set"));
    }
    let mask = if masked {
        if b.len() < at + 4 {
            return Ok(None);
        }
        let k = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        at += 4;
        Some(k)
    } else {
        None
    };
    Ok(Some(Head {
        fin,
        opcode,
        len,
        mask,
        header_len: at,
    }))
}

fn close_event(payload: Bytes) -> Result<Event, ProtocolError> {
    match payload.len() {
        0 => Ok(Event::Close {
            status: CLOSE_NO_STATUS,
            reason: Bytes::new(),
        }),
        1 => Err(ProtocolError("a close frame with a one-byte payload")),
        _ => Ok(Event::Close {
            status: u16::from_be_bytes([payload[0], payload[1]]),
            reason: payload.slice(2..),
        }),
    }
}

fn unmask(data: &mut [u8], key: [u8; 4], start: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[(start + i) % 4];
    }
}

/// Appends one masked frame (as a client sends it) to `out`.
pub fn encode(out: &mut BytesMut, opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) {
    out.reserve(payload.len() + 14);
    out.extend_from_slice(&[if fin { 0x80 } else { 0 } | opcode]);
    let len = payload.len();
    if len < 126 {
        out.extend_from_slice(&[0x80 | len as u8]);
    } else if len <= 0xFFFF {
        out.extend_from_slice(&[0x80 | 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[0x80 | 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0);
}

/// The payload of a close frame: nothing for [`CLOSE_NO_STATUS`] (or 0), else the status and
/// the reason, cut to fit a control frame's 125 bytes on a UTF-8 character boundary.
pub fn close_payload(status: u16, reason: &str) -> Vec<u8> {
    if status == 0 || status == CLOSE_NO_STATUS {
        return Vec::new();
    }
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut p = status.to_be_bytes().to_vec();
    p.extend_from_slice(&reason.as_bytes()[..cut]);
    p
}

/// Builds a client's frames for a sequence of host fragments, keeping track of whether a
/// message is in progress (its later fragments are continuation frames).
#[derive(Debug, Default)]
pub struct Encoder {
    in_message: bool,
}

impl Encoder {
    /// An encoder at the start of a stream.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends the frame for one data fragment of a text (`utf8`) or binary message.
    pub fn data(
        &mut self,
        out: &mut BytesMut,
        payload: &[u8],
        utf8: bool,
        fin: bool,
        mask: [u8; 4],
    ) {
        let opcode = match (self.in_message, utf8) {
            (true, _) => OP_CONTINUATION,
            (false, true) => OP_TEXT,
            (false, false) => OP_BINARY,
        };
        self.in_message = !fin;
        encode(out, opcode, fin, payload, mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode(&mut b, opcode, fin, payload, [0; 4]);
        // A server's frame: the same, without the mask bit and key.
        let mut v = b.to_vec();
        let key_at = match v[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        v[1] &= 0x7F;
        v.drain(key_at..key_at + 4);
        v
    }

    fn all(d: &mut Decoder) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = d.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    #[test]
    fn masked_frames_decode_to_what_was_encoded() {
        let mut enc = Encoder::new();
        let mut b = BytesMut::new();
        let big = vec![7u8; 70_000];
        enc.data(&mut b, b"hel", true, false, [1, 2, 3, 4]);
        enc.data(&mut b, b"lo", true, true, [9, 8, 7, 6]);
        enc.data(&mut b, &big, false, true, [0xAA, 0x55, 0x01, 0xFE]);
        encode(&mut b, OP_CLOSE, true, &close_payload(1000, "bye"), [5; 4]);
        assert_eq!(b[0], OP_TEXT); // no FIN on the first fragment
        assert_eq!(b[2 + 4 + 3], OP_CONTINUATION | 0x80);
        let mut d = Decoder::new();
        d.buffer_mut().extend_from_slice(&b);
        let ev = all(&mut d);
        let data = |p: &[u8], text, fin| Event::Data {
            payload: Bytes::copy_from_slice(p),
            text,
            fin,
        };
        assert_eq!(
            ev,
            vec![
                data(b"hel", true, false),
                data(b"lo", true, true),
                data(&big, false, true),
                Event::Close {
                    status: 1000,
                    reason: Bytes::from_static(b"bye")
                },
            ]
        );
    }

    #[test]
    fn payload_pieces_come_as_bytes_arrive() {
        let frame = server_frame(OP_BINARY, true, &[3u8; 1000]);
        let mut d = Decoder::new();
        let mut got = Vec::new();
        let mut fins = 0;
        for piece in frame.chunks(97) {
            d.buffer_mut().extend_from_slice(piece);
            for e in all(&mut d) {
                match e {
                    Event::Data { payload, text, fin } => {
                        assert!(!text);
                        got.extend_from_slice(&payload);
                        fins += usize::from(fin);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(got, vec![3u8; 1000]);
        assert_eq!(fins, 1);
    }

    #[test]
    fn control_frames_between_fragments() {
        let mut v = server_frame(OP_TEXT, false, b"a");
        v.extend(server_frame(OP_PING, true, b"p"));
        v.extend(server_frame(OP_CONTINUATION, true, b""));
        v.extend(server_frame(OP_PONG, true, b""));
        v.extend(server_frame(OP_CLOSE, true, b""));
        let mut d = Decoder::new();
        d.buffer_mut().extend_from_slice(&v);
        assert_eq!(
            all(&mut d),
            vec![
                Event::Data {
                    payload: Bytes::from_static(b"a"),
                    text: true,
                    fin: false
                },
                Event::Ping(Bytes::from_static(b"p")),
                Event::Data {
                    payload: Bytes::new(),
                    text: true,
                    fin: true
                },
                Event::Pong,
                Event::Close {
                    status: CLOSE_NO_STATUS,
                    reason: Bytes::new()
                },
            ]
        );
    }

    #[test]
    fn protocol_errors() {
        let check = |bytes: &[u8]| {
            let mut d = Decoder::new();
            d.buffer_mut().extend_from_slice(bytes);
            assert!(d.next_event().is_err(), "{bytes:?}");
        };
        check(&server_frame(OP_CONTINUATION, true, b"x"));
        check(&[0xC2, 0x00]); // RSV1
        check(&[0x09, 0x00]); // fragmented ping
        check(&[0x83, 0x00]); // unknown data opcode
        check(&[0x88, 0x01, 0x03]); // one-byte close
        let mut two = server_frame(OP_TEXT, false, b"a");
        two.extend(server_frame(OP_BINARY, true, b"b"));
        let mut d = Decoder::new();
        d.buffer_mut().extend_from_slice(&two);
        assert!(d.next_event().unwrap().is_some());
        assert!(d.next_event().is_err());
    }

    #[test]
    fn close_reason_fits_a_control_frame() {
        let long = "é".repeat(100);
        let p = close_payload(1001, &long);
        assert!(p.len() <= 125);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
        assert!(close_payload(CLOSE_NO_STATUS, "x").is_empty());
    }
}
