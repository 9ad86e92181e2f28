//! `memory_allocation_reduction`: fewer allocations decoding gossiped transactions, for
//! `mem.tx_decode` (the catalogue row of that name).
//!
//! The baseline decodes each payload with serde_json into `Transaction`, whose byte fields
//! go through an owned `Vec` each: the sender, recipient and signature hex strings, every
//! access-list entry, the list itself and the payload (grown as it is decoded).
//!
//! Here the same JSON grammar (serde_json, the same derive, field names, order and
//! `deny_unknown_fields`, so every verdict is the baseline's) decodes into the same fields
//! with other field decoders:
//!
//! * fixed-size fields (`from`, `to`, every access-list entry, `signature`): hex straight
//!   into the array, no intermediate buffer;
//! * the payload: one allocation of exactly its decoded size (none when empty);
//! * the access list: one allocation for up to four entries (the first push's growth).
//!
//! What stays is what `Transaction` owns: its access list and payload are `RVec`s the host
//! keeps, so each needs an allocation of its own. A per-batch arena would need a borrowed
//! transaction type in the slot's ABI, which it does not have.

use std::fmt;

use abi_stable::std_types::{RSlice, RVec};
use dubchain_plugin_api::{
    export_plugin,
    slots::TxDecode,
    types::{Blob, Bytes32, Bytes64, Transaction, TxKind},
    PluginError,
};
use serde::{de, Deserialize, Deserializer};

/// The wire form of a transaction: `Transaction`'s fields, in its order, under the same
/// derive, with allocation-free decoders for the byte fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    #[serde(deserialize_with = "bytes32")]
    from: Bytes32,
    #[serde(deserialize_with = "bytes32")]
    to: Bytes32,
    amount: u64,
    fee: u64,
    nonce: u64,
    gas_limit: u64,
    kind: TxKind,
    #[serde(deserialize_with = "blob")]
    payload: Blob,
    #[serde(deserialize_with = "access_list")]
    access_list: RVec<Bytes32>,
    #[serde(deserialize_with = "bytes64")]
    signature: Bytes64,
}

impl From<Wire> for Transaction {
    fn from(w: Wire) -> Transaction {
        Transaction {
            from: w.from,
            to: w.to,
            amount: w.amount,
            fee: w.fee,
            nonce: w.nonce,
            gas_limit: w.gas_limit,
            kind: w.kind,
            payload: w.payload,
            access_list: w.access_list,
            signature: w.signature,
        }
    }
}

/// Each byte's value as a hex digit of either case, or `BAD`. A digit's value is at most
/// 0x0f, so a high bit set in any looked-up value means a byte was not a digit.
const BAD: u8 = 0xff;
const NIBBLES: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Hex of either case into `out`, which it must fill exactly.
fn hex_into(text: &[u8], out: &mut [u8]) -> bool {
    if text.len() != 2 * out.len() {
        return false;
    }
    let mut bad = 0u8;
    for (p, o) in text.chunks_exact(2).zip(out.iter_mut()) {
        let (h, l) = (NIBBLES[usize::from(p[0])], NIBBLES[usize::from(p[1])]);
        bad |= h | l;
        *o = h << 4 | l;
    }
    bad & 0xf0 == 0
}

/// A hex string of exactly `N` bytes, decoded in place.
struct Array<const N: usize>;

impl<'de, const N: usize> de::Visitor<'de> for Array<N> {
    type Value = [u8; N];
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a hex string of {N} bytes")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<[u8; N], E> {
        let mut out = [0u8; N];
        if hex_into(v.as_bytes(), &mut out) {
            Ok(out)
        } else {
            Err(E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
}

fn bytes32<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes32, D::Error> {
    d.deserialize_str(Array::<32>).map(Bytes32)
}

fn bytes64<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes64, D::Error> {
    d.deserialize_str(Array::<64>).map(Bytes64)
}

/// One access-list entry, as a sequence element.
struct Entry(Bytes32);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        bytes32(d).map(Entry)
    }
}

/// A hex string of any even length, into one allocation of its decoded size.
struct Payload;

impl<'de> de::Visitor<'de> for Payload {
    type Value = Blob;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a hex string or bytes")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Blob, E> {
        let text = v.as_bytes();
        // `hex_into` needs the exact size, so an odd length is refused before allocating.
        if !text.len().is_multiple_of(2) {
            return Err(E::invalid_value(de::Unexpected::Str(v), &self));
        }
        let mut out = vec![0u8; text.len() / 2];
        if !hex_into(text, &mut out) {
            return Err(E::invalid_value(de::Unexpected::Str(v), &self));
        }
        Ok(Blob(RVec::from(out)))
    }
}

fn blob<'de, D: Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
    d.deserialize_str(Payload)
}

/// A sequence of entries, into one vector.
struct List;

impl<'de> de::Visitor<'de> for List {
    type Value = RVec<Bytes32>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RVec<Bytes32>, A::Error> {
        // As serde's own `Vec` does: a size hint is trusted only up to a bound, so that a
        // length field cannot make it allocate without limit.
        let hint = seq.size_hint().unwrap_or(0).min(4096);
        let mut out = Vec::with_capacity(hint);
        while let Some(Entry(e)) = seq.next_element()? {
            out.push(e);
        }
        Ok(RVec::from(out))
    }
}

fn access_list<'de, D: Deserializer<'de>>(d: D) -> Result<RVec<Bytes32>, D::Error> {
    d.deserialize_seq(List)
}

/// The plugin (no state).
#[derive(Debug, Default)]
pub struct Decoder;

/// `payload` decoded, or why not.
pub fn decode_one(payload: &[u8]) -> Result<Transaction, String> {
    serde_json::from_slice::<Wire>(payload)
        .map(Transaction::from)
        .map_err(|e| e.to_string())
}

impl TxDecode for Decoder {
    fn decode(
        &self, payloads: &[RSlice<'_, u8>],
    ) -> Result<Vec<Result<Transaction, String>>, PluginError> {
        Ok(payloads.iter().map(|p| decode_one(p)).collect())
    }
}

export_plugin! {
    name: "memory_allocation_reduction",
    init: dubchain_plugin_api::settings::none,
    tx_decode: |_: &str| Ok(Decoder),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_fills_exactly_or_refuses() {
        let mut out = [0u8; 2];
        assert!(hex_into(b"aBcD", &mut out) && out == [0xab, 0xcd]);
        assert!(!hex_into(b"abc", &mut out));
        assert!(!hex_into(b"abcdef", &mut out));
        assert!(!hex_into(b"abzz", &mut out));
        assert!(!hex_into("éé".as_bytes(), &mut out));
    }
}
