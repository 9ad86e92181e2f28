//! Property-based fuzzing of what users and peers hand the host: manifests, configuration
//! and gates files, stored records and wire payloads. Every property is the same: no panic,
//! an answer for every input, and every refusal naming the input (the file, or the item).
//!
//! Bounded for the test suite: `DUBCHAIN_FUZZ_CASES` cases per property (256 when unset).
//! `cargo xtask fuzz` runs the same properties long and records the result in
//! `docs/fuzzing.md`.

use std::path::Path;

use dubchain_host::{
    config::{Config, GatesFile},
    manifest,
};
use proptest::{collection::vec, prelude::*};

fn config() -> ProptestConfig {
    let cases = std::env::var("DUBCHAIN_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One edit of a byte string: flip a byte, insert one, delete one, or cut the rest.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// `text` with `edits` applied, positions taken modulo the length.
fn mutated(text: &str, edits: &[Edit]) -> String {
    let mut b = text.as_bytes().to_vec();
    for e in edits {
        let at = |i: usize, n: usize| if n == 0 { 0 } else { i % n };
        match *e {
            Edit::Flip(i, x) if !b.is_empty() => {
                let i = at(i, b.len());
                b[i] ^= x;
            }
            Edit::Insert(i, x) => {
                let i = at(i, b.len() + 1);
                b.insert(i, x);
            }
            Edit::Delete(i) if !b.is_empty() => {
                let i = at(i, b.len());
                b.remove(i);
            }
            Edit::Truncate(i) => b.truncate(at(i, b.len() + 1)),
            _ => {}
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// `Ok` for an input that was read; for a refusal, that it names `file`, on one line.
fn named<T, E: std::fmt::Display>(read: Result<T, E>, file: &str) -> Result<(), TestCaseError> {
    if let Err(e) = read {
        let e = e.to_string();
        prop_assert!(e.contains(file) && !e.contains('\n'), "{e}");
    }
    Ok(())
}

const MANIFEST: &str = "name = \"fuzzed\"\nversion = \"0.1.0\"\ndescription = \"x\"\nsubsystem = \"crypto\"\nlibrary = \"fuzzed\"\napi = \"^0.3\"\nrisk = \"low\"\nprovides = [{ slot = \"crypto.sig_verify\", version = 1 }]\n[[depends]]\nname = \"other\"\nversion = \">=0.1\"\nreason = \"r\"\n[ordering]\nabove = [\"a\"]\n[contract]\nmin_speedup = 1.5\nworkload = \"w\"\n";

const CONFIG: &str = "[host]\ninit_timeout_ms = 5000\nstep_timeout_ms = 30000\nallow_external_libraries = false\n[host.breaker]\nfailure_threshold = 3\nbackoff_ms = 1000\nmax_backoff_ms = 60000\n[profiles.p]\nenable = [\"a\", \"b\"]\ndisable = [\"c\"]\n[profiles.p.plugins.a]\nchunk = 32\n";

const GATES: &str = "{\"format\":\"dubchain-gates/1\",\"profile\":\"p\",\"feature_set_id\":\"f\",\"gates\":{\"a\":{\"enabled\":true,\"source\":\"profile\"}}}";

/// Found by the gates property in CI: a flipped byte made a field name hold a line break,
/// and serde quoted it back in its refusal. Kept as a fixed case for every reader.
#[test]
fn a_refusal_that_quotes_a_line_break_or_control_back_stays_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gates.json");
    // The JSON escapes `\n` and `\u0000`, which serde decodes into the field name.
    std::fs::write(&path, GATES.replace("\"enabled\"", r#""\nab\u0000led""#)).unwrap();
    let e = GatesFile::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("gates.json") && e.contains(r"ab\u{0}led") && !e.contains('\n'),
        "{e}"
    );
    let text = MANIFEST.replace("risk = ", "ri\rsk\n = ");
    let e = manifest::parse(Path::new("/fuzz/plugins/m.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(e.contains("m.toml") && !e.contains(['\n', '\r']), "{e}");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_mutated_manifest_is_read_or_refused_naming_its_file(edits in vec(edit(), 0..10)) {
        let text = mutated(MANIFEST, &edits);
        named(manifest::parse(Path::new("/fuzz/plugins/fuzzed.toml"), &text), "fuzzed.toml")?;
    }

    #[test]
    fn arbitrary_text_as_a_manifest_is_refused_naming_its_file(text in "\\PC{0,300}") {
        named(manifest::parse(Path::new("/fuzz/plugins/any.toml"), &text), "any.toml")?;
    }

    #[test]
    fn a_mutated_configuration_is_read_or_refused_naming_its_file(edits in vec(edit(), 0..10)) {
        named(Config::parse(Path::new("/fuzz/c.toml"), &mutated(CONFIG, &edits)), "c.toml")?;
    }

    #[test]
    fn a_mutated_gates_file_is_read_or_refused_naming_its_file(edits in vec(edit(), 0..10)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gates.json");
        std::fs::write(&path, mutated(GATES, &edits)).unwrap();
        named(GatesFile::read(&path), "gates.json")?;
    }

    #[test]
    fn stored_records_of_any_bytes_get_one_answer_each(
        values in vec(vec(any::<u8>(), 0..200), 0..12),
        json_prefix in any::<bool>(),
    ) {
        // Half the cases look like records (a JSON object or the binary codec's magic) so
        // the decoders get past their first byte.
        let values: Vec<Vec<u8>> = values
            .into_iter()
            .map(|v| match (json_prefix, v.first()) {
                (true, Some(b)) if b % 2 == 0 => [b"{\"Block\":".as_slice(), &v].concat(),
                (true, Some(_)) => [b"DCB1".as_slice(), &v].concat(),
                _ => v,
            })
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(dubchain_host::baseline::decode_records(&refs).len(), refs.len());
        prop_assert_eq!(binary_host().slots.record_codec.decode(&refs).len(), refs.len());
    }

    #[test]
    fn wire_payloads_of_any_bytes_get_one_answer_each(
        payloads in vec((0u8..4, vec(any::<u8>(), 0..300)), 0..12),
    ) {
        let inbound: Vec<dubchain_node::net::Inbound> = payloads
            .into_iter()
            .enumerate()
            .map(|(peer, (tag, body))| (peer, [&[tag][..], &body].concat()))
            .collect();
        let slots = dubchain_host::slot::Slots::default();
        let out = dubchain_node::net::decode(&slots, &inbound);
        prop_assert_eq!(out.len(), inbound.len());
        for ((peer, _), (got, _)) in inbound.iter().zip(&out) {
            prop_assert_eq!(peer, got);
        }
    }
}

/// A host with the first-party binary codec loaded, once for all cases.
fn binary_host() -> &'static dubchain_host::Host {
    static HOST: std::sync::OnceLock<(dubchain_host::Host, dubchain_tests::PluginDir)> =
        std::sync::OnceLock::new();
    &HOST
        .get_or_init(|| dubchain_tests::host_with_first_party(&["storage_binary_formats"], ""))
        .0
}
