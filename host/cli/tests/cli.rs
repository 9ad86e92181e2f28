//! The `dubchain-perf` command line, run as a user runs it, on plugin directories of
//! manifests (resolution needs no libraries; loading failures show as `failed`).

use std::{
    path::Path,
    process::{Command, Output},
};

/// Asserts that `text` mentions every one of `phrases`, naming the first it lacks.
#[track_caller]
fn assert_mentions(text: &str, phrases: &[&str]) {
    for p in phrases {
        assert!(text.contains(p), "{p:?} is missing from:\n{text}");
    }
}

/// The address a node's output says its monitor is on (`monitor on http://ADDR ...`); the
/// lines up to it are read.
fn monitor_address(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> String {
    lines
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("monitor on http://")
                .map(|r| r.split_whitespace().next().unwrap().to_owned())
        })
        .expect("the node says where its monitor is")
}

fn manifest(name: &str, slot: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nsubsystem = \"crypto\"\nlibrary = \"{name}\"\napi = \"^0.3\"\nrisk = \"low\"\nprovides = [{{ slot = \"{slot}\", version = 1 }}]\n{extra}"
    )
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(manifests: &[(&str, String)]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        for (name, text) in manifests {
            std::fs::write(
                dir.path().join("plugins").join(format!("{name}.toml")),
                text,
            )
            .unwrap();
        }
        Env { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, file: &str, text: &str) -> std::path::PathBuf {
        let p = self.path().join(file);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// [`Env::run`] with `--config c.toml --profile PROFILE` before `args`.
    fn in_profile(&self, profile: &str, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["--config", "c.toml", "--profile", profile];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `dubchain-perf --plugin-dir plugins --state-dir state` in this directory, with no
    /// selection from the environment.
    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dubchain-perf"));
        cmd.current_dir(self.path())
            .env_remove("DUBCHAIN_PROFILE")
            .env_remove("DUBCHAIN_CONFIG")
            .env_remove("DUBCHAIN_PLUGIN_DIR")
            .args(["--plugin-dir", "plugins", "--state-dir", "state"]);
        cmd
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out: Output = self.command().args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

const CONFIG: &str = "[profiles.development]\nenable = []\n\n[profiles.production]\nenable = [\"top\"]\n\n[profiles.broken]\nenable = [\"top\", \"rival\"]\n";

fn graph() -> Env {
    Env::new(&[
        ("top", manifest("top", "crypto.sig_verify", "[[depends]]\nname = \"base\"\nversion = \"^0.1\"\nreason = \"reuses its key cache\"\n")),
        ("base", manifest("base", "crypto.sig_verify", "")),
        ("rival", manifest("rival", "crypto.sig_verify", "[[conflicts]]\nname = \"base\"\nreason = \"both install a key cache\"\n")),
        ("codec", manifest("codec", "storage.record_codec", "")),
    ])
}

/// [`graph`] with [`CONFIG`]'s profiles in `c.toml`.
fn graph_with_profiles() -> Env {
    let env = graph();
    env.write("c.toml", CONFIG);
    env
}

#[test]
fn help_explains_every_command() {
    let (ok, out, _) = graph().run(&["--help"]);
    assert!(ok);
    assert_mentions(&out, &["plugins", "gates", "run"]);
    let (ok, out, _) = graph().run(&["plugins", "--help"]);
    assert!(
        ok && out.contains("why") && out.contains("plan") && out.contains("list"),
        "{out}"
    );
}

#[test]
fn list_shows_every_plugin_and_state() {
    let env = graph_with_profiles();
    let (ok, out, _) = env.in_profile("production", &["plugins", "list", "--load"]);
    assert!(
        !ok,
        "plugins failed to load, which the exit status says: {out}"
    );
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_owned()
    };
    assert!(line("top").contains("base ^0.1"), "{out}");
    assert!(
        line("top").trim_end().ends_with("failed"),
        "no library, so loading failed: {out}"
    );
    assert!(
        line("rival").contains("base") && line("rival").trim_end().ends_with("disabled"),
        "{out}"
    );
    assert!(line("codec").contains("storage.record_codec@1"), "{out}");
    assert_mentions(&out, &["base: failed: plugin `base`: library"]);
    assert_mentions(
        &out,
        &["top: failed: plugin `top`: depends on `base`, which failed to load"],
    );
}

#[test]
fn plan_reports_every_problem_and_fails() {
    let env = Env::new(&[
        (
            "a",
            manifest(
                "a",
                "crypto.sig_verify",
                "[[depends]]\nname = \"b\"\nreason = \"x\"\n",
            ),
        ),
        (
            "b",
            manifest(
                "b",
                "crypto.sig_verify",
                "[[depends]]\nname = \"a\"\nreason = \"y\"\n",
            ),
        ),
        (
            "c",
            manifest(
                "c",
                "crypto.sig_verify",
                "[[conflicts]]\nname = \"a\"\nreason = \"they fight\"\n",
            ),
        ),
    ]);
    let (ok, out, _) = env.run(&["--enable", "a", "--enable", "c", "plugins", "plan"]);
    assert!(!ok, "exit status is non-zero");
    assert_mentions(
        &out,
        &[
            "2 problem(s)",
            "`c` conflicts with `a`: they fight",
            "dependency cycle: a -> b -> a",
        ],
    );
}

#[test]
fn plan_shows_stacks_and_succeeds() {
    let env = graph_with_profiles();
    let (ok, out, _) = env.in_profile("production", &["plugins", "plan"]);
    assert!(ok, "{out}");
    assert_mentions(
        &out,
        &["crypto.sig_verify (layered): baseline > base > top"],
    );
    assert_mentions(
        &out,
        &["storage.record_codec (exclusive): baseline", "no problems"],
    );
}

#[test]
fn profile_comes_from_the_environment() {
    let env = graph_with_profiles();
    let out = Command::new(env!("CARGO_BIN_EXE_dubchain-perf"))
        .current_dir(env.path())
        .env("DUBCHAIN_PROFILE", "production")
        .env("DUBCHAIN_CONFIG", "c.toml")
        .args([
            "--plugin-dir",
            "plugins",
            "--state-dir",
            "state",
            "plugins",
            "plan",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert_mentions(
        &out,
        &[
            "profile: production (c.toml)",
            "top: enabled by profile `production` of c.toml",
        ],
    );
}

#[test]
fn why_gives_the_chain_of_reasons() {
    let env = graph_with_profiles();
    let (ok, out, _) = env.in_profile("production", &["plugins", "why", "base"]);
    assert!(ok);
    assert!(out.starts_with("base is ON"), "{out}");
    assert_mentions(
        &out,
        &["- required by `top` (depends ^0.1: reuses its key cache)"],
    );
    assert!(
        out.contains("  - enabled by profile `production` of c.toml"),
        "the reason for top, indented: {out}"
    );

    let (_, out, _) = env.in_profile(
        "production",
        &["--disable", "codec", "plugins", "why", "codec"],
    );
    assert!(
        out.starts_with("codec is OFF") && out.contains("disabled by the command line"),
        "{out}"
    );
    let (_, out, _) = env.run(&["plugins", "why", "rival"]);
    assert_mentions(&out, &["not requested"]);

    let (_, out, _) = env.in_profile("broken", &["plugins", "why", "rival"]);
    assert_mentions(
        &out,
        &["problems involving rival", "both install a key cache"],
    );

    let (ok, _, err) = env.run(&["plugins", "why", "nobody"]);
    assert!(
        !ok && err.contains("no plugin named `nobody`") && err.contains("found: "),
        "{err}"
    );
    assert!(!err.contains("did you mean"), "{err}");
    let (ok, _, err) = env.run(&["plugins", "why", "rivl"]);
    assert!(!ok && err.contains("(did you mean `rival`?)"), "{err}");
}

#[test]
fn gates_export_then_import_round_trips() {
    let env = graph_with_profiles();
    let (ok, out, err) = env.in_profile("production", &["gates", "export", "gates.json"]);
    assert!(ok, "{out}{err}");
    let exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path().join("gates.json")).unwrap()).unwrap();
    assert_eq!(exported["format"], "dubchain-gates/1");
    assert_eq!(exported["gates"]["top"]["enabled"], true);
    assert_eq!(exported["gates"]["base"]["enabled"], true);
    assert_eq!(exported["gates"]["rival"]["enabled"], false);

    // Imported into the development profile, the gates make the same plan.
    let (ok, out, err) = env.run(&["gates", "import", "gates.json"]);
    assert!(ok, "{out}{err}");
    let (_, plan, _) = env.run(&["plugins", "plan"]);
    assert_mentions(
        &plan,
        &["baseline > base > top", "imported gates: state/gates.json"],
    );
    assert!(
        plan.contains(&format!(
            "feature set: {}",
            exported["feature_set_id"].as_str().unwrap()
        )),
        "{plan}"
    );
    let (ok, _, _) = env.run(&["gates", "reset"]);
    assert!(ok);
    let (_, plan, _) = env.run(&["plugins", "plan"]);
    assert_mentions(&plan, &["crypto.sig_verify (layered): baseline\n"]);
}

/// Gates that cannot be used are refused input (exit 2) with what to do, and a gates file
/// that cannot be written leaves nothing behind.
#[test]
fn unusable_gates_are_refused_and_leave_nothing_behind() {
    let env = graph();
    let code = |args: &[&str]| {
        let out = env.command().args(args).output().unwrap();
        (out.status.code(), String::from_utf8(out.stderr).unwrap())
    };
    env.write("garbage.json", "hello\n");
    let (status, err) = code(&["gates", "import", "garbage.json"]);
    assert_eq!(status, Some(2), "{err}");
    assert_mentions(&err, &["`dubchain-perf gates export FILE`"]);

    // A stored gates file that went bad: every command names it and how to remove it.
    std::fs::create_dir_all(env.path().join("state")).unwrap();
    env.write("state/gates.json", "{\"format\": \"dubchain-gates/1\"");
    let (status, err) = code(&["plugins", "plan"]);
    assert_eq!(status, Some(2), "{err}");
    assert_mentions(
        &err,
        &["state/gates.json:1:", "`dubchain-perf gates reset`"],
    );
    let (status, _) = code(&["gates", "reset"]);
    assert_eq!(status, Some(0));

    std::fs::create_dir_all(env.path().join("out")).unwrap();
    let (status, err) = code(&["gates", "export", "out"]);
    assert_eq!(status, Some(1), "{err}");
    assert_mentions(&err, &["out: is a directory"]);
    let litter: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(litter.is_empty(), "{litter:?}");
}

#[test]
fn importing_gates_that_conflict_changes_nothing() {
    let env = graph();
    let gates = r#"{"format":"dubchain-gates/1","profile":"x","feature_set_id":"0","gates":{
        "rival":{"enabled":true,"version":"0.1.0"},"base":{"enabled":true,"version":"0.1.0"}}}"#;
    env.write("bad-gates.json", gates);
    let out = env
        .command()
        .args(["gates", "import", "bad-gates.json"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_mentions(
        &err,
        &["`rival` conflicts with `base`", "nothing was imported"],
    );
    assert!(!env.path().join("state/gates.json").exists());
}

#[test]
fn bad_files_are_named_with_their_line() {
    let env = graph();
    env.write(
        "c.toml",
        "[profiles.development]\nenable = [\"top\"]\nturbo = true\n",
    );
    let (ok, _, err) = env.run(&["--config", "c.toml", "plugins", "plan"]);
    assert!(!ok);
    assert_mentions(&err, &["c.toml:3: unknown field `turbo`"]);

    let (ok, _, err) = env.run(&["--profile", "staging", "plugins", "plan"]);
    assert!(
        !ok && err.contains("no profile `staging`") && err.contains("production"),
        "{err}"
    );
    // A configuration without profiles: the one asked for, and how to add it.
    env.write("bare.toml", "[host]\nrequire_sha256 = false\n");
    let (ok, _, err) = env.run(&["--config", "bare.toml", "plugins", "plan"]);
    assert!(
        !ok && err.contains("bare.toml: no profile `development`: the file defines none")
            && err.contains("[profiles.development]"),
        "{err}"
    );

    env.write(
        "g.json",
        "{\"format\": \"dubchain-gates/1\",\n \"oops\": 1}",
    );
    let (ok, _, err) = env.run(&["gates", "import", "g.json"]);
    assert!(!ok && err.contains("g.json:2: not a gates file"), "{err}");

    // A broken manifest is reported with file and line; the rest still resolve.
    std::fs::write(
        env.path().join("plugins/zzz.toml"),
        "name = \"zzz\"\nversion = 1.0\n",
    )
    .unwrap();
    let (ok, out, err) = env.run(&["--enable", "top", "plugins", "plan"]);
    assert!(!ok, "a broken manifest makes `plan` fail");
    assert_mentions(&err, &["zzz.toml:2:", "the other plugins are unaffected"]);
    assert_mentions(&out, &["baseline > base > top"]);
    let (ok, out, err) = env.run(&["plugins", "list"]);
    assert!(!ok, "a broken manifest makes `list` fail too");
    assert_mentions(
        &err,
        &["zzz.toml:2:", "move it out of the plugin directory"],
    );
    assert!(out.lines().any(|l| l.starts_with("top ")), "{out}");
}

/// Workload values that the generator cannot use are refused by the argument parser, with
/// the flag, the value and what is expected, and no backtrace.
#[test]
fn unusable_workload_values_are_refused_without_a_panic() {
    let env = graph();
    for (flag, value, expected) in [
        ("--invalid-share", "nan", "expected a number from 0 to 1"),
        ("--contract-share", "1.5", "expected a number from 0 to 1"),
        ("--zipf", "inf", "expected a finite number, 0 or more"),
        ("--accounts", "0", "expected a whole number, 1 or more"),
        ("--validators", "0", "expected a whole number, 1 or more"),
        // Blocks of no transactions: every ratio of `run` would be of nothing.
        ("--txs-per-block", "0", "expected a whole number, 1 or more"),
        // A negative number reaches the value's own check, not clap's "unexpected argument".
        ("--zipf", "-1", "expected a finite number, 0 or more"),
        ("--accounts", "-5", "expected a whole number, 1 or more"),
        ("--seed", "-1", "invalid digit"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_dubchain-perf"))
            .current_dir(env.path())
            .args(["--plugin-dir", "plugins", "--state-dir", "state"])
            .args(["chain", "produce", "--data-dir", "d", "--blocks", "1"])
            .args([flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(value) && err.contains(expected),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(!env.path().join("d").exists(), "nothing ran");
    }
    // A commit race of no committers, or of no commits, would run nothing and say so with
    // exit 0.
    for flag in ["--committers", "--commits"] {
        let out = Command::new(env!("CARGO_BIN_EXE_dubchain-perf"))
            .current_dir(env.path())
            .args(["--plugin-dir", "plugins", "--state-dir", "state"])
            .args(["chain", "commit-race", "--data-dir", "d", flag, "0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(
            err.contains(flag) && err.contains("expected a whole number, 1 or more"),
            "{err}"
        );
        assert!(!env.path().join("d").exists(), "nothing ran");
    }
}

/// Measurement settings that would measure nothing, or make a check that cannot fail, are
/// refused by the argument parser rather than replaced or run: empty workloads, fewer than
/// two rounds (no interval), a `NaN` regression threshold (no slowdown would pass it).
#[test]
fn measurement_settings_that_measure_nothing_are_refused() {
    let env = graph();
    for (command, flag, value, expected) in [
        (
            "bench",
            "--rounds",
            "1",
            "expected a whole number, 2 or more",
        ),
        ("run", "--rounds", "0", "expected a whole number, 2 or more"),
        (
            "bench",
            "--signatures",
            "0",
            "expected a whole number, 1 or more",
        ),
        (
            "bench",
            "--state-leaves",
            "0",
            "expected a whole number, 1 or more",
        ),
        (
            "bench",
            "--tally-heights",
            "0",
            "expected a whole number, 1 or more",
        ),
        (
            "run",
            "--record-blocks",
            "0",
            "expected a whole number, 1 or more",
        ),
        (
            "bench",
            "--threshold",
            "nan",
            "expected a finite number, 0 or more",
        ),
        (
            "bench",
            "--instr-iterations",
            "0",
            "expected a whole number, 1 or more",
        ),
        (
            "profile",
            "--min-share",
            "2",
            "expected a number from 0 to 1",
        ),
        (
            "profile",
            "--frequency",
            "0",
            "expected a whole number of Hz from 1 to 1000",
        ),
        // Above 1 MHz pprof's timer interval rounds to 0 µs and it takes no sample at all.
        (
            "profile",
            "--frequency",
            "2000000",
            "expected a whole number of Hz from 1 to 1000",
        ),
        // A saved run's name is a file under <out>/baselines/, and nowhere else.
        (
            "bench",
            "--save-baseline",
            "../../escaped",
            "expected a name of letters, digits",
        ),
        (
            "bench",
            "--baseline",
            "",
            "expected a name of letters, digits",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_dubchain-perf"))
            .current_dir(env.path())
            .args(["--plugin-dir", "plugins", "--state-dir", "state"])
            .args([command, flag, value, "--out", "out"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command} {flag} {value}: {err}"
        );
        assert!(
            err.contains(flag) && err.contains(value) && err.contains(expected),
            "{err}"
        );
        assert!(!env.path().join("out").exists(), "nothing ran");
    }
}

/// A plugin directory that cannot be read is one line naming it and what follows (every slot
/// on its baseline), and the command goes on without plugins.
#[test]
fn a_missing_plugin_directory_is_one_line_and_the_baselines_serve() {
    let env = graph();
    let out = Command::new(env!("CARGO_BIN_EXE_dubchain-perf"))
        .current_dir(env.path())
        .env_remove("DUBCHAIN_PLUGIN_DIR")
        .args([
            "--plugin-dir",
            "typo",
            "--state-dir",
            "state",
            "plugins",
            "list",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("warning: typo: cannot read plugin directory")
            && err.contains("every slot runs on its baseline")
            && !err.contains("skipped"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&out.stdout);
    assert_mentions(&out, &["build them with `cargo xtask plugins`"]);
    // A file given as the directory: its error line, and no advice to build plugins.
    std::fs::write(env.path().join("afile"), "x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dubchain-perf"))
        .current_dir(env.path())
        .env_remove("DUBCHAIN_PLUGIN_DIR")
        .args(["--plugin-dir", "afile", "--state-dir", "state"])
        .args(["plugins", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_mentions(&err, &["afile: cannot read plugin directory"]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(!out.contains("build them"), "{out}");
}

/// `chain produce` pointed at a file, not a directory: one line naming the flag and the
/// path, and what to give instead; the file is left as it was.
#[test]
fn a_data_dir_that_is_a_file_is_refused_in_one_line() {
    let env = graph();
    std::fs::write(env.path().join("afile"), "mine").unwrap();
    let (ok, _, err) = env.run(&["chain", "produce", "--blocks", "1", "--data-dir", "afile"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_mentions(&err, &["--data-dir afile", "give a directory"]);
    assert_eq!(
        std::fs::read_to_string(env.path().join("afile")).unwrap(),
        "mine"
    );
}

/// A chain resumed with workload flags that give another genesis (its accounts are not
/// the ones the workload signs for) is refused in one line that names the directory, and
/// left as it was; with its own flags it goes on.
#[test]
fn a_chain_resumed_with_other_workload_flags_is_refused() {
    let env = graph();
    let produce = |blocks: &str, accounts: &str| {
        env.run(&[
            "chain",
            "produce",
            "--data-dir",
            "data",
            "--blocks",
            blocks,
            "--txs-per-block",
            "8",
            "--accounts",
            accounts,
        ])
    };
    let (ok, out, err) = produce("2", "40");
    assert!(ok, "{err}");
    let head = out.lines().last().unwrap().to_owned();
    for args in [
        &[
            "chain",
            "produce",
            "--data-dir",
            "data",
            "--blocks",
            "3",
            "--accounts",
            "41",
        ][..],
        &[
            "chain",
            "check",
            "--data-dir",
            "data",
            "--seed",
            "7",
            "--accounts",
            "40",
        ],
    ] {
        let (ok, _, err) = env.run(args);
        assert!(!ok, "{args:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_mentions(
            &err,
            &[
                "data: its chain began at genesis",
                "they are not the flags it was made with",
            ],
        );
    }
    let (ok, out, err) = env.run(&["chain", "check", "--data-dir", "data", "--accounts", "40"]);
    assert!(ok, "{err}");
    assert!(head.contains(out.lines().next().unwrap()), "{head}\n{out}");
    let (ok, _, err) = produce("3", "40");
    assert!(ok, "{err}");
}

/// A node whose place among its peers does not fit the validators, or whose monitor
/// configuration cannot be read or is not TOML, is refused in one line before anything is
/// created or bound: no data directory, no monitor.
#[test]
fn a_node_whose_placement_or_monitor_configuration_cannot_be_used_is_refused_before_it_starts() {
    let env = graph();
    env.write("not-toml.toml", "[[rule]\nname = 1\n");
    for (args, says) in [
        (
            &["--monitor-config", "nosuch.toml"][..],
            "nosuch.toml: No such file or directory (os error 2); give a readable --monitor-config",
        ),
        (
            &["--monitor-config", "not-toml.toml"][..],
            "not-toml.toml: line 1:",
        ),
        (
            &[
                "--validators",
                "2",
                "--index",
                "5",
                "--peer",
                "1@127.0.0.1:9",
            ][..],
            "validator index 5 with peers [1] does not fit 2 validators",
        ),
        (
            &["--validators", "3", "--peer", "1@127.0.0.1:9"],
            "--validators 3 with 1 --peer",
        ),
        (
            &[
                "--validators",
                "3",
                "--peer",
                "1@127.0.0.1:9",
                "--peer",
                "1@127.0.0.1:10",
            ],
            "validator index 0 with peers [1, 1] does not fit 3 validators",
        ),
    ] {
        let (ok, out, err) = env.run(
            &[
                &["node", "--data-dir", "n", "--monitor", "127.0.0.1:0"][..],
                args,
            ]
            .concat(),
        );
        assert!(!ok, "{args:?} was accepted: {out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!out.contains("monitor on"), "{out}");
        assert!(!env.path().join("n").exists(), "no data directory was made");
    }
    // Alone, `--index` and `--listen` would be ignored: the parser asks for the peers.
    for args in [&["--index", "3"][..], &["--listen", "127.0.0.1:7"]] {
        let (ok, out, err) = env.run(
            &[
                &["node", "--data-dir", "n", "--monitor", "127.0.0.1:0"][..],
                args,
            ]
            .concat(),
        );
        assert!(!ok, "{args:?} was accepted: {out}");
        assert_mentions(&err, &["--peer <INDEX@ADDR>"]);
        assert!(!env.path().join("n").exists(), "no data directory was made");
    }
}

/// `chain check` reads: pointed at a directory without a store it says so, and creates
/// nothing there.
#[test]
fn chain_check_of_a_missing_store_creates_nothing() {
    let env = graph();
    let (ok, _, err) = env.run(&["chain", "check", "--data-dir", "typo"]);
    assert!(!ok);
    assert_mentions(&err, &["typo", "the directory does not exist"]);
    assert!(!env.path().join("typo").exists(), "no store was created");
}

/// A configuration name that matches no plugin (a settings table of the profile, an
/// `isolate` entry) would do nothing without a word; it is warned of, with the file.
#[test]
fn configuration_names_that_match_no_plugin_are_warned_of() {
    let env = graph();
    env.write(
        "c.toml",
        "[host]\nisolate = [\"topp\", \"top\"]\n\n[profiles.development]\nenable = [\"top\"]\n\n[profiles.development.plugins.tpo]\nchunk = 8\n\n[profiles.development.plugins.top]\nchunk = 8\n",
    );
    let (ok, _, err) = env.in_profile("development", &["plugins", "plan"]);
    assert!(ok, "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 2, "{err}");
    assert!(
        warnings[0].contains("c.toml: [profiles.development.plugins.tpo] names no plugin"),
        "{err}"
    );
    assert!(
        warnings[1]
            .contains("c.toml: [host] isolate names `topp`, which is not in the plugin directory"),
        "{err}"
    );
}

/// The main job compares only what it was asked to: a plugin asked for that the plugin
/// directory does not have (a misspelt name) refuses the run with exit code 2, where other
/// commands warn and keep the baseline; `--allow-missing` runs and names it as missing.
#[test]
fn run_refuses_a_plugin_asked_for_that_is_not_in_the_directory() {
    let env = graph();
    let out = env
        .command()
        .args(["--enable", "topp", "run", "--blocks", "1", "--runs", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "nothing was run: topp (did you mean `top`?) is asked for but not in the plugin directory plugins"
        )
            && err.contains("--allow-missing"),
        "{err}"
    );
    let (_, plan, _) = env.run(&["--enable", "topp", "plugins", "plan"]);
    assert_mentions(&plan, &["no problems"]);
}

/// A configuration that cannot be used is refused input: exit code 2, and one line on
/// standard error that names the file and line and says what is wrong.
#[test]
fn a_broken_configuration_is_refused_input_with_exit_code_2() {
    let env = graph();
    env.write("c.toml", "[host]\ninit_timeout_ms = \"soon\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_dubchain-perf"))
        .current_dir(env.path())
        .env_remove("DUBCHAIN_CONFIG")
        .args(["--plugin-dir", "plugins", "--state-dir", "state"])
        .args(["--config", "c.toml", "plugins", "plan"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(line.contains("c.toml:2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let help = Command::new(env!("CARGO_BIN_EXE_dubchain-perf"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert_mentions(&help, &["Exit codes: 0 ok; 1 failure"]);
}

/// Every refusal a user can reach with a bad argument, file or directory: no panic, exit
/// code 2 (refused input, as `--help` says), and one line on standard error (`error: ...`)
/// that names the value and says nothing twice. A sweep
/// over the commands, so a new error path that prints a backtrace or several lines fails
/// here. (A requested plugin that is not in the plugin directory is a warning, not a
/// refusal: its slots keep the baseline; `an_absent_plugin_is_a_warning_and_the_rest_applies`.)
#[test]
fn every_refusal_is_one_line_that_names_the_input() {
    let env = graph();
    env.write("not-a-dir", "a file where a directory is expected\n");
    env.write("garbage.json", "hello\n");
    env.write("budgets.toml", "[[budget]]\nmetric = 7\n");
    std::fs::create_dir(env.path().join("mine")).unwrap();
    env.write("mine/keep.txt", "a file of one's own\n");
    let (ok, _, err) = env.run(&["gates", "export", "g.json"]);
    assert!(ok, "{err}");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--config", "nosuch.toml", "plugins", "plan"],
            "nosuch.toml",
        ),
        (&["plugins", "why", "nosuch"], "nosuch"),
        (
            &["--enable", "base", "--disable", "base", "plugins", "plan"],
            "--enable base and --disable base both given",
        ),
        (&["gates", "import", "nosuch.json"], "nosuch.json"),
        (&["gates", "import", "garbage.json"], "garbage.json"),
        (&["gates", "export", "not-a-dir/g.json"], "not-a-dir"),
        // A mistyped directory is not made, as a shell redirection would not.
        (
            &["gates", "export", "nosuch-dir/g.json"],
            "there is no directory nosuch-dir",
        ),
        (
            &["chain", "check", "--data-dir", "not-a-dir"],
            "not a directory",
        ),
        (
            &[
                "chain",
                "produce",
                "--blocks",
                "1",
                "--data-dir",
                "not-a-dir",
            ],
            "not-a-dir",
        ),
        (
            &[
                "chain",
                "migrate",
                "--data-dir",
                "nosuch-dir",
                "--codec",
                "json",
            ],
            "nosuch-dir",
        ),
        (
            &["chain", "migrate", "--data-dir", "d", "--codec", "bogus"],
            "--codec bogus",
        ),
        (
            &["chain", "commit-race", "--data-dir", "not-a-dir"],
            "--data-dir not-a-dir: not a directory",
        ),
        (
            &["run", "--data-dir", "not-a-dir"],
            "data directory not-a-dir: cannot read it",
        ),
        // Its stores are deleted after the run: a directory of one's own is not used.
        (
            &["run", "--data-dir", "mine"],
            "holds keep.txt which the benchmark did not make",
        ),
        // Refused before its monitor binds a port.
        (
            &["node", "--data-dir", "not-a-dir"],
            "data directory not-a-dir: cannot create it",
        ),
        (
            &["plugin", "new", "Bad Name", "--slot", "crypto.sig_verify"],
            "Bad Name",
        ),
        (
            &["plugin", "new", "good_name", "--slot", "no.such"],
            "no.such",
        ),
        (&["plugin", "verify", "nosuch-plugin"], "nosuch-plugin"),
        (
            &["plugin", "verify", "plugins"],
            "several manifests (base.toml,",
        ),
        (
            &["plugin", "verify", "garbage.json"],
            "not a plugin manifest?",
        ),
        (
            &[
                "bench",
                "--no-micro",
                "--no-system",
                "--budgets",
                "nosuch.toml",
            ],
            "nosuch.toml",
        ),
        (
            &[
                "bench",
                "--no-micro",
                "--no-system",
                "--budgets",
                "budgets.toml",
            ],
            "budgets.toml",
        ),
        (
            &[
                "bench",
                "--no-micro",
                "--no-system",
                "--baseline",
                "nosuch-run",
            ],
            "nosuch-run",
        ),
        (
            &[
                "bench",
                "--no-micro",
                "--no-system",
                "--out",
                "not-a-dir/out",
            ],
            "not-a-dir",
        ),
        (
            &["profile", "--workload", "nosuch-workload"],
            "nosuch-workload",
        ),
        (&["profile", "--side", "nosuch-side"], "nosuch-side"),
        (
            &["--state-dir", "not-a-dir", "gates", "import", "g.json"],
            "not-a-dir",
        ),
    ];
    let mut bad = Vec::new();
    for (args, named) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_dubchain-perf"))
            .current_dir(env.path())
            .env_remove("DUBCHAIN_PROFILE")
            .env_remove("DUBCHAIN_CONFIG")
            .env_remove("DUBCHAIN_PLUGIN_DIR")
            .args(["--plugin-dir", "plugins"])
            .args(
                ["--state-dir", "state"]
                    .iter()
                    .filter(|_| !args.contains(&"--state-dir")),
            )
            .args(*args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let one_line = lines.len() == 1 && lines[0].starts_with("error:");
        // No part said twice (an error and its source both printing the same message).
        let parts: Vec<&str> = err.trim().split(": ").filter(|p| p.len() > 12).collect();
        let repeated = parts
            .iter()
            .enumerate()
            .any(|(i, p)| parts[i + 1..].contains(p));
        let code = out.status.code();
        if !(matches!(code, Some(2)) && one_line && !repeated && err.contains(named)) {
            bad.push(format!("{args:?}: exit {code:?}, stderr:\n{err}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(!env.path().join("nosuch-dir").exists());
    assert!(env.path().join("mine/keep.txt").exists());
}

/// `GET path` from a server on loopback: the body.
fn get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// The value of an unlabelled metric in a Prometheus text body.
fn gauge(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn a_node_serves_its_monitor_stops_cleanly_on_sigterm_and_resumes() {
    use std::io::BufRead as _;
    let env = graph();
    let start = |until: Option<&str>| {
        let mut cmd = env.command();
        cmd.args(["node", "--data-dir", "data", "--monitor", "127.0.0.1:0"])
            .args([
                "--block-time-ms",
                "20",
                "--txs-per-block",
                "16",
                "--accounts",
                "50",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if let Some(h) = until {
            cmd.args(["--until-height", h]);
        }
        cmd.spawn().unwrap()
    };
    let mut node = start(None);
    let mut lines = std::io::BufReader::new(node.stdout.take().unwrap()).lines();
    let addr = monitor_address(&mut lines);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let head = loop {
        let h = gauge(&get(&addr, "/metrics"), "dubchain_head_height").unwrap_or(0.0);
        if h >= 5.0 {
            break h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node made no blocks"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(std::fs::metadata(env.path().join("data/monitor.token")).is_ok());
    // SAFETY: kill(2) on our own child's pid, which has not been waited for.
    let sent = unsafe { libc::kill(node.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let status = node.wait().unwrap();
    assert!(status.success(), "SIGTERM ends the node with 0: {status:?}");
    let last: Vec<String> = lines.map_while(Result::ok).collect();
    let stopped = last
        .iter()
        .find_map(|l| l.strip_prefix("stopped at head "))
        .expect("the node reports where it stopped");
    let stopped: u64 = stopped.split_whitespace().next().unwrap().parse().unwrap();
    assert!(stopped as f64 >= head);

    // Restarted on the same data directory, it goes on from its head.
    let target = (stopped + 3).to_string();
    let out = start(Some(&target)).wait_with_output().unwrap();
    assert!(out.status.success());
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains(&format!("stopped at head {target} ")), "{out}");
    // Its start is said once, as a load, not as a reload of something already running.
    assert!(
        out.lines().filter(|l| l.starts_with("loaded ")).count() == 1 && !out.contains("reload ("),
        "{out}"
    );
    let (ok, check, _) = env.run(&[
        "chain",
        "check",
        "--data-dir",
        "data",
        "--txs-per-block",
        "16",
        "--accounts",
        "50",
    ]);
    assert!(ok && check.contains("consistent"), "{check}");
}

/// The line `stopped at head H HASH` of a node's output: height and hash.
fn stopped_head(out: &str) -> Option<(u64, String)> {
    out.lines().find_map(|l| {
        let mut w = l.strip_prefix("stopped at head ")?.split_whitespace();
        Some((
            w.next()?.parse().ok()?,
            w.next()?.trim_end_matches(';').to_owned(),
        ))
    })
}

/// `cluster` in `cluster/` with `[nodes, until_height, txs_per_block, accounts, timeout]`.
fn cluster(env: &Env, [nodes, until, txs, accounts, timeout]: [u64; 5]) -> (bool, String, String) {
    let args = format!(
        "cluster --nodes {nodes} --until-height {until} --data-dir cluster \
         --txs-per-block {txs} --accounts {accounts} --timeout {timeout}"
    );
    env.run(&args.split(' ').collect::<Vec<_>>())
}

#[test]
fn cluster_runs_four_node_processes_to_the_same_head() {
    let (ok, out, err) = cluster(&graph(), [4, 8, 16, 50, 120]);
    assert!(ok, "{out}\n{err}");
    assert_mentions(&out, &["every node stopped at the same head"]);
    for i in 0..4 {
        assert!(out.contains(&format!("node {i}: head 8 ")), "{out}");
    }
    // Each node its own process, on the baselines' network: a reader and a writer thread
    // per peer.
    assert_eq!(out.matches(", 6 peer threads;").count(), 4, "{out}");
    // Where each node's monitor listened, as the nodes said.
    for i in 0..4 {
        assert!(
            out.contains(&format!("node {i}: monitor on http://127.0.0.1:")),
            "{out}"
        );
    }
}

/// A cluster that cannot finish in time fails with one line saying so, and leaves no node
/// process behind.
#[test]
fn a_cluster_past_its_timeout_stops_every_node() {
    let env = graph();
    let (ok, out, err) = cluster(&env, [2, 1_000_000, 4, 20, 5]);
    assert!(!ok, "{out}\n{err}");
    assert_mentions(&err, &["did not finish within 5s"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    let ours = env.path().join("cluster").display().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&ours))
        .collect();
    assert!(left.is_empty(), "node processes left running: {left:?}");
}

/// A node that cannot start (here: its configuration file is missing, which the nodes
/// read themselves) fails the cluster at once with one line naming the node and what it
/// said; the others are stopped. A node directory that cannot be made (it lies under a
/// file) is refused before any node starts, in one line naming it.
#[test]
fn a_cluster_whose_node_cannot_start_names_it() {
    let env = graph();
    let cluster = |data_dir: &str, config: &[&str]| {
        let mut args = config.to_vec();
        args.extend([
            "cluster",
            "--nodes",
            "2",
            "--until-height",
            "3",
            "--data-dir",
            data_dir,
            "--timeout",
            "60",
        ]);
        env.run(&args)
    };
    let (ok, out, err) = cluster("cluster", &["--config", "nosuch.toml"]);
    assert!(!ok, "{out}\n{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("node 0 exited") || err.contains("node 1 exited"),
        "{err}"
    );
    assert_mentions(&err, &["without a report", "nosuch.toml"]);
    env.write("blocker", "not a directory");
    let (ok, out, err) = cluster("blocker/cluster", &[]);
    assert!(!ok, "{out}\n{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_mentions(&err, &["blocker/cluster/node-0"]);
}

/// `n` loopback addresses free now, for nodes that bind them later (and again after a
/// restart), from below the kernel's ephemeral range: a port 0 bind (the nodes' monitors)
/// or an outgoing connection never takes one of them in between, as it could take a port
/// the ephemeral range gave out and freed.
fn fixed_addrs(n: usize) -> Vec<String> {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    // Spread by process, so that concurrent test processes seldom try the same ports.
    let start = 10_000 + (std::process::id() as u16 % 2_000) * 8;
    let held: Vec<std::net::TcpListener> = (start..low)
        .filter_map(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok())
        .take(n)
        .collect();
    assert_eq!(held.len(), n, "free ports below {low}");
    held.iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

#[test]
fn a_node_killed_with_sigkill_rejoins_its_peers_when_restarted() {
    use std::io::BufRead as _;
    let env = graph();
    let addrs = fixed_addrs(4);
    let target = 40u64;
    let start = |i: usize| {
        let mut cmd = env.command();
        cmd.arg("node")
            .args(["--data-dir", &format!("n{i}"), "--index", &i.to_string()])
            .args(["--listen", &addrs[i], "--monitor", "127.0.0.1:0"])
            .args([
                "--validators",
                "4",
                "--txs-per-block",
                "16",
                "--accounts",
                "50",
            ])
            .args([
                "--block-time-ms",
                "40",
                "--until-height",
                &target.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (j, a) in addrs.iter().enumerate().filter(|(j, _)| *j != i) {
            cmd.args(["--peer", &format!("{j}@{a}")]);
        }
        let mut child = cmd.spawn().unwrap();
        // Its monitor's address, then the rest of its output on a thread.
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let monitor = monitor_address(&mut lines);
        let rest =
            std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
        (child, monitor, rest)
    };
    let mut nodes: Vec<_> = (0..4).map(start).collect();
    // Whatever happens, no node outlives the test.
    let pids: Vec<u32> = nodes.iter().map(|(c, _, _)| c.id()).collect();
    let _reaper = Reaper(std::sync::Mutex::new(pids));
    let head_of =
        |monitor: &str| gauge(&get(monitor, "/metrics"), "dubchain_head_height").unwrap_or(0.0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while head_of(&nodes[2].1) < 5.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster made no blocks"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // kill -9 of node 2, mid-run: no clean shutdown.
    let (mut killed, _, _) = nodes.remove(2);
    killed.kill().unwrap();
    killed.wait().unwrap();
    // The others go on at most to node 2's next turn (heights 2, 6, 10, ... are its; fewer
    // if without its stake no block is final) and wait for it.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let stalled_at = head_of(&nodes[0].1) as u64;
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        head_of(&nodes[0].1) as u64,
        stalled_at,
        "the chain waits for node 2"
    );
    assert!(stalled_at < target);
    nodes.insert(2, start(2));
    _reaper.0.lock().unwrap().push(nodes[2].0.id());
    let mut heads = Vec::new();
    for (i, (mut child, _, rest)) in nodes.into_iter().enumerate() {
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let status = child.wait().unwrap();
        let out = rest.join().unwrap();
        assert!(status.success(), "node {i}: {status:?}\n{out}");
        heads.push(stopped_head(&out).unwrap_or_else(|| panic!("node {i}: {out}")));
    }
    assert_eq!(
        heads[2].0, target,
        "the restarted node caught up and went on: {heads:?}"
    );
    assert!(heads.iter().all(|h| *h == heads[0]), "one chain: {heads:?}");
}

/// Kills the processes it holds when dropped (a failing test leaves no node running).
struct Reaper(std::sync::Mutex<Vec<u32>>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in self.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            // SAFETY: kill(2) with SIGKILL on a pid this test started; one already reaped
            // gets ESRCH, which is ignored.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// An `--out` the reports cannot be written in refuses `run`, `bench` and `profile` (exit 2)
/// before anything is measured, instead of losing minutes of measurement at the end; the
/// file in the way is left as it was.
#[test]
fn an_unwritable_out_is_refused_before_anything_is_measured() {
    let env = graph();
    let file = env.write("afile", "mine");
    for command in [
        &["run", "--runs", "1", "--blocks", "1"][..],
        &["bench", "--no-system", "--rounds", "3"][..],
        &["profile"][..],
    ] {
        let mut args = command.to_vec();
        args.extend(["--out", "afile"]);
        let out = env.command().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {err}");
        assert!(
            err.contains("--out afile is a file, not a directory"),
            "{command:?}: {err}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).is_empty(),
            "{command:?}: nothing ran"
        );
    }
    assert_eq!(std::fs::read_to_string(file).unwrap(), "mine");
}

/// A `DUBCHAIN_LOG` filter that does not parse is said on stderr, naming the variable and its
/// value; the command goes on, logging warnings and errors.
#[test]
fn a_log_filter_that_does_not_parse_is_said() {
    let env = graph();
    let out = env
        .command()
        .env("DUBCHAIN_LOG", "dubchain=verbose")
        .args(["plugins", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_mentions(&err, &["warning: DUBCHAIN_LOG=dubchain=verbose:", "`info`"]);
}

/// `monitor rules` prints the whole rules file or nothing: with a rule that does not parse
/// it names the file and line, prints nothing on stdout and exits 2.
#[test]
fn monitor_rules_are_printed_whole_or_not_at_all() {
    let env = graph();
    let (ok, out, _) = env.run(&["monitor", "rules"]);
    assert!(ok && out.contains("alert: ContractBroken"), "{out}");
    env.write("m.toml", "[[rule]]\nname = 3\n");
    let out = env
        .command()
        .args(["monitor", "rules", "--monitor-config", "m.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_mentions(&err, &["m.toml: line 2:"]);
    assert!(out.stdout.is_empty(), "nothing printed");
}

/// A reader that stops early (`dubchain-perf ... | head`) ends the command quietly, as it
/// ends other Unix tools (status 141, 128 + SIGPIPE), not with a panic and a backtrace.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let env = graph();
    let mut child = env
        .command()
        .args(["plugins", "plan"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the command has started to print (it reads the directory first).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        matches!(out.status.code(), Some(141) | Some(0)),
        "{:?}: {err}",
        out.status
    );
}

/// A node whose peers do not come says so on stderr after a few seconds, naming each
/// missing validator and its address, in plain text when stderr is not a terminal.
#[test]
fn a_node_waiting_for_its_peers_names_them() {
    use std::io::BufRead as _;
    let env = graph();
    // A port nothing listens on: bound, then freed.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut node = env
        .command()
        .args(["node", "--data-dir", "data", "--monitor", "127.0.0.1:0"])
        .args([
            "--validators",
            "2",
            "--index",
            "1",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--peer")
        .arg(format!("0@{nowhere}"))
        .env_remove("DUBCHAIN_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(node.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let said = stderr
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("waiting for validators"));
        let _ = tx.send(said);
    });
    // Bounded: the node waits forever for its peer, so it is killed either way.
    let said = rx.recv_timeout(std::time::Duration::from_secs(30));
    let _ = node.kill();
    let _ = node.wait();
    let said = said
        .ok()
        .flatten()
        .expect("the node says what it waits for within 30 s");
    assert!(
        said.contains(&format!("0 at {nowhere}")) && said.contains("0 of 1 peers connected"),
        "{said}"
    );
    assert!(
        !said.contains('\u{1b}'),
        "no colour codes in a pipe: {said:?}"
    );
}
