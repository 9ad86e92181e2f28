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
//! * **Bounded by bytes.** Two generations: entries go into the young one; when its bytes
//!   reach half of `max_bytes` it becomes the old one (the previous old one is dropped), and
//!   a hit in the old generation moves the entry back to the young one. What is used stays;
//!   the whole cache never holds more than `max_bytes` of code and messages.

use std::{collections::HashMap, sync::Mutex};

use dubchain_plugin_api::{
    export_plugin, settings,
    slots::{CodeLoader, CodeSourceRef, LoadedCode},
    types::Bytes32,
    vm::validate_code,
    PluginError,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Settings, from the plugin's table in the host configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The most bytes of code (and verdict messages) kept (at least 4 KiB).
    pub max_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_bytes: 16 << 20,
        }
    }
}

/// One generation: verdicts by code hash, and their bytes.
#[derive(Debug, Default)]
struct Generation {
    entries: HashMap<Bytes32, LoadedCode>,
    bytes: usize,
}

impl Generation {
    fn insert(&mut self, hash: Bytes32, loaded: LoadedCode) {
        self.bytes += size(&loaded);
        if let Some(old) = self.entries.insert(hash, loaded) {
            self.bytes -= size(&old);
        }
    }
}

/// What an entry costs the bound.
fn size(loaded: &LoadedCode) -> usize {
    match loaded {
        LoadedCode::Valid(code) => code.len(),
        LoadedCode::Invalid(message) => message.len(),
        LoadedCode::Missing => 0,
    }
}

#[derive(Debug, Default)]
struct Generations {
    young: Generation,
    old: Generation,
}

/// The plugin.
#[derive(Debug)]
pub struct CodeCache {
    /// Bytes a generation may grow to before it ages (half the bound).
    generation: usize,
    inner: Mutex<Generations>,
}

impl CodeCache {
    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Self, PluginError> {
        let s: Settings = settings::parse(config)?;
        Ok(CodeCache {
            generation: settings::at_least("max_bytes", s.max_bytes, 4096)? / 2,
            inner: Mutex::default(),
        })
    }

    fn inner(&self) -> Result<std::sync::MutexGuard<'_, Generations>, PluginError> {
        self.inner
            .lock()
            .map_err(|_| PluginError::poisoned("the code cache"))
    }

    /// The cached verdict for `hash`, moved to the young generation if it was old.
    fn lookup(&self, hash: &Bytes32) -> Result<Option<LoadedCode>, PluginError> {
        let mut g = self.inner()?;
        if let Some(hit) = g.young.entries.get(hash) {
            return Ok(Some(hit.clone()));
        }
        let Some(hit) = g.old.entries.remove(hash) else {
            return Ok(None);
        };
        g.old.bytes -= size(&hit);
        let answer = hit.clone();
        self.keep(&mut g, *hash, hit);
        Ok(Some(answer))
    }

    /// Files `loaded` under `hash` in the young generation, aging it first if it is full.
    /// An entry larger than a generation is not kept.
    fn keep(&self, g: &mut Generations, hash: Bytes32, loaded: LoadedCode) {
        let n = size(&loaded);
        if n > self.generation {
            return;
        }
        if g.young.bytes + n > self.generation {
            g.old = std::mem::take(&mut g.young);
        }
        g.young.insert(hash, loaded);
    }
}

impl CodeLoader for CodeCache {
    fn load(
        &self,
        contract: &Bytes32,
        code_hash: &Bytes32,
        source: &CodeSourceRef<'_>,
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
            let mut g = self.inner()?;
            self.keep(&mut g, *code_hash, loaded.clone());
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
            let mut g = cache.inner().unwrap();
            cache.keep(&mut g, hash(i), LoadedCode::Valid(code(i).into()));
            drop(g);
            assert!(cache.lookup(&hash(0)).unwrap().is_some(), "after {i}");
        }
        assert!(
            cache.lookup(&hash(1)).unwrap().is_none(),
            "unused, aged out"
        );
        assert!(cache.lookup(&hash(4)).unwrap().is_some(), "the newest");
        let g = cache.inner().unwrap();
        assert!(g.young.bytes + g.old.bytes <= 4096);
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
