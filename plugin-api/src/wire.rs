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
