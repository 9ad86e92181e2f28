//! Host services: the host's slots as a plugin calls them
//! ([`dubchain_plugin_api::services`]).
//!
//! Each loaded library gets one [`PluginServices`], built from its manifest's `[[uses]]`
//! and the host's slots. A call takes the node's own path through the slot (the current
//! stack, breakers, counters, the baseline underneath), so it sees hot swaps as the node
//! does. Two checks sit at the boundary:
//!
//! * a call to a slot the manifest does not declare is refused with an error that names the
//!   plugin, the slot and the manifest entry to add (the plugin's call then fails, and the
//!   host answers it from the layer below, as for any failing call);
//! * a call that would re-enter a slot already being served to a plugin on this thread (a
//!   cycle: a provider of the slot calling it again) is answered by the baseline and counted,
//!   so a cycle cannot recurse. The resolver refuses the static form (a plugin that uses a
//!   slot it provides); this catches what slips past it, for example a plugin that calls
//!   without declaring through a second library.

use std::{
    cell::RefCell,
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RVec},
};
use dubchain_plugin_api::{
    services::{HostServicesBox, HostServicesFfi, HostServicesFfi_TO},
    slots::{guard, SIG_VERIFY},
    types::SigItem,
    PluginError,
};

use crate::{baseline, count::Count, manifest::Manifest, slot::SigVerifySlot};

/// The slots a plugin may call through host services.
pub const OFFERED: &[&str] = &[SIG_VERIFY.id];

thread_local! {
    /// The slots this thread is serving to plugins now, innermost last.
    static SERVING: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

/// Marks `slot` as being served on this thread until dropped; `None` if it already is.
struct Serving(&'static str);

impl Serving {
    fn enter(slot: &'static str) -> Option<Serving> {
        SERVING.with(|s| {
            let mut s = s.borrow_mut();
            if s.contains(&slot) {
                return None;
            }
            s.push(slot);
            Some(Serving(slot))
        })
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        SERVING.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(at) = s.iter().rposition(|x| *x == self.0) {
                s.remove(at);
            }
        });
    }
}

/// One library's services: what its manifest lets it call, and the host's slots.
pub struct PluginServices {
    plugin: String,
    uses: BTreeSet<String>,
    sig_verify: Arc<SigVerifySlot>,
    /// Calls answered by the baseline because they would have re-entered a slot.
    reentered: Count,
    warned: AtomicBool,
}

impl PluginServices {
    /// The services of the plugin of `manifest`, over the host's `sig_verify` slot.
    pub fn new(manifest: &Manifest, sig_verify: Arc<SigVerifySlot>) -> PluginServices {
        PluginServices {
            plugin: manifest.name.clone(),
            uses: manifest.uses.iter().map(|u| u.slot.clone()).collect(),
            sig_verify,
            reentered: Count::default(),
            warned: AtomicBool::new(false),
        }
    }

    /// Calls answered by the baseline because they would have re-entered a slot.
    pub fn reentered(&self) -> u64 {
        self.reentered.get()
    }

    /// These services as the FFI object a library is handed (sharing the counters).
    pub fn into_ffi(self: Arc<Self>) -> HostServicesBox {
        HostServicesFfi_TO::from_value(Shared(self), TD_Opaque)
    }

    fn declared(&self, slot: &str) -> Result<(), PluginError> {
        if self.uses.contains(slot) {
            return Ok(());
        }
        Err(PluginError::invalid_input(format!(
            "plugin `{}` called `{slot}` through host services without declaring it; add `[[uses]] slot = \"{slot}\"` with a `reason` to its manifest",
            self.plugin
        )))
    }

