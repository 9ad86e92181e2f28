//! The one definition of a valid ed25519 signature on DubChain: `verify_strict` (the key
//! must decode and must not be of small order, the signature must be canonical, and the
//! cofactorless equation must hold). The host's baselines and every plugin that verifies
//! signatures call these, so "strict" cannot drift between copies.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::{
    chain::signing_bytes,
    types::{SigItem, Transaction},
};

/// Whether `signature` by `public_key` over `message` is valid, strictly.
pub fn verify_strict(public_key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(signature))
        .is_ok()
}

/// The verdict of one `crypto.sig_verify` item.
pub fn verify_item(item: &SigItem<'_>) -> bool {
    verify_strict(&item.public_key, item.message.as_slice(), &item.signature)
}

/// Whether a transaction's signature (by its sender, over its signing bytes) is valid.
pub fn verify_tx(tx: &Transaction) -> bool {
    verify_strict(&tx.from.0, &signing_bytes(tx), &tx.signature.0)
}

/// The `crypto.sig_verify` items of `txs` (each by its sender), over `messages`: their
/// signing bytes, in the same order ([`signing_bytes`]).
pub fn tx_items<'m>(txs: &[&Transaction], messages: &'m [Vec<u8>]) -> Vec<SigItem<'m>> {
    txs.iter()
        .zip(messages)
        .map(|(tx, m)| SigItem::new(tx.from.0, tx.signature.0, m.as_slice().into()))
        .collect()
}

/// [`verify_tx`] with the sender's key decoded already (`None`: it does not decode), for a
/// plugin that decodes each sender's key once per batch.
pub fn verify_tx_with(key: Option<&VerifyingKey>, tx: &Transaction) -> bool {
    key.is_some_and(|key| {
        key.verify_strict(&signing_bytes(tx), &Signature::from_bytes(&tx.signature.0))
            .is_ok()
    })
}
