//! The ABI guard: the layout of everything that crosses the plugin boundary, as abi_stable
//! describes it (every type reachable from the root module, recursively: names, sizes,
//! alignments, fields, field types, prefix fields), hashed and compared with `abi.lock`.
//!
//! * The layout changed and `abi.lock` names this crate's version: the ABI changed without a
//!   version bump. Bump `version` in `plugin-api/Cargo.toml` (while the API is 0.x: the last
//!   number for appended slots or methods, the middle one for anything else, as
//!   `docs/plugin-authoring.md` says), then record it.
//! * `abi.lock` names another version: the version was bumped; record the layout.
//!
//! Recording: `DUBCHAIN_BLESS_ABI=1 cargo test -p dubchain-plugin-api --test abi`.
//! Source lines and this crate's own version are left out of the description, so moving
//! code or bumping the version alone does not change the hash.

use std::{collections::HashSet, fmt::Write as _, path::Path};

use abi_stable::{type_layout::TypeLayout, StableAbi};
use dubchain_plugin_api::{PluginModRef, API_VERSION};
use sha2::{Digest, Sha256};

/// Every layout reachable from `root`, each once, in depth-first order, without source
/// lines or this crate's version.
fn describe(root: &'static TypeLayout) -> String {
    fn walk(layout: &'static TypeLayout, seen: &mut HashSet<String>, out: &mut String) {
        let text = layout.to_string();
        if !seen.insert(text.clone()) {
            return;
        }
        for line in text.lines() {
            if line.starts_with("line:") {
                continue;
            }
            let line = line.replace(&format!("version:'{API_VERSION}'"), "version:'this'");
            let _ = writeln!(out, "{line}");
        }
        for nested in layout.shared_vars().type_layouts() {
            walk(nested(), seen, out);
        }
    }
    let mut out = String::new();
    walk(root, &mut HashSet::new(), &mut out);
    out
}

#[test]
fn the_abi_changes_only_with_the_version() {
    let description = describe(<PluginModRef as StableAbi>::LAYOUT);
    assert!(
        description.contains("sig_verify") && description.contains("attach_services"),
        "the description reaches the root module's fields"
    );
    let hash = dubchain_plugin_api::types::hex_encode(&Sha256::digest(description.as_bytes()));
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("abi.lock");
    let recorded = format!("version = \"{API_VERSION}\"\nlayout_sha256 = \"{hash}\"\n");
    if std::env::var_os("DUBCHAIN_BLESS_ABI").is_some() {
        let header = "# The plugin ABI's layout hash for this version (tests/abi.rs). Recorded with\n# DUBCHAIN_BLESS_ABI=1 cargo test -p dubchain-plugin-api --test abi\n";
        std::fs::write(&lock, format!("{header}{recorded}")).unwrap();
        return;
    }
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .map(str::to_owned)
    };
    let (Some(version), Some(locked)) = (field("version"), field("layout_sha256")) else {
        panic!("{} is missing or unreadable; record it with DUBCHAIN_BLESS_ABI=1 cargo test -p dubchain-plugin-api --test abi", lock.display());
    };
    if version == API_VERSION {
        assert_eq!(
            locked, hash,
            "the plugin ABI changed but dubchain-plugin-api is still {API_VERSION}: bump its version (plugin-api/Cargo.toml), then record the layout with DUBCHAIN_BLESS_ABI=1 cargo test -p dubchain-plugin-api --test abi"
        );
    } else {
        panic!("dubchain-plugin-api is {API_VERSION} but abi.lock records {version}: record this version's layout with DUBCHAIN_BLESS_ABI=1 cargo test -p dubchain-plugin-api --test abi");
    }
}
