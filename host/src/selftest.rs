//! Known-answer self-tests run on every slot object before it is installed, in the manner
//! of the Linux kernel's crypto API: a fast implementation must agree with the generic one
//! on a small fixed set of inputs, including adversarial ones, or it is not registered.

use dubchain_plugin_api::{
    slots::{
        BlockExecutionBox, BlockValidationBox, LowerFn, MerkleRootsBox, RecordCodecBox,
        SigVerifyBox, TxValidationBox, VoteVerifyBox,
    },
    types::{Bytes32, Record, SigItem},
};

use crate::{baseline, workload};

/// Checks a `crypto.sig_verify` object against the baseline on valid, invalid and
/// adversarial signatures. The object is given the baseline as its layer below.
pub fn sig_verify(imp: &SigVerifyBox) -> Result<(), String> {
    let set = workload::signature_set(0x5e1f_7e57, 24, true);
    let items = set.items();
    let expected = baseline::sig_verify(&items);
    let lower = LowerFn(|xs: &[SigItem<'_>]| Ok(baseline::sig_verify(xs)));
    let got = imp
        .verify_batch(items.as_slice().into(), lower.as_ffi())
        .into_result()
        .map_err(|e| e.to_string())?;
    if got.as_slice() != expected.as_slice() {
        let first = expected
            .iter()
            .zip(got.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "item {first} ({}): baseline says {}, plugin says {:?}",
            set.labels[first],
            expected[first],
            got.get(first)
        ));
    }
    Ok(())
}

/// Checks a `storage.record_codec` object: its own round trip, and that it reads the
/// baseline's JSON records as the baseline does.
pub fn record_codec(imp: &RecordCodecBox) -> Result<(), String> {
    let records: Vec<Record> = workload::records(0xc0_dec, 3, 4);
    let encoded = imp
        .encode(records.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    let slices: Vec<_> = encoded.iter().map(|v| v.as_slice().into()).collect();
    let decoded = imp
        .decode(slices.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    for (i, (d, r)) in decoded.into_iter().zip(&records).enumerate() {
        match d.into_result() {
            Ok(d) if &d == r => {}
            Ok(_) => return Err(format!("record {i} does not survive its own round trip")),
            Err(e) => return Err(format!("record {i} cannot be read back: {e}")),
        }
    }
    let json = baseline::encode_records(&records);
    let slices: Vec<_> = json.iter().map(|v| v.as_slice().into()).collect();
    let decoded = imp
        .decode(slices.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    for (i, (d, r)) in decoded.into_iter().zip(&records).enumerate() {
        if d.into_result().ok().as_ref() != Some(r) {
            return Err(format!(
                "baseline JSON record {i} is not read as the baseline reads it"
            ));
        }
    }
    Ok(())
}

/// Checks a `consensus.vote_verify` object against the baseline on valid and bad votes,
/// including the pair whose plain aggregate verifies while neither vote does.
pub fn vote_verify(imp: &VoteVerifyBox) -> Result<(), String> {
    let set = workload::vote_set(0x5e1f_b15, 24, true);
    let items = set.items();
    let expected = baseline::verify_votes(&items);
    let got = imp
        .verify_votes(items.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    first_difference(&expected, &got, &set.labels)
}

/// Checks a `crypto.merkle` object against the baseline on trees of 0 to 9, 33 and 64
/// leaves, in one batch.
pub fn merkle(imp: &MerkleRootsBox) -> Result<(), String> {
    let sizes: Vec<usize> = (0..=9).chain([33, 64]).collect();
    let trees = workload::merkle_trees(0x3e_4c1e, &sizes);
    let slices: Vec<abi_stable::std_types::RSlice<'_, Bytes32>> =
        trees.iter().map(|t| t.as_slice().into()).collect();
    let got = imp
        .roots(slices.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    let expected: Vec<Bytes32> = trees.iter().map(|t| baseline::merkle_root(t)).collect();
    let labels: Vec<String> = sizes
        .iter()
        .map(|n| format!("tree of {n} leaves"))
        .collect();
    first_difference(&expected, &got, &labels)
}

fn first_difference<T: PartialEq + std::fmt::Debug, L: std::fmt::Display>(
    expected: &[T],
    got: &[T],
    labels: &[L],
) -> Result<(), String> {
    if got.len() != expected.len() {
        return Err(format!(
            "{} answers for {} inputs",
            got.len(),
            expected.len()
        ));
    }
    match expected.iter().zip(got).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "item {i} ({}): baseline says {:?}, plugin says {:?}",
            labels[i], expected[i], got[i]
        )),
    }
}

/// Checks an `exec.block_execution` object against the baseline on a block with every
/// kind of failing and conflicting transfer.
pub fn block_execution(imp: &BlockExecutionBox) -> Result<(), String> {
    for (seed, conflict) in [(1, 0.1), (2, 0.9)] {
        let b = workload::transfer_block(0xe7ec + seed, 40, 120, conflict, true);
        let expected = baseline::execute_block(&b.pre, &b.txs, &b.proposer);
        let got = imp
            .execute_block(
                b.pre.as_slice().into(),
                b.txs.as_slice().into(),
                &b.proposer,
            )
            .into_result()
            .map_err(|e| e.to_string())?;
        first_difference(&expected.results, &got.results, &b.labels)?;
        if got.writes != expected.writes {
            return Err(format!(
                "same results, different final state ({} writes, the baseline's {})",
                got.writes.len(),
                expected.writes.len()
            ));
        }
    }
    Ok(())
}

/// Checks a `consensus.block_validation` object against the baseline on a run with every
/// kind of faulty block.
pub fn block_validation(imp: &BlockValidationBox) -> Result<(), String> {
    let (height, hash, blocks, labels) = workload::block_run(0xb10c_7e57, 24, 6, true);
    let expected = baseline::check_run(height, &hash, &blocks);
    let got = imp
        .check_run(height, &hash, blocks.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    first_difference(&expected, &got, &labels)
}

/// Checks an `exec.tx_validation` object against the baseline on a batch with every kind
/// of faulty transaction.
pub fn tx_validation(imp: &TxValidationBox) -> Result<(), String> {
    let txs = workload::tx_batch(0x7a11d, 200, true);
    let expected = baseline::validate_txs(&txs);
    let got = imp
        .validate(txs.as_slice().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    let labels: Vec<String> = (0..txs.len()).map(|i| format!("transaction {i}")).collect();
    first_difference(&expected, &got, &labels)
}
