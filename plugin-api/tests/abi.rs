//! The ABI guard, a semver check of the plugin boundary against the last recorded release:
//! the layout of everything that crosses it, as abi_stable describes it (every type
//! reachable from the root module, recursively: names, sizes, alignments, fields, field
//! types, prefix fields), compared with the layout recorded for the last release
//! (`abi.layout`, its version and hash in `abi.lock`), and the change classified:
//!
//! * none: any version passes;
//! * **appended**: prefix types (the root module, the slot traits' vtables) gained fields
//!   at their end, and new types came with them: a plugin built before still loads
//!   (abi_stable accepts a prefix of the fields). Needs at least the last number bumped
//!   (0.3.3 -> 0.3.4 while the API is 0.x);
//! * **breaking**: anything else (a field changed, removed or inserted, a type's size or
//!   shape). Needs the middle number bumped while the API is 0.x (0.3.3 -> 0.4.0), the
//!   first after.
//!
//! A change with too small a bump fails with what changed and the version it needs; a
//! change with a sufficient bump fails until it is recorded
//! (`DUBCHAIN_BLESS_ABI=1 cargo test -p dubchain-plugin-api --test abi`, which refuses to
//! record a bump too small for the change). Source lines and this crate's own version are
//! left out of the description, so moving code or bumping the version alone changes
//! nothing.

use std::{collections::HashSet, fmt::Write as _, path::PathBuf};

use abi_stable::{type_layout::TypeLayout, StableAbi};
use dubchain_plugin_api::{PluginModRef, API_VERSION};
use sha2::{Digest, Sha256};

/// Every layout reachable from `root`, each text once, in depth-first order, without source
/// lines or this crate's version. The walk goes through every layout (once each, by
/// address) even where its text was already printed: the sabi_trait objects of every slot
/// print alike (`RObject<'lt>`), and only what they hold (each slot's vtable) differs.
fn describe(root: &'static TypeLayout) -> String {
    fn walk(
        layout: &'static TypeLayout, visited: &mut HashSet<usize>, printed: &mut HashSet<String>,
        out: &mut String,
    ) {
        if !visited.insert(layout as *const TypeLayout as usize) {
            return;
        }
        let text = layout.to_string();
        if printed.insert(text.clone()) {
            for line in text.lines() {
                if line.starts_with("line:") {
                    continue;
                }
                let line = line.replace(&format!("version:'{API_VERSION}'"), "version:'this'");
                let _ = writeln!(out, "{line}");
            }
        }
        for nested in layout.shared_vars().type_layouts() {
            walk(nested(), visited, printed, out);
        }
    }
    let mut out = String::new();
    walk(root, &mut HashSet::new(), &mut HashSet::new(), &mut out);
    out
}

/// What a layout change asks of the version, from the last release's description to this
/// one's.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Change {
    None,
    Appended,
    Breaking,
}

/// The change from `old` to `new`, with the first type that makes it breaking.
fn classify(old: &str, new: &str) -> (Change, Option<String>) {
    let prefix_types: HashSet<&str> = blocks(old)
        .chain(blocks(new))
        .filter(|b| is_prefix(b))
        .map(type_name)
        .collect();
    let (old, new) = (
        normalized(old, &prefix_types),
        normalized(new, &prefix_types),
    );
    if old == new {
        return (Change::None, None);
    }
    let old_blocks: HashSet<&str> = blocks(&old).collect();
    let new_blocks: HashSet<&str> = blocks(&new).collect();
    let added: Vec<&str> = new_blocks.difference(&old_blocks).copied().collect();
    for gone in old_blocks.difference(&new_blocks) {
        let extended = is_prefix(gone)
            && added
                .iter()
                .any(|a| is_prefix(a) && type_name(a) == type_name(gone) && extends(gone, a));
        if !extended {
            return (Change::Breaking, Some(type_name(gone).to_owned()));
        }
    }
    // Only blocks added, or prefix types extended at their end.
    (Change::Appended, None)
}

/// The type layouts of a description.
fn blocks(desc: &str) -> impl Iterator<Item = &str> {
    desc.split("--- Type Layout ---\n")
        .filter(|b| !b.is_empty())
}

fn type_name(block: &str) -> &str {
    block
        .lines()
        .find_map(|l| l.strip_prefix("type:"))
        .unwrap_or_default()
}

fn is_prefix(block: &str) -> bool {
    block.contains("\n    Prefix type:\n")
}

