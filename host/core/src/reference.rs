//! Reference providers that forward to the baseline, installed in-process: the control
//! rows of the benchmarks. A forwarding provider crosses the plugin boundary exactly as a
//! plugin does and adds no technique, so it measures about 1x; a plugin's ratio above it is
//! the plugin's own code. (What `plugin new` scaffolds for these slots is the same code.)

use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use dubchain_plugin_api::slots::{
    BlockCommitFfi_TO, BlockExecutionFfi_TO, Guarded, SlotInfo, BLOCK_COMMIT, BLOCK_EXECUTION,
};

use crate::{host::HostOptions, slot::BreakerConfig, Host};

/// The `storage.block_commit` provider that forwards to the baseline: every write passed through
/// at once with the host's primitive, nothing held. What `plugin new --slot storage.block_commit`
/// scaffolds; it measures about 1x, which is how a reader knows the speed-up of a batching
/// set is the set's own.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwardingWrites;

impl dubchain_plugin_api::slots::BlockWrites for ForwardingWrites {
    fn write(
        &mut self, key: &[u8], value: Option<&[u8]>,
        through: &dubchain_plugin_api::slots::WriteThroughRef<'_>,
    ) -> Result<(), dubchain_plugin_api::PluginError> {
        through
            .put(key.into(), value.map(Into::into).into())
            .into_result()
    }

    fn read(
        &self, _key: &[u8],
    ) -> Result<dubchain_plugin_api::slots::Held, dubchain_plugin_api::PluginError> {
        Ok(dubchain_plugin_api::slots::Held::NotHeld)
    }

    fn held(
        &self, _prefix: &[u8],
    ) -> Result<Vec<dubchain_plugin_api::slots::KvWrite>, dubchain_plugin_api::PluginError> {
        Ok(Vec::new())
    }

    fn drain(
        &mut self,
    ) -> Result<Vec<dubchain_plugin_api::slots::KvWrite>, dubchain_plugin_api::PluginError> {
        Ok(Vec::new())
    }
}

impl dubchain_plugin_api::slots::BlockCommit for ForwardingWrites {
    type Writes = ForwardingWrites;

    fn begin(&self, _height: u64) -> Result<ForwardingWrites, dubchain_plugin_api::PluginError> {
        Ok(ForwardingWrites)
    }
}

/// The `exec.block_execution` provider that forwards to the baseline: every transfer applied
/// over the host's primitives one account at a time (`exec::execute_through`), which is
/// what `plugin new --slot exec.block_execution` scaffolds. It measures about 1x.
#[derive(Debug, Default, Clone, Copy)]
pub struct ForwardingExecution;

impl dubchain_plugin_api::slots::BlockExecution for ForwardingExecution {
    fn execute_block(
        &self, txs: &[dubchain_plugin_api::types::Transaction],
        proposer: &dubchain_plugin_api::types::Bytes32,
        state: &dubchain_plugin_api::slots::AccountStoreRef<'_>,
    ) -> Result<
        Vec<abi_stable::std_types::RResult<(), dubchain_plugin_api::exec::TxFailure>>,
        dubchain_plugin_api::PluginError,
    > {
        dubchain_plugin_api::exec::execute_through(state, txs, proposer)
    }
}

/// A host whose `slot` has an in-process provider that forwards to the baseline, for the
/// control rows of the benchmarks (`exec.block_execution` and `storage.block_commit`); `None` for
/// another slot.
pub fn forwarding_host(slot: &str) -> Option<Host> {
    let (_, install) = FORWARDERS.iter().find(|(info, _)| info.id == slot)?;
    let host = Host::new(HostOptions::default());
    install(&host);
    Some(host)
}

/// The slots with a forwarding control, and how each installs its forwarder.
const FORWARDERS: &[(SlotInfo, fn(&Host))] = &[
    (BLOCK_EXECUTION, |host| {
        host.slots
            .block_execution
            .install(forwarder(BlockExecutionFfi_TO::from_value(
                Guarded(ForwardingExecution),
                TD_Opaque,
            )));
    }),
    (BLOCK_COMMIT, |host| {
        host.slots
            .block_commit
            .install(forwarder(BlockCommitFfi_TO::from_value(
                Guarded(ForwardingWrites),
                TD_Opaque,
            )));
    }),
];

/// `imp` as the one provider of a slot, named `forwarding`.
fn forwarder<I>(imp: I) -> Vec<Arc<crate::slot::Provider<I>>> {
    vec![Arc::new(crate::slot::Provider::new(
        "forwarding".into(),
        "0.0.0".into(),
        0,
        imp,
        BreakerConfig::default(),
    ))]
}
