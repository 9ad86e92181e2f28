//! Precompiled modules on disk, checked before they are trusted.
//!
//! `DIR/<key>.cwasm` is `MAGIC`, then a 32-byte tag, then the engine fingerprint (8 bytes,
//! little-endian), then wasmtime's serialized module. The tag is
//! `sha256(secret || key || fingerprint || module)`, where `secret` is 32 random bytes made
//! once per directory (`DIR/secret`, readable by its owner only). An artifact is
//! deserialized only if its magic, length, fingerprint and tag are right: a truncated or
//! corrupted file fails the tag, one from another build or engine configuration fails the
//! fingerprint, and one planted by someone who cannot read `secret` cannot carry a right
//! tag, and neither can an artifact filed under another module's key (the key is in the
//! tag). A file that fails is reported on stderr and removed; the module is compiled again.
//! (Whoever can read `secret` can forge artifacts: the directory is the node's own.)

use std::path::{Path, PathBuf};

use dubchain_host::vm::{Compiled, Vm};
use dubchain_plugin_api::{types::Bytes32, PluginError};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"DUBCWSM1";
const HEADER: usize = 8 + 32 + 8;

/// An artifact directory and its secret.
#[derive(Debug)]
pub struct Artifacts {
    dir: PathBuf,
    secret: [u8; 32],
}

impl Artifacts {
    /// Opens (creating) the directory and its secret.
    pub fn open(dir: PathBuf, _vm: &Vm) -> Result<Artifacts, PluginError> {
        let bad = |what: &str, e: std::io::Error| {
            PluginError::invalid_input(format!(
                "artifacts = {:?}: {what}: {e}; give a directory this node may write",
                dir.display()
            ))
        };
        std::fs::create_dir_all(&dir).map_err(|e| bad("cannot create it", e))?;
        let path = dir.join("secret");
        let secret = match std::fs::read(&path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                PluginError::invalid_input(format!(
                    "{}: not a 32-byte secret; remove it (and the artifacts) to start afresh",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret: [u8; 32] = rand::random();
                write_private(&path, &secret).map_err(|e| bad("cannot write its secret", e))?;
                secret
            }
            Err(e) => return Err(bad("cannot read its secret", e)),
        };
        Ok(Artifacts { dir, secret })
    }

    fn path(&self, key: &Bytes32) -> PathBuf {
        let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.cwasm"))
    }

    fn tag(&self, key: &Bytes32, fingerprint: u64, module: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(key.0);
        h.update(fingerprint.to_le_bytes());
        h.update(module);
        h.finalize().into()
    }

    /// The module of `key` from its artifact, if there is one and it is sound; a file that
    /// is not is reported and removed.
    pub fn load(&self, vm: &Vm, key: &Bytes32) -> Option<Compiled> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        match self.check(vm, key, &bytes) {
            Ok(module) => {
                // SAFETY: the tag proves these bytes are what `store` wrote for this key with
                // this directory's secret, and the fingerprint that this build and engine
                // configuration serialized them.
                match unsafe { vm.deserialize(module) } {
                    Ok(m) => return Some(m),
                    Err(e) => refuse(&path, &format!("wasmtime refused it ({e})")),
                }
            }
            Err(why) => refuse(&path, why),
        }
        None
    }

    /// The serialized module inside `bytes`, if its header and tag are right.
    fn check<'a>(&self, vm: &Vm, key: &Bytes32, bytes: &'a [u8]) -> Result<&'a [u8], &'static str> {
        if bytes.len() <= HEADER || &bytes[..8] != MAGIC {
            return Err("not an artifact of this plugin, or truncated");
        }
        let (tag, rest) = bytes[8..].split_at(32);
        let (fingerprint, module) = rest.split_at(8);
        let fingerprint = u64::from_le_bytes(fingerprint.try_into().expect("8 bytes"));
        if fingerprint != vm.fingerprint() {
            return Err("written by another build or engine configuration");
        }
        if tag != self.tag(key, fingerprint, module) {
            return Err("its tag does not match (corrupted, truncated, or not written here)");
        }
        Ok(module)
    }

    /// Writes `module`'s artifact for `key` (to a temporary file, then renamed, so a crash
    /// leaves the old file or the new one). A failure is reported, not fatal: the module
    /// is in memory either way.
    pub fn store(&self, vm: &Vm, key: &Bytes32, module: &Compiled) {
        let path = self.path(key);
        let write = || -> Result<(), String> {
            let body = vm.serialize(module)?;
            let fingerprint = vm.fingerprint();
            let mut bytes = Vec::with_capacity(HEADER + body.len());
            bytes.extend_from_slice(MAGIC);
            bytes.extend_from_slice(&self.tag(key, fingerprint, &body));
            bytes.extend_from_slice(&fingerprint.to_le_bytes());
            bytes.extend_from_slice(&body);
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &bytes)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| e.to_string())
        };
        if let Err(e) = write() {
            eprintln!(
                "vm_jit_caching: could not write artifact {}: {e}; the module stays in memory",
                path.display()
            );
        }
    }
}

