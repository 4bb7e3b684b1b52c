//! Raw clients written by the test: MQTT packets over any stream, and a
//! WebSocket client that writes its frames by hand (so a test decides how
//! packets are split across frames).

use bytes::BytesMut;
use herald_codec::{DecodeOptions, Packet, Protocol, decode};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const WAIT: Duration = Duration::from_secs(10);

/// A 3.1.1 CONNECT with this client id, clean session, keep alive 60.
pub fn connect(client_id: &str) -> Vec<u8> {
    encode(&Packet::Connect(Box::new(herald_codec::Connect {
        protocol: Protocol::V3_1_1,
        clean_start: true,
        keep_alive: 60,
        properties: Default::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    })))
}

pub fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.encode(Protocol::V3_1_1, &mut out).unwrap();
    out.to_vec()
}

/// Decodes the next 3.1.1 packet from `buf`, if complete.
pub fn next(buf: &mut BytesMut) -> Option<Packet> {
    let opts = DecodeOptions {
        protocol: Protocol::V3_1_1,
        ..DecodeOptions::default()
    };
    decode(buf, &opts).expect("broker sends valid packets")
}

/// Reads until a packet arrives; `None` when the broker closed.
pub async fn recv<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        if let Some(p) = next(buf) {
            return Some(p);
        }
        let n = tokio::time::timeout(WAIT, stream.read_buf(buf))
            .await
            .expect("broker answers within the wait")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
    }
}

/// Whether the broker closes `stream` (EOF or reset) without sending a
/// packet.
pub async fn closed_without_packet<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = BytesMut::new();
    recv(stream, &mut buf).await.is_none() && buf.is_empty()
}

/// WebSocket opcodes.
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A client-side WebSocket over `S`, frames written and read by hand.
pub struct Ws<S> {
    pub stream: S,
    /// Bytes read and not yet parsed as frames.
    pub buf: BytesMut,
    /// Payload of binary messages received and not yet decoded as MQTT.
    pub mqtt: BytesMut,
}

/// Sends an HTTP request and returns the response head (up to the blank
/// line) and whatever came after it.
pub async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &str,
) -> (String, BytesMut) {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = BytesMut::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf.split_to(end + 4).to_vec()).unwrap();
            return (head, buf);
        }
        let n = tokio::time::timeout(WAIT, stream.read_buf(&mut buf))
            .await
            .expect("answer within the wait")
            .unwrap();
        assert!(n > 0, "closed before an HTTP answer: {buf:?}");
    }
}

/// An upgrade request for `path` offering `protocols` (none if empty).
pub fn upgrade_request(path: &str, protocols: &str, extra: &str) -> String {
    let proto = if protocols.is_empty() {
        String::new()
    } else {
        format!("Sec-WebSocket-Protocol: {protocols}\r\n")
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{proto}{extra}\r\n"
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> Ws<S> {
    /// Upgrades with subprotocol `mqtt`; panics unless answered 101.
    pub async fn open(mut stream: S, path: &str, extra: &str) -> Ws<S> {
        let (head, rest) = http(&mut stream, &upgrade_request(path, "mqtt", extra)).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{head}");
        Ws {
            stream,
            buf: rest,
            mqtt: BytesMut::new(),
        }
    }

    /// Writes one masked frame.
    pub async fn frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&out).await.unwrap();
    }

    /// Reads one frame: opcode and payload; `None` when the broker closed.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((opcode, payload, used)) = parse_frame(&self.buf) {
                let _ = self.buf.split_to(used);
                return Some((opcode, payload));
            }
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("frame within the wait")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// The next MQTT packet from binary frames; `None` when closed.
    pub async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = next(&mut self.mqtt) {
                return Some(p);
            }
            match self.read_frame().await? {
                (BINARY | CONTINUATION, payload) => self.mqtt.extend_from_slice(&payload),
                (CLOSE, _) => return None,
                (other, _) => panic!("unexpected frame opcode {other}"),
            }
        }
    }
}

/// Parses an unmasked server frame at the start of `buf`.
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "server frames are not masked");
    let (len, start) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(start..start + len)?.to_vec();
    Some((b0 & 0x0F, payload, start + len))
}