    /// Strict verdicts for `items` through the `crypto.sig_verify` slot.
    pub fn sig_verify(&self, items: &[SigItem<'_>]) -> Result<Vec<bool>, PluginError> {
        self.declared(SIG_VERIFY.id)?;
        match Serving::enter(SIG_VERIFY.id) {
            Some(_serving) => Ok(self.sig_verify.verify_batch(items)),
            None => {
                self.reentered.bump();
                if !self.warned.swap(true, Relaxed) {
                    tracing::warn!(plugin = %self.plugin, slot = SIG_VERIFY.id, "a host-services call would re-enter a slot being served on this thread; the baseline answers it (and later ones)");
                }
                Ok(baseline::sig_verify(items))
            }
        }
    }
}

/// The FFI face of shared [`PluginServices`].
struct Shared(Arc<PluginServices>);

impl HostServicesFfi for Shared {
    fn sig_verify(&self, items: RSlice<'_, SigItem<'_>>) -> RResult<RVec<bool>, PluginError> {
        guard(|| self.0.sig_verify(items.as_slice()).map(RVec::from))
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::OnceLock};

    use dubchain_plugin_api::slots::{Guarded, SigVerifyFfi_TO, SigVerifyFn};

    use super::*;
    use crate::{
        manifest,
        slot::{BreakerConfig, Provider, Slots},
        workload,
    };

    fn manifest_using(uses: &str) -> Manifest {
        let text = format!("name = \"user\"\nversion = \"0.1.0\"\nsubsystem = \"t\"\nlibrary = \"user\"\napi = \"^0.3\"\nrisk = \"low\"\nprovides = [{{ slot = \"exec.tx_validation\", version = 1 }}]\n{uses}");
        manifest::parse(Path::new("/plugins/user.toml"), &text).unwrap()
    }

    /// A `crypto.sig_verify` layer that asks host services (not `next`) for every verdict,
    /// as a misbehaving provider would: the inner call would re-enter the slot, so the
    /// baseline answers it, once per call, and the verdicts stay the baseline's.
    #[test]
    fn a_reentrant_call_is_answered_by_the_baseline() {
        let slots = Slots::default();
        let services: Arc<OnceLock<Arc<PluginServices>>> = Arc::default();
        let inner = services.clone();
        let layer = SigVerifyFn::new(move |items: &[SigItem<'_>], _next: &_| {
            inner.get().expect("set").sig_verify(items)
        });
        slots.sig_verify.install(vec![Arc::new(Provider::new(
            "loop".into(),
            "0.1.0".into(),
            1,
            SigVerifyFfi_TO::from_value(Guarded(layer), TD_Opaque),
            BreakerConfig::default(),
        ))]);
        let user = Arc::new(PluginServices::new(
            &manifest_using("[[uses]]\nslot = \"crypto.sig_verify\"\nreason = \"r\"\n"),
            slots.sig_verify.clone(),
        ));
        services.set(user.clone()).ok().expect("set once");

        let batch = workload::signature_set(3, 40, true);
        let items = batch.items();
        let expected = baseline::sig_verify(&items);
        assert!(expected.contains(&false) && expected.contains(&true));
        for round in 1..=3 {
            assert_eq!(user.sig_verify(&items).unwrap(), expected);
            assert_eq!(user.reentered(), round);
        }
        // The provider answered each call (through the baseline), never failed.
        let status = slots.sig_verify.status();
        assert_eq!((status.counters.calls, status.counters.errors), (3, 0));
        // Nothing is left marked as being served.
        SERVING.with(|s| assert!(s.borrow().is_empty()));
    }

    #[test]
    fn an_undeclared_slot_is_refused_through_the_ffi_object() {
        let slots = Slots::default();
        let ffi = Arc::new(PluginServices::new(
            &manifest_using(""),
            slots.sig_verify.clone(),
        ))
        .into_ffi();
        let batch = workload::signature_set(1, 2, false);
        let e = ffi
            .sig_verify(batch.items().as_slice().into())
            .into_result()
            .unwrap_err();
        assert!(e.to_string().contains("without declaring it"), "{e}");
        assert_eq!(slots.sig_verify.status().counters.calls, 0);
    }
}