/// Reports and removes an artifact that may not be used.
fn refuse(path: &Path, why: &str) {
    eprintln!(
        "vm_jit_caching: artifact {} refused: {why}; removed, the module is compiled again",
        path.display()
    );
    let _ = std::fs::remove_file(path);
}

/// Writes `bytes` to a new file at `path` readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JitCache;
    use dubchain_host::vm;

    /// Reference contract `i`'s metered code and its key.
    fn metered(i: usize) -> (Vec<u8>, Bytes32) {
        let wasm = dubchain_plugin_api::vm::meter::instrument(&vm::contracts::genesis()[i].code)
            .expect("the reference contracts meter");
        let key = Bytes32(Sha256::digest(&wasm).into());
        (wasm, key)
    }

    /// The compute contract's call through `cache` and through the baseline, which must agree.
    fn same_call(cache: &JitCache) {
        let (wasm, key) = metered(1);
        let module = cache.load(Vm::shared(), &key, &wasm).unwrap();
        let storage = vm::MemoryStorage::default();
        let (counter, contract) = (
            dubchain_plugin_api::slots::GasCounter::HostCall,
            vm::contracts::genesis()[1].address,
        );
        let vm = Vm::shared();
        let got = vm
            .run_compiled(&module, counter, contract, 30, 100_000, &storage)
            .outcome();
        let want = vm.run(&wasm, counter, contract, 30, 100_000, &storage);
        assert_eq!(got.unwrap(), want.unwrap());
    }

    fn artifact(dir: &Path) -> PathBuf {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .expect("an artifact was written")
    }

    fn cache(dir: &Path) -> JitCache {
        JitCache::from_config(&format!("artifacts = {:?}", dir.display().to_string())).unwrap()
    }

    /// The artifact a cache over `dir` writes for the compute call: its path and bytes.
    fn written_artifact(dir: &Path) -> (PathBuf, Vec<u8>) {
        same_call(&cache(dir));
        let path = artifact(dir);
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    /// Whether `c`'s artifact directory gives a module for `key`.
    fn loads(c: &JitCache, key: &Bytes32) -> bool {
        c.disk.as_ref().unwrap().load(Vm::shared(), key).is_some()
    }

    #[test]
    fn a_sound_artifact_is_loaded_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (path, before) = written_artifact(dir.path());
        // A new instance: what a restarted node has.
        let restarted = cache(dir.path());
        let (_, key) = metered(1);
        assert!(loads(&restarted, &key));
        same_call(&restarted);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "loaded, not rewritten"
        );
    }

    #[test]
    fn truncated_corrupted_foreign_and_planted_artifacts_are_never_deserialized() {
        let dir = tempfile::tempdir().unwrap();
        let (path, good) = written_artifact(dir.path());
        let (_, key) = metered(1);
        let mut corrupted = good.clone();
        let last = corrupted.len() - 1;
        corrupted[last] ^= 1;
        let mut foreign = good.clone();
        // The fingerprint.
        foreign[40] ^= 0xff;
        // Planted: a well-formed artifact of the same module under another directory's
        // secret.
        let other = tempfile::tempdir().unwrap();
        let (_, planted) = written_artifact(other.path());
        for (what, bytes) in [
            ("truncated", good[..good.len() / 2].to_vec()),
            ("empty", Vec::new()),
            ("corrupted", corrupted),
            ("foreign", foreign),
            ("planted", planted),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let c = cache(dir.path());
            assert!(!loads(&c, &key), "{what}: refused");
            assert!(!path.exists(), "{what}: removed");
            same_call(&c);
            assert_eq!(
                std::fs::read(&path).unwrap(),
                good,
                "{what}: compiled and written again"
            );
        }
        // A sound artifact of one module filed under another module's key.
        let (_, counter_key) = metered(0);
        let c = cache(dir.path());
        std::fs::copy(&path, c.disk.as_ref().unwrap().path(&counter_key)).unwrap();
        assert!(!loads(&c, &counter_key));
    }
}
