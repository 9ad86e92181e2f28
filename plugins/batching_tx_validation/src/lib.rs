//! `batching_tx_validation`: a batch of transactions (a mempool admission) validated as a
//! batch, on one thread (`exec.tx_validation`).
//!
//! The baseline validates each transaction fully before the next: decompress the sender's
//! key, hash the signing bytes, verify the signature strictly, then check the rules. Here
//! the batch is validated in passes: the stateless rules over the whole batch first (they
//! decide nothing alone: a bad signature is reported before a broken rule, as the baseline
//! does), then each distinct sender key is decompressed and checked once for the batch
//! (senders repeat: accounts send many transactions), then the signatures.
//!
//! # Why not one batch signature equation
//!
//! The catalogue's technique, one ed25519 batch verification with a per-item fallback,
//! cannot give the baseline's strict verdicts: the random linear combination of the
//! cofactorless equations cancels a small-order component in `R` with probability up to
//! 1/2, so a batch can pass over a signature `verify_strict` refuses, and nothing then
//! sends it to the per-item fallback. Making it exact needs a torsion check of every `R`,
//! which costs about a verification (measured in `docs/benchmarks.md`: batching then runs
//! slower than not batching). A validation plugin whose verdicts differ from the baseline's
//! splits the chain, so this plugin verifies each signature strictly and takes its gain
//! where it is exact: keys and rules.

use std::collections::HashMap;

use dubchain_plugin_api::{
    exec::check_stateless,
    export_plugin,
    sig::verify_tx_with,
    slots::{TxCheck, TxValidation},
    types::Transaction,
    PluginError,
};
use ed25519_dalek::VerifyingKey;

/// The plugin: stateless between calls.
pub struct BatchValidator;

impl TxValidation for BatchValidator {
    fn validate(&self, txs: &[Transaction]) -> Result<Vec<TxCheck>, PluginError> {
        // Pass 1: the rules, over the batch.
        let rules: Vec<Result<(), _>> = txs.iter().map(check_stateless).collect();
        // Pass 2: each distinct sender key, once.
        let mut keys: HashMap<[u8; 32], Option<VerifyingKey>> = HashMap::new();
        for tx in txs {
            keys.entry(tx.from.0)
                .or_insert_with(|| VerifyingKey::from_bytes(&tx.from.0).ok());
        }
        // Pass 3: signatures (strict), then the verdict in the baseline's order.
        Ok(txs
            .iter()
            .zip(rules)
            .map(|(tx, rule)| {
                let ok = verify_tx_with(keys[&tx.from.0].as_ref(), tx);
                match (ok, rule) {
                    (false, _) => TxCheck::BadSignature,
                    (true, Err(f)) => TxCheck::Invalid(f),
                    (true, Ok(())) => TxCheck::Valid,
                }
            })
            .collect())
    }
}

export_plugin! {
    name: "batching_tx_validation",
    tx_validation: |_config: &str| Ok(BatchValidator),
}
