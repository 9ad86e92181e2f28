//! `vm_bytecode_caching`: the `vm.code_loader` slot, with a content-addressed cache.
//!
//! The baseline reads a contract's code from the store and validates it
//! (`dubchain_plugin_api::vm::validate_code`, a full wasmparser validation plus the
//! contract rules) on every call. Code is immutable under its hash, so this plugin keeps the
//! verdict of each code it has loaded, keyed by the code's SHA-256 (the hash the store keeps
//! beside the code and the host hands over): a call to a contract seen before is a lookup
//! and a copy of its bytes.
//!
//! * **Keyed by content, not by address.** An address whose code changed (a deploy rolled
//!   back and redone) comes with another hash, so a stale entry is never found; two
//!   addresses with the same code share one entry.
//! * **Checked before it is kept.** Code read from the store is cached only if it hashes to
//!   the hash it was asked under (a damaged store answers what the baseline would, uncached).
//!   Invalid code is cached with its verdict too: a broken contract called in a loop costs a
//!   lookup, not a validation, each time.
//! * **Bounded by bytes.** Two generations ([`dubchain_plugin_api::cache`]): entries go
//!   into the young one; when its bytes would pass half of `max_bytes` it becomes the old
//!   one (the previous old one is dropped), and a hit in the old generation moves the entry
//!   back to the young one. What is used stays; the whole cache never holds more than
//!   `max_bytes` of code and messages.

use std::sync::Mutex;

use dubchain_plugin_api::{
    cache::Generations,
    export_plugin, settings,
    slots::{CodeLoader, CodeSourceRef, LoadedCode},
    types::Bytes32,
    vm::validate_code,
    PluginError,
};
use sha2::{Digest, Sha256};

dubchain_plugin_api::declare_settings! {
    /// The most bytes of code (and verdict messages) kept (at least 4 KiB).
    max_bytes: usize = 16 << 20,
}

/// What an entry costs the bound.
fn size(loaded: &LoadedCode) -> usize {
    match loaded {
        LoadedCode::Valid(code) => code.len(),
        LoadedCode::Invalid(message) => message.len(),
        LoadedCode::Missing => 0,
    }
}

/// Verdicts by code hash, bounded by their bytes.
type Verdicts = Generations<Bytes32, LoadedCode>;

/// The plugin.
#[derive(Debug)]
pub struct CodeCache {
    /// Bytes a generation may grow to before it ages (half the bound).
    generation: usize,
    inner: Mutex<Verdicts>,
}

impl CodeCache {
    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Self, PluginError> {
        let s: Settings = settings::parse(config)?;
        Ok(CodeCache {
            generation: settings::at_least("max_bytes", s.max_bytes, 4096)? / 2,
            inner: Mutex::new(Generations::weighed(size)),
        })
    }

    fn inner(&self) -> Result<std::sync::MutexGuard<'_, Verdicts>, PluginError> {
        self.inner
            .lock()
            .map_err(|_| PluginError::poisoned("the code cache"))
    }

    /// The cached verdict for `hash`, moved to the young generation if it was old.
    fn lookup(&self, hash: &Bytes32) -> Result<Option<LoadedCode>, PluginError> {
        Ok(self.inner()?.get(hash, self.generation))
    }

    /// Files `loaded` under `hash` in the young generation, aging it first if it is full.
    /// An entry larger than a generation is not kept.
    fn keep(&self, hash: Bytes32, loaded: LoadedCode) -> Result<(), PluginError> {
        self.inner()?.insert(hash, loaded, self.generation);
        Ok(())
    }
}

impl CodeLoader for CodeCache {
    fn load(
        &self, contract: &Bytes32, code_hash: &Bytes32, source: &CodeSourceRef<'_>,
    ) -> Result<LoadedCode, PluginError> {
        if let Some(hit) = self.lookup(code_hash)? {
            return Ok(hit);
        }
        let Some(code) = source.code(contract).into_result()?.into_option() else {
            return Ok(LoadedCode::Missing);
        };
        let as_asked = Sha256::digest(code.as_slice()).as_slice() == code_hash.0;
        let loaded = match validate_code(&code) {
            Ok(()) => LoadedCode::Valid(code),
            Err(e) => LoadedCode::Invalid(e.into()),
        };
        if as_asked {
            self.keep(*code_hash, loaded.clone())?;
        }
        Ok(loaded)
    }
}

export_plugin! {
    name: "vm_bytecode_caching",
    code_loader: CodeCache::from_config,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dubchain_plugin_api::slots::HostCode;

    #[test]
    fn the_bound_holds_and_what_is_used_stays() {
        let cache = CodeCache::from_config("max_bytes = 4096").unwrap();
        let code = |i: u8| vec![i; 1000];
        let hash = |i: u8| Bytes32(Sha256::digest(code(i)).into());
        // Five entries of 1,000 bytes into a bound of 4,096, entry 0 used after each.
        for i in 0..5u8 {
            cache
                .keep(hash(i), LoadedCode::Valid(code(i).into()))
                .unwrap();
            assert!(cache.lookup(&hash(0)).unwrap().is_some(), "after {i}");
        }
        assert!(
            cache.lookup(&hash(1)).unwrap().is_none(),
            "unused, aged out"
        );
        assert!(cache.lookup(&hash(4)).unwrap().is_some(), "the newest");
        assert!(cache.inner().unwrap().weight() <= 4096);
    }

    #[test]
    fn code_that_does_not_hash_to_what_was_asked_is_answered_but_not_kept() {
        let cache = CodeCache::from_config("").unwrap();
        let source = HostCode(|_: &Bytes32| Ok(Some(b"not wasm".to_vec())));
        let asked = Bytes32([7; 32]);
        let got = cache
            .load(&Bytes32([1; 32]), &asked, &source.as_source())
            .unwrap();
        assert!(matches!(got, LoadedCode::Invalid(_)));
        assert!(cache.lookup(&asked).unwrap().is_none());
        assert!(CodeCache::from_config("max_bytes = 10").is_err());
        assert!(CodeCache::from_config("entries = 3").is_err());
    }
}
