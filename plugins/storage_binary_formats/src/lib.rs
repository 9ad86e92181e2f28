//! `storage_binary_formats`: a compact binary encoding of stored records.
//!
//! A value is the 4-byte magic `DCB1` followed by the record in bincode's varint encoding
//! (byte strings as raw bytes, integers as varints). Decoding accepts both this and the
//! baseline's JSON (anything starting with `{`), so records written before the plugin was
//! enabled stay readable. Trailing bytes are an error in both formats.

use bincode::Options;
use dubchain_plugin_api::{
    abi_stable::std_types::RSlice, export_plugin, slots::RecordCodec, types::Record, PluginError,
};

/// The first bytes of every value this codec writes.
pub const MAGIC: &[u8; 4] = b"DCB1";

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// The codec. It has no state and no settings.
#[derive(Debug, Default)]
pub struct BinaryCodec;

impl BinaryCodec {
    pub fn encode_one(record: &Record) -> Result<Vec<u8>, PluginError> {
        let size = options()
            .serialized_size(record)
            .map_err(|e| PluginError::failed(e.to_string()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + size as usize);
        out.extend_from_slice(MAGIC);
        options()
            .serialize_into(&mut out, record)
            .map_err(|e| PluginError::failed(e.to_string()))?;
        Ok(out)
    }

    pub fn decode_one(value: &[u8]) -> Result<Record, PluginError> {
        if let Some(body) = value.strip_prefix(MAGIC) {
            options()
                .deserialize(body)
                .map_err(|e| PluginError::invalid_input(format!("corrupt binary record: {e}")))
        } else if value.first() == Some(&b'{') {
            serde_json::from_slice(value)
                .map_err(|e| PluginError::invalid_input(format!("corrupt JSON record: {e}")))
        } else {
            Err(PluginError::invalid_input(
                "neither a binary (DCB1) nor a JSON record",
            ))
        }
    }
}

impl RecordCodec for BinaryCodec {
    fn encode(&self, records: &[Record]) -> Result<Vec<Vec<u8>>, PluginError> {
        records.iter().map(BinaryCodec::encode_one).collect()
    }

    fn decode(
        &self, values: &[RSlice<'_, u8>],
    ) -> Result<Vec<Result<Record, PluginError>>, PluginError> {
        Ok(values
            .iter()
            .map(|v| BinaryCodec::decode_one(v.as_slice()))
            .collect())
    }
}

export_plugin! {
    name: "storage_binary_formats",
    init: dubchain_plugin_api::settings::none,
    record_codec: |_: &str| Ok(BinaryCodec),
}
