//! Manifest parsing: every broken manifest is an error naming the file and line.

use std::path::Path;

use dubchain_host::manifest;
use dubchain_tests::{assert_mentions, manifest_text, PluginDir};

/// Parses `text` as `bad.toml` and checks the error is `bad.toml:<line>: <message…>`.
fn check_error(text: &str, line: Option<usize>, message_contains: &str) {
    let err =
        manifest::parse(Path::new("bad.toml"), text).expect_err("manifest should be rejected");
    assert_eq!(err.line, line, "line of {err}");
    assert!(
        err.message.contains(message_contains),
        "`{}` does not contain `{message_contains}`",
        err.message
    );
    assert!(err.to_string().starts_with("bad.toml"), "{err}");
}

#[test]
fn valid_manifest_reads() {
    let m = manifest::parse(
        Path::new("/p/x.toml"),
        &manifest_text("x", "crypto.sig_verify", ""),
    )
    .unwrap();
    assert_eq!(m.name, "x");
    assert_eq!(
        m.library,
        Path::new("/p").join(manifest::library_file_name("x"))
    );
    assert!(!m.default_enabled);
}

#[test]
fn first_party_manifests_read() {
    let d = manifest::discover(&dubchain_tests::manifests_dir());
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    assert!(d.manifests.len() >= 2);
}

#[test]
fn unknown_key_names_line() {
    let text = manifest_text("x", "crypto.sig_verify", "") + "speed = \"ludicrous\"\n";
    let line = text.lines().count();
    check_error(&text, Some(line), "unknown field `speed`");
}

#[test]
fn malformed_toml_names_line() {
    check_error("name = \"x\"\nversion = \n", Some(2), "");
}

#[test]
fn missing_required_key() {
    check_error(
        "name = \"x\"\nversion = \"0.1.0\"\n",
        Some(1),
        "missing field",
    );
}

#[test]
fn bad_version_and_requirement() {
    let text = manifest_text("x", "s.t", "").replace("version = \"0.1.0\"", "version = \"one\"");
    check_error(&text, Some(2), "not semver");
    let text = manifest_text("x", "s.t", "").replace("api = \"^0.3\"", "api = \"~>1\"");
    check_error(&text, Some(5), "not a version requirement");
    let text = manifest_text(
        "x",
        "s.t",
        "[[depends]]\nname = \"y\"\nversion = \"bogus\"\nreason = \"r\"\n",
    );
    check_error(&text, Some(9), "depends `y`");
}

#[test]
fn bad_values() {
    check_error(&manifest_text("X-1", "s.t", ""), Some(1), "lowercase");
    check_error(
        &manifest_text("x", "s.t", "sha256 = \"abc\"\n"),
        Some(8),
        "64 hex digits",
    );
    check_error(
        &manifest_text(
            "x",
            "s.t",
            "[contract]\nmin_speedup = -1.0\nworkload = \"w\"\n",
        ),
        Some(9),
        "positive",
    );
    let risky = manifest_text("x", "s.t", "").replace("risk = \"low\"", "risk = \"extreme\"");
    check_error(&risky, Some(6), "unknown variant `extreme`");
}

#[test]
fn discovery_keeps_good_manifests_and_reports_bad_ones() {
    let dir = PluginDir::new();
    dir.add(
        "good",
        &manifest_text("good", "crypto.sig_verify", ""),
        None,
    );
    dir.add("broken", "name = [\n", None);
    dir.add(
        "dupe",
        &manifest_text("good", "crypto.sig_verify", ""),
        None,
    );
    let d = manifest::discover(dir.path());
    assert_eq!(
        d.manifests
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["good"]
    );
    assert_eq!(d.errors.len(), 2, "{:?}", d.errors);
    assert!(d.errors.iter().any(|e| e.path.ends_with("broken.toml")));
    assert!(d
        .errors
        .iter()
        .any(|e| e.path.ends_with("good.toml") && e.message.contains("a second manifest")));
}

/// A manifest in the plugin directory cannot load a library from elsewhere unless the
/// configuration allows it: the refusal names the file and the line of `library`, and the
/// other plugins are unaffected.
#[test]
fn a_library_outside_the_plugin_directory_is_refused_unless_allowed() {
    use dubchain_host::session::{Session, SessionOptions};
    let root = tempfile::tempdir().unwrap();
    let plugins = root.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let elsewhere = root.path().join("elsewhere/libx.so");
    for (name, library) in [
        ("up", "../elsewhere/libx".to_owned()),
        ("absolute", elsewhere.display().to_string()),
        ("inside", "inside".to_owned()),
    ] {
        let text = manifest_text(name, "crypto.sig_verify", "").replace(
            &format!("library = \"{name}\""),
            &format!("library = \"{library}\""),
        );
        std::fs::write(plugins.join(format!("{name}.toml")), text).unwrap();
    }
    let options = |config: Option<std::path::PathBuf>| SessionOptions {
        plugin_dir: plugins.clone(),
        config,
        profile: "development".into(),
        state_dir: root.path().join("state"),
        ..Default::default()
    };
    let s = Session::open(options(None)).unwrap();
    let names: Vec<&str> = s.manifests.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["inside"]);
    assert_eq!(s.manifest_errors.len(), 2, "{:?}", s.manifest_errors);
    for e in &s.manifest_errors {
        let text = e.to_string();
        assert_eq!(e.line, Some(4), "{text}");
        assert_mentions(
            &text,
            &[
                "is outside the plugin directory",
                "allow_external_libraries",
            ],
        );
    }
    let config = root.path().join("c.toml");
    std::fs::write(
        &config,
        "[host]\nallow_external_libraries = true\n\n[profiles.development]\nenable = []\n",
    )
    .unwrap();
    let s = Session::open(options(Some(config))).unwrap();
    assert_eq!(s.manifests.len(), 3, "{:?}", s.manifest_errors);
}