/// `desc` without the sizes of prefix types wherever they appear (their own header, and
/// fields that hold one): appending a field grows them, and a holder only points at them.
fn normalized(desc: &str, prefix_types: &HashSet<&str>) -> String {
    let mut out = String::with_capacity(desc.len());
    let mut after_prefix_type = false;
    for line in desc.lines() {
        let trimmed = line.trim_start();
        if !(after_prefix_type && trimmed.starts_with("size:")) {
            out.push_str(line);
            out.push('\n');
        }
        after_prefix_type = trimmed
            .strip_prefix("type:")
            .is_some_and(|t| prefix_types.contains(t));
    }
    out
}

/// Whether prefix type `new` is `old` with fields appended: the same head and tail, `old`'s
/// fields (and their accessibility) a strict prefix of `new`'s.
fn extends(old: &str, new: &str) -> bool {
    let (old_head, old_fields, old_access, old_tail) = prefix_parts(old);
    let (new_head, new_fields, new_access, new_tail) = prefix_parts(new);
    old_head == new_head
        && old_tail == new_tail
        && new_fields.len() > old_fields.len()
        && new_fields.starts_with(&old_fields)
        && new_access.starts_with(&old_access)
}

/// A prefix type's layout as: what comes before its fields, the fields, the accessibility
/// of each, and what comes after.
fn prefix_parts(block: &str) -> (&str, Vec<&str>, Vec<&str>, &str) {
    const FIELDS: &str = "\n    fields:\n";
    const ACCESS: &str = "\n    accessible_fields:\n";
    let (Some(f), Some(a)) = (block.find(FIELDS), block.find(ACCESS)) else {
        return (block, Vec::new(), Vec::new(), "");
    };
    let fields = block[f + FIELDS.len()..a]
        .split("\n\n")
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let rest = &block[a + ACCESS.len()..];
    let (access_line, tail) = rest.split_once('\n').unwrap_or((rest, ""));
    let access = access_line
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(", ")
        .collect();
    (&block[..f], fields, access, tail)
}

/// What a bump from `from` to `to` allows: `Change::Breaking` for a major bump (the middle
/// number while the API is 0.x), `Change::Appended` for a minor one (the last number while
/// 0.x), `Change::None` for none or a smaller one.
fn bump(from: &str, to: &str) -> Change {
    let parse = |v: &str| -> [u64; 3] {
        let mut n = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
        [0; 3].map(|_| n.next().unwrap_or(0))
    };
    let (a, b) = (parse(from), parse(to));
    // Cargo's rule: the first non-zero number is the major one.
    let major = |v: [u64; 3]| if v[0] > 0 { (v[0], 0) } else { (0, v[1]) };
    if major(b) > major(a) {
        Change::Breaking
    } else if major(b) == major(a) && b > a {
        Change::Appended
    } else {
        Change::None
    }
}

#[test]
fn the_abi_changes_only_as_the_version_says() {
    let description = describe(<PluginModRef as StableAbi>::LAYOUT);
    assert!(
        description.contains("sig_verify")
            && description.contains("attach_services")
            && description.contains("field_name:new_tally")
            && description.contains("field_name:finalized"),
        "the description reaches the root module's fields and every slot's methods"
    );
    let hash =
        |text: &str| dubchain_plugin_api::types::hex_encode(&Sha256::digest(text.as_bytes()));
    // The package's directory when the test runs (cargo and nextest set it), not when it was
    // built: a target directory shared by two checkouts may hold a build from the other.
    let dir = &PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let (lock, layout) = (dir.join("abi.lock"), dir.join("abi.layout"));
    let record = "DUBCHAIN_BLESS_ABI=1 cargo test -p dubchain-plugin-api --test abi";
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .map(str::to_owned)
    };
    let (Some(released), Some(locked)) = (field("version"), field("layout_sha256")) else {
        panic!(
            "{} is missing or unreadable; record it with {record}",
            lock.display()
        );
    };
    let old = std::fs::read_to_string(&layout).unwrap_or_default();
    assert_eq!(
        hash(&old),
        locked,
        "{} is not the layout abi.lock records for {released}; restore it from version control",
        layout.display()
    );
    let (change, culprit) = classify(&old, &description);
    let allowed = bump(&released, API_VERSION);
    let culprit = culprit
        .map(|t| format!(" (first: `{t}`)"))
        .unwrap_or_default();
    assert!(
        change <= allowed,
        "the plugin ABI changed since {released} ({change:?}{culprit}) but dubchain-plugin-api {API_VERSION} is {}: bump plugin-api/Cargo.toml's version to at least {} (docs/plugin-authoring.md, ABI evolution rules), then record the layout with {record}",
        match allowed {
            Change::None => "no bump".to_owned(),
            other => format!("a bump for {other:?} changes only"),
        },
        needed(&released, change)
    );
    if change == Change::None {
        return;
    }
    if std::env::var_os("DUBCHAIN_BLESS_ABI").is_some() {
        let header = format!("# The plugin ABI's last recorded release (tests/abi.rs): its version and the hash of\n# its layout, abi.layout. Recorded with\n# {record}\n");
        std::fs::write(&layout, &description).unwrap();
        std::fs::write(
            &lock,
            format!(
                "{header}version = \"{API_VERSION}\"\nlayout_sha256 = \"{}\"\n",
                hash(&description)
            ),
        )
        .unwrap();
        return;
    }
    panic!("dubchain-plugin-api {API_VERSION} changes the ABI of {released} ({change:?}), as its version allows: record its layout with {record}");
}

