//! Host services (API 0.3.3): the host's slots, callable from a plugin.
//!
//! A plugin whose manifest declares `[[uses]] slot = "crypto.sig_verify"` may ask the host
//! for signature verdicts with [`sig_verify`]. The call takes the node's own path: the
//! slot's current stack of providers (a verification cache, a parallel verifier, ...), its
//! breakers and counters, and the baseline underneath, so the plugin composes with whatever
//! serves that slot now, including after a hot swap.
//!
//! The host hands each loaded library one [`HostServicesBox`] before `init` (through the
//! root module's `attach_services`, which [`export_plugin!`](crate::export_plugin) fills in).
//! The host refuses, with an error naming the manifest key to add, a call to a slot the
//! manifest does not declare; a call that would re-enter a slot already being served to a
//! plugin on the same thread is answered by the baseline (a cycle cannot recurse).
//!
//! A library the host never attached (an isolated plugin, run in a child process, or a test
//! that calls the plugin's Rust types directly) gets an error from every service;
//! [`sig_verify_or_strict`] falls back to the strict check in this crate then.

#![allow(
    non_local_definitions,
    reason = "abi_stable's #[sabi_trait] expands trait impls inside a const block"
)]

use std::sync::RwLock;

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RSlice, RVec},
};

use crate::{
    chain::signing_bytes,
    sig::{tx_items, verify_item},
    slots::check_len,
    types::{SigItem, Transaction},
    PluginError,
};

/// What the host offers a plugin. Methods are appended in later API versions.
#[sabi_trait]
pub trait HostServicesFfi: Send + Sync {
    /// Strict ed25519 verdicts for `items`, one per item, through the host's
    /// `crypto.sig_verify` slot.
    #[sabi(last_prefix_field)]
    fn sig_verify(&self, items: RSlice<'_, SigItem<'_>>) -> RResult<RVec<bool>, PluginError>;
}

/// The host's services, as a library holds them.
pub type HostServicesBox = HostServicesFfi_TO<'static, RBox<()>>;

/// This library's services (one per mapped library: each load maps a copy of its own).
static SERVICES: RwLock<Option<HostServicesBox>> = RwLock::new(None);

/// Stores the services the host handed this library (called by the generated root module).
#[doc(hidden)]
pub extern "C" fn attach(services: HostServicesBox) {
    *SERVICES.write().unwrap_or_else(|p| p.into_inner()) = Some(services);
}

/// Whether the host attached its services to this library.
pub fn attached() -> bool {
    SERVICES.read().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// Strict verdicts for `items`, one per item, from the host's `crypto.sig_verify` slot.
///
/// Errors: the host attached no services ([`attached`] says so); the host's
/// refusal when the manifest does not declare `[[uses]] slot = "crypto.sig_verify"`; an
/// answer of the wrong length.
pub fn sig_verify(items: &[SigItem<'_>]) -> Result<Vec<bool>, PluginError> {
    let guard = SERVICES.read().unwrap_or_else(|p| p.into_inner());
    let Some(services) = guard.as_ref() else {
        return Err(PluginError::failed(
            "the host attached no services to this library (isolated, or called outside a host)",
        ));
    };
    let verdicts = services.sig_verify(items.into()).into_result()?.into_vec();
    check_len(items.len(), verdicts)
}

/// [`sig_verify`] where the host attached services; the strict check of this crate
/// ([`verify_item`]) where it did not. Any other error is returned.
pub fn sig_verify_or_strict(items: &[SigItem<'_>]) -> Result<Vec<bool>, PluginError> {
    if attached() {
        sig_verify(items)
    } else {
        Ok(items.iter().map(verify_item).collect())
    }
}

/// The signature verdicts of `txs` (each by its sender, over its signing bytes), in one
/// [`sig_verify_or_strict`] call.
pub fn verify_txs(txs: &[&Transaction]) -> Result<Vec<bool>, PluginError> {
    let messages: Vec<Vec<u8>> = txs.iter().map(|tx| signing_bytes(tx)).collect();
    sig_verify_or_strict(&tx_items(txs, &messages))
}
