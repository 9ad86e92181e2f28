//! `batching_tx_validation`: a batch of transactions (a mempool admission) validated as a
//! batch, on one thread (`exec.tx_validation`).
//!
//! The baseline validates each transaction in turn: its signature (through
//! `crypto.sig_verify`), then its rules. Here the batch is validated in passes: the
//! stateless rules over the whole batch first (they decide nothing alone: a bad signature is
//! reported before a broken rule, as the baseline does), then every signature of the batch in
//! one call to the host's `crypto.sig_verify` through host services (declared in the
//! manifest), so the node's stack serves them: a parallel verifier spreads the batch over the
//! cores, and a verification cache remembers the admitted signatures for block validation.
//!
//! # What changed, and what it costs
//!
//! Up to 0.1 this plugin verified the signatures itself (each sender key decompressed once
//! per batch, on one thread), which bypassed the `crypto.sig_verify` stack: a verification
//! cache then saw nothing at admission, and blocks were verified in full again at
//! validation. Through the stack its verdicts are the stack's (strict by construction) and
//! the cache is filled; the per-batch key decompression is given up (the stack's providers
//! decompress per item). `docs/benchmarks.md` has the figures alone and over the stack.
//!
//! Where the host attached no services (an isolated load, a test of the Rust type), the
//! signatures are verified strictly here.

use dubchain_plugin_api::{
    exec::check_stateless,
    export_plugin, services,
    slots::{TxCheck, TxValidation},
    types::Transaction,
    PluginError,
};

/// The plugin: stateless between calls.
pub struct BatchValidator;

impl TxValidation for BatchValidator {
    fn validate(&self, txs: &[Transaction]) -> Result<Vec<TxCheck>, PluginError> {
        // Pass 1: the rules, over the batch.
        let rules: Vec<Result<(), _>> = txs.iter().map(check_stateless).collect();
        // Pass 2: every signature, in one call to the host's crypto.sig_verify.
        let all: Vec<&Transaction> = txs.iter().collect();
        let signatures = services::verify_txs(&all)?;
        // The verdicts, in the baseline's order.
        Ok(signatures
            .into_iter()
            .zip(rules)
            .map(|(ok, rule)| match (ok, rule) {
                (false, _) => TxCheck::BadSignature,
                (true, Err(f)) => TxCheck::Invalid(f),
                (true, Ok(())) => TxCheck::Valid,
            })
            .collect())
    }
}

export_plugin! {
    name: "batching_tx_validation",
    init: dubchain_plugin_api::settings::none,
    tx_validation: |_: &str| Ok(BatchValidator),
}