/// The smallest version after `from` that allows `change`.
fn needed(from: &str, change: Change) -> String {
    let mut n: Vec<u64> = from.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    n.resize(3, 0);
    let major = if n[0] > 0 { 0 } else { 1 };
    match change {
        Change::Breaking => {
            n[major] += 1;
            n[major + 1..].iter_mut().for_each(|x| *x = 0);
        }
        _ => n[2] += 1,
    }
    format!("{}.{}.{}", n[0], n[1], n[2])
}

/// The classification on changes made to this version's real description: the check above
/// can tell an append from a break.
#[test]
fn appended_fields_are_told_from_breaking_changes() {
    let now = describe(<PluginModRef as StableAbi>::LAYOUT);
    assert_eq!(classify(&now, &now), (Change::None, None));

    // A slot appended to the root module: a field at the end of `PluginMod`, its
    // accessibility, a larger size, and a new type for it.
    let root = blocks(&now)
        .find(|b| type_name(b) == "PluginMod" && is_prefix(b))
        .expect("the root module's layout");
    let (_, fields, _, _) = prefix_parts(root);
    let last = fields.last().expect("the root module has fields");
    let new_field = last.replacen(
        &last.lines().next().unwrap().to_owned(),
        "field_name:teleport",
        1,
    );
    let appended_root = root
        .replacen(last, &format!("{last}\n\n        {new_field}"), 1)
        .replacen(
            "accessible_fields:\n        [Yes",
            "accessible_fields:\n        [Yes, Yes",
            1,
        );
    let new_type = "type:Teleport\nsize:8 align:8\npackage:'dubchain-plugin-api' version:'this'\ndata:\n    Primitive\n";
    let appended = format!(
        "{}--- Type Layout ---\n{new_type}",
        now.replacen(root, &appended_root, 1)
    );
    assert_eq!(classify(&now, &appended).0, Change::Appended);
    // ... but read the other way it is a removal.
    assert_eq!(classify(&appended, &now).0, Change::Breaking);

    // A field inserted before the last one of the root module.
    let inserted_root = root.replacen(last, &format!("{new_field}\n\n        {last}"), 1);
    assert_eq!(
        classify(&now, &now.replacen(root, &inserted_root, 1)).0,
        Change::Breaking
    );

    // A plain struct's field type changed.
    let error = blocks(&now)
        .find(|b| type_name(b) == "PluginError")
        .expect("PluginError's layout");
    let changed = error.replacen("size:", "size:1", 1);
    let (change, culprit) = classify(&now, &now.replacen(error, &changed, 1));
    assert_eq!(change, Change::Breaking);
    assert_eq!(culprit.as_deref(), Some("PluginError"));

    // The versions each change needs.
    assert_eq!(bump("0.3.3", "0.3.3"), Change::None);
    assert_eq!(bump("0.3.3", "0.3.4"), Change::Appended);
    assert_eq!(bump("0.3.3", "0.4.0"), Change::Breaking);
    assert_eq!(bump("0.3.3", "1.0.0"), Change::Breaking);
    assert_eq!(bump("1.2.3", "1.3.0"), Change::Appended);
    assert_eq!(bump("1.2.3", "2.0.0"), Change::Breaking);
    assert_eq!(bump("0.3.3", "0.3.2"), Change::None);
    assert_eq!(needed("0.3.3", Change::Appended), "0.3.4");
    assert_eq!(needed("0.3.3", Change::Breaking), "0.4.0");
    assert_eq!(needed("1.2.3", Change::Breaking), "2.0.0");
}
