//! The host's own implementation of every slot: honest, simple, always available.
//!
//! These are what a competent engineer writes first, and what every plugin is measured and
//! differentially tested against. A slot falls back to them whenever its plugin is disabled,
//! missing, failing or panicking.

use dubchain_plugin_api::types::{Record, SigItem};
use ed25519_dalek::{Signature, VerifyingKey};

/// `crypto.sig_verify`: each signature in turn, with `verify_strict`.
pub fn sig_verify(items: &[SigItem<'_>]) -> Vec<bool> {
    items.iter().map(verify_one_strict).collect()
}

/// The verdict of one item, as `crypto.sig_verify` defines it.
pub fn verify_one_strict(item: &SigItem<'_>) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&item.public_key) else {
        return false;
    };
    let signature = Signature::from_bytes(&item.signature);
    key.verify_strict(item.message.as_slice(), &signature)
        .is_ok()
}

/// `storage.record_codec`: one serde_json document per record.
pub fn encode_records(records: &[Record]) -> Vec<Vec<u8>> {
    records
        .iter()
        .map(|r| serde_json::to_vec(r).expect("records contain no maps with non-string keys"))
        .collect()
}

/// Decodes what [`encode_records`] wrote.
pub fn decode_records(values: &[&[u8]]) -> Vec<Result<Record, String>> {
    values
        .iter()
        .map(|v| serde_json::from_slice(v).map_err(|e| format!("not a JSON record: {e}")))
        .collect()
}
