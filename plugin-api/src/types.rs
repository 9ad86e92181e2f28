//! Data that crosses the boundary: FFI-safe, and serde-serialisable so that the stored
//! formats (the baseline's JSON and whatever a codec plugin writes) are defined by one set of
//! types.
//!
//! Byte strings serialise as lowercase hex in human-readable formats (JSON) and as raw bytes
//! in binary ones.

use std::fmt;

use abi_stable::{
    std_types::{RSlice, RString, RVec},
    StableAbi,
};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// One signature to verify.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct SigItem<'a> {
    /// The compressed ed25519 public key.
    pub public_key: [u8; 32],
    /// `R || s`.
    pub signature: [u8; 64],
    /// The signed message.
    pub message: RSlice<'a, u8>,
}

/// One BLS vote to verify (`consensus.vote_verify`): min-pk, proof-of-possession ciphersuite.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct VoteItem<'a> {
    /// The validator's compressed G1 public key (48 bytes), from the validator set.
    pub public_key: [u8; 48],
    /// The compressed G2 signature (96 bytes), as received.
    pub signature: [u8; 96],
    /// The signed message.
    pub message: RSlice<'a, u8>,
}

impl<'a> SigItem<'a> {
    /// An item from its parts.
    pub fn new(public_key: [u8; 32], signature: [u8; 64], message: RSlice<'a, u8>) -> Self {
        SigItem {
            public_key,
            signature,
            message,
        }
    }
}

impl<'a> VoteItem<'a> {
    /// An item from its parts.
    pub fn new(public_key: [u8; 48], signature: [u8; 96], message: RSlice<'a, u8>) -> Self {
        VoteItem {
            public_key,
            signature,
            message,
        }
    }
}

macro_rules! byte_array {
    ($(#[$doc:meta])* $name:ident, $len:literal) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(StableAbi, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex_encode(&self.0))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name([0; $len])
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&hex_encode(&self.0))
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes = deserialize_bytes(d)?;
                let array: [u8; $len] = bytes.as_slice().try_into().map_err(|_| {
                    de::Error::invalid_length(bytes.len(), &concat!(stringify!($len), " bytes"))
                })?;
                Ok($name(array))
            }
        }
    };
}

byte_array!(
    /// A 32-byte value: a hash, an account (its public key), a root.
    Bytes32,
    32
);
byte_array!(
    /// A 64-byte ed25519 signature.
    Bytes64,
    64
);

/// A variable-length byte string that serialises as hex in JSON.
#[repr(transparent)]
#[derive(StableAbi, Clone, Default, PartialEq, Eq, Hash)]
pub struct Blob(pub RVec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_encode(&self.0))
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex_encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_bytes(d).map(|v| Blob(RVec::from(v)))
    }
}

/// What a transaction does.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    /// Moves `amount` from `from` to `to`.
    Transfer,
    /// Deploys the wasm module in `payload`.
    Deploy,
    /// Calls the contract at `to` with `payload` as input.
    Call,
}

/// A signed transaction.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// Sender: the ed25519 public key that signed.
    pub from: Bytes32,
    /// Recipient account or contract.
    pub to: Bytes32,
    /// Amount moved.
    pub amount: u64,
    /// Fee paid to the proposer.
    pub fee: u64,
    /// The sender's nonce.
    pub nonce: u64,
    /// Gas limit for contract execution.
    pub gas_limit: u64,
    /// What the transaction does.
    pub kind: TxKind,
    /// Contract code or call input.
    pub payload: Blob,
    /// The accounts the transaction declares it touches.
    pub access_list: RVec<Bytes32>,
    /// ed25519 signature over the transaction's signing bytes.
    pub signature: Bytes64,
}

/// A block's header.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockHeader {
    /// Hash of the parent block.
    pub parent: Bytes32,
    /// Height, genesis being 0.
    pub height: u64,
    /// The validator that proposed the block.
    pub proposer: Bytes32,
    /// Merkle root of the transactions.
    pub tx_root: Bytes32,
    /// Root of the state after the block.
    pub state_root: Bytes32,
    /// Proposal time, milliseconds since the epoch.
    pub timestamp_ms: u64,
}

/// The outcome of one transaction.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Whether the transaction's effects were applied.
    pub success: bool,
    /// Gas charged.
    pub gas_used: u64,
    /// Why it failed; empty on success.
    pub error: RString,
}

/// A block with its transactions and receipts.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// Transactions, in execution order.
    pub transactions: RVec<Transaction>,
    /// One receipt per transaction.
    pub receipts: RVec<Receipt>,
}

/// Anything the node stores through `storage.record_codec`.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// A transaction on its own (mempool, index).
    Transaction(Transaction),
    /// A block.
    Block(Block),
}

/// Lowercase hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Bytes of a hex string (either case), or `None` if it is not hex of even length.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

fn deserialize_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a hex string or bytes")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            hex_decode(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    if d.is_human_readable() {
        d.deserialize_str(V)
    } else {
        d.deserialize_byte_buf(V)
    }
}
