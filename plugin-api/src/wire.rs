//! What peers exchange, and its bytes on the wire: a frame is a 4-byte big-endian length
//! and a payload; a payload is a tag byte (transaction, block, vote) and the message in
//! JSON. Defined here so that a plugin that builds frames (`net.broadcast`) builds exactly
//! the host's.

use abi_stable::StableAbi;
use serde::{Deserialize, Serialize};

use crate::types::{Blob, Block, Bytes32, Transaction};

/// Largest frame payload accepted: anything bigger is a broken or hostile peer.
pub const MAX_FRAME: usize = 64 << 20;

/// A message between peers.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A transaction, gossiped.
    Tx(Transaction),
    /// A proposed block.
    Block(Block),
    /// A validator's vote for a block.
    Vote {
        /// The block's height.
        height: u64,
        /// The block's hash.
        block: Bytes32,
        /// The voter's index in the validator set.
        validator: u32,
        /// The compressed BLS signature (96 bytes when well formed).
        signature: Blob,
    },
}

/// The tag of a transaction payload.
pub const TAG_TX: u8 = 0;
/// The tag of a block payload.
pub const TAG_BLOCK: u8 = 1;
/// The tag of a vote payload.
pub const TAG_VOTE: u8 = 2;

/// A vote as it travels.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteWire {
    /// See [`Message::Vote`].
    pub height: u64,
    /// See [`Message::Vote`].
    pub block: Bytes32,
    /// See [`Message::Vote`].
    pub validator: u32,
    /// See [`Message::Vote`].
    pub signature: Blob,
}

/// The payload of `msg`: its tag and its JSON.
pub fn payload(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    write_payload(msg, &mut out);
    out
}

/// Appends the payload of `msg` to `out`.
pub fn write_payload(msg: &Message, out: &mut Vec<u8>) {
    let written = match msg {
        Message::Tx(tx) => {
            out.push(TAG_TX);
            serde_json::to_writer(&mut *out, tx)
        }
        Message::Block(b) => {
            out.push(TAG_BLOCK);
            serde_json::to_writer(&mut *out, b)
        }
        Message::Vote {
            height,
            block,
            validator,
            signature,
        } => {
            out.push(TAG_VOTE);
            serde_json::to_writer(
                &mut *out,
                &VoteWire {
                    height: *height,
                    block: *block,
                    validator: *validator,
                    signature: signature.clone(),
                },
            )
        }
    };
    written.expect("messages serialise");
}

/// The frame of `msg`: the payload's length (4 bytes, big-endian), then the payload.
pub fn frame(msg: &Message) -> Vec<u8> {
    let mut out = vec![0; 4];
    write_payload(msg, &mut out);
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Reads frames from a peer's `stream` ([`read_frame`]) and hands each payload to
/// `deliver` until the peer closes between frames or `deliver` answers `false` (the
/// receiver is gone): `None` then. On a fault (an oversized or garbage length, a connection
/// closed inside a frame, a socket error) the stream is shut both ways and the fault
/// returned, for the caller's one line: the peer is dropped.
pub fn read_frames(
    stream: &mut std::net::TcpStream, mut deliver: impl FnMut(Vec<u8>) -> bool,
) -> Option<std::io::Error> {
    loop {
        match read_frame(stream) {
            Ok(Some(payload)) => {
                if !deliver(payload) {
                    return None;
                }
            }
            Ok(None) => return None,
            Err(fault) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return Some(fault);
            }
        }
    }
}

/// The next frame's payload from `r`, as the host's readers cut a peer's stream: `Ok(None)`
/// when the peer closed the connection between frames (a clean end); an error of kind
/// `InvalidData` for a frame announced over [`MAX_FRAME`] (garbage on the wire reads as
/// such a length), `UnexpectedEof` for a connection closed inside a frame, and the socket's
/// own error otherwise, each message saying which, for the one line a dropped peer gets.
/// At most 1 MiB is set aside before a payload's bytes arrive, so a length prefix alone
/// cannot make the reader allocate [`MAX_FRAME`].
pub fn read_frame(r: &mut impl std::io::Read) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::{Error, ErrorKind, Read};
    let mut len = [0u8; 4];
    let first = loop {
        match r.read(&mut len) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => {
                break other
                    .map_err(|e| Error::new(e.kind(), format!("failed its connection ({e})")))?
            }
        }
    };
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[first..]).map_err(|e| {
        Error::new(
            e.kind(),
            format!("closed the connection inside a frame's length ({e})"),
        )
    })?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("announced a frame of {n} bytes, over the {MAX_FRAME}-byte limit (garbage, or another protocol)"),
        ));
    }
    let mut payload = Vec::with_capacity(n.min(1 << 20));
    r.by_ref()
        .take(n as u64)
        .read_to_end(&mut payload)
        .map_err(|e| {
            Error::new(
                e.kind(),
                format!("failed its connection inside a frame ({e})"),
            )
        })?;
    if payload.len() < n {
        return Err(Error::new(
            ErrorKind::UnexpectedEof,
            format!(
                "closed the connection {} bytes into a frame of {n}",
                payload.len()
            ),
        ));
    }
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::*;

    /// Every way a stream can end: between frames (no fault), inside a length or a
    /// payload, or with a length over the limit (garbage reads as one).
    #[test]
    fn a_stream_is_cut_into_frames_and_every_fault_is_named() {
        let frame = |p: &[u8]| [&(p.len() as u32).to_be_bytes()[..], p].concat();
        let mut stream: &[u8] = &[frame(b""), frame(b"hello"), frame(&[9; 70_000])].concat();
        assert_eq!(read_frame(&mut stream).unwrap(), Some(Vec::new()));
        assert_eq!(read_frame(&mut stream).unwrap(), Some(b"hello".to_vec()));
        assert_eq!(read_frame(&mut stream).unwrap(), Some(vec![9; 70_000]));
        assert_eq!(read_frame(&mut stream).unwrap(), None);

        let fault = |bytes: &[u8]| read_frame(&mut &bytes[..]).unwrap_err();
        let e = fault(&[0, 0]);
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("inside a frame's length"), "{e}");
        let e = fault(&[&100u32.to_be_bytes()[..], &[1; 10]].concat());
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        assert!(
            e.to_string().contains("10 bytes into a frame of 100"),
            "{e}"
        );
        let e = fault(b"GET / HTTP/1.1\r\n");
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert!(e.to_string().contains("over the"), "{e}");
        let e = fault(&((MAX_FRAME + 1) as u32).to_be_bytes());
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        // The largest frame allowed is not a fault (here it is cut short, having no bytes).
        let e = fault(&(MAX_FRAME as u32).to_be_bytes());
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
    }
}
