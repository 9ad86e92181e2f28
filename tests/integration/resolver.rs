//! The gate graph: each case is a set of manifests and requests, and the expected plan or
//! the full list of problems, rendered as text.

use std::path::PathBuf;

use dubchain_host::{
    manifest::{self, Manifest},
    resolve::{Request, Source},
};
use dubchain_tests::{enable, manifest_text, resolve};

/// A manifest of a `crypto.sig_verify` layer (or `slot`) with extra TOML.
fn m(name: &str, extra: &str) -> Manifest {
    ms(name, "crypto.sig_verify", extra)
}

fn ms(name: &str, slot: &str, extra: &str) -> Manifest {
    manifest::parse(
        &PathBuf::from(format!("/plugins/{name}.toml")),
        &manifest_text(name, slot, extra),
    )
    .unwrap()
}

fn dep(name: &str, version: &str) -> String {
    format!("[[depends]]\nname = \"{name}\"\nversion = \"{version}\"\nreason = \"needs {name}\"\n")
}

/// Renders a resolution: every problem if there are any, else the enabled plugins with
/// their first reason and the slot stacks.
fn render(manifests: &[Manifest], requests: &[Request]) -> String {
    let r = resolve(manifests, requests);
    let mut out = String::new();
    for p in &r.warnings {
        out += &format!("warning: {p}\n");
    }
    for p in &r.problems {
        out += &format!("problem: {p}\n");
    }
    if !r.problems.is_empty() {
        return out;
    }
    for name in r.enabled() {
        out += &format!("on {name}: {}\n", r.decisions[name].reasons[0]);
    }
    for (slot, stack) in &r.stacks {
        out += &format!("stack {slot}: {}\n", stack.join(" > "));
    }
    out
}

fn check(manifests: &[Manifest], requests: &[Request], expected: &str) {
    let got = render(manifests, requests);
    assert_eq!(got.trim(), expected.trim(), "\n--- got ---\n{got}");
}

#[test]
fn nothing_requested_nothing_on() {
    check(&[m("a", "")], &[], "");
}

#[test]
fn default_enabled_and_command_line_disable() {
    let a = m("a", "default_enabled = true\n");
    check(
        std::slice::from_ref(&a),
        &[],
        "on a: enabled by default_enabled in its manifest\nstack crypto.sig_verify: a",
    );
    let off = vec![Request {
        name: "a".into(),
        enable: false,
        source: Source::CommandLine,
    }];
    check(&[a], &off, "");
}

#[test]
fn dependencies_are_enabled_transitively() {
    let ms = [
        m("a", &dep("b", "^0.1")),
        ms("b", "storage.record_codec", &dep("c", "*")),
        m("c", ""),
    ];
    check(
        &ms,
        &enable(&["a"]),
        "on a: enabled by the command line\n\
         on b: required by `a` (depends ^0.1: needs b)\n\
         on c: required by `b` (depends *: needs c)\n\
         stack crypto.sig_verify: a > c\n\
         stack storage.record_codec: b",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let ms = [
        m("a", &(dep("missing", "*") + &dep("old", ">=1.0"))),
        m("old", ""),
        m(
            "x",
            "[[conflicts]]\nname = \"a\"\nreason = \"both rewrite the verification path\"\n",
        ),
        ms("codec1", "storage.record_codec", ""),
        ms("codec2", "storage.record_codec", ""),
        ms("nowhere", "net.teleport", ""),
        m("future", "").clone(),
    ];
    let mut future = ms[6].clone();
    future.api = semver::VersionReq::parse("^2").unwrap();
    let ms = [&ms[..6], &[future]].concat();
    check(
        &ms,
        &enable(&["a", "x", "codec1", "codec2", "nowhere", "future", "ghost"]),
        "warning: `ghost` is requested by the command line, but no manifest in the plugin directory has that name; its slots keep the baseline\n\
         problem: `a` depends on `missing` * (needs missing), which is not in the plugin directory\n\
         problem: `a` depends on `old` >=1.0, but the plugin directory has version 0.1.0\n\
         problem: `x` conflicts with `a`: both rewrite the verification path; `x` is enabled by the command line, `a` is enabled by the command line; disable one of them\n\
         problem: `nowhere` provides slot `net.teleport`, which this host does not have (known: crypto.sig_verify, storage.record_codec, consensus.vote_verify, crypto.merkle, exec.block_execution, consensus.block_validation, exec.tx_validation, vm.code_loader, vm.metering, vm.module_cache, vm.contract_state, mem.block_reclaim, mem.buffer_pool, net.frame_send, mempool.tx_pool, consensus.vote_tally, mem.tx_decode, storage.account_read, storage.durability, net.broadcast, net.send_queue, net.transport, storage.block_commit, storage.state_root)\n\
         problem: `future` requires dubchain-plugin-api ^2, but this host implements 0.3.3\n\
         problem: slot `storage.record_codec` is exclusive but several enabled plugins provide it: `codec1` (enabled by the command line), `codec2` (enabled by the command line)",
    )
}

#[test]
fn an_absent_plugin_is_a_warning_and_the_rest_applies() {
    check(
        &[m("a", "")],
        &enable(&["a", "gone"]),
        "warning: `gone` is requested by the command line, but no manifest in the plugin directory has that name; its slots keep the baseline\n\
         on a: enabled by the command line\n\
         stack crypto.sig_verify: a",
    );
}

#[test]
fn conflict_names_both_and_why_each_was_requested() {
    let ms = [
        m("top", &dep("mid", "*")),
        m("mid", ""),
        m(
            "other",
            "[[conflicts]]\nname = \"mid\"\nversion = \"^0.1\"\nreason = \"they share a cache\"\n",
        ),
    ];
    let r = resolve(&ms, &enable(&["top", "other"]));
    assert_eq!(r.problems.len(), 1);
    assert_eq!(
        r.problems[0].to_string(),
        "`other` conflicts with `mid`: they share a cache; `other` is enabled by the command line, \
         `mid` is required by `top` (depends *: needs mid); disable one of them"
    );
}

#[test]
fn cycle_is_reported_whole() {
    let ms = [
        m("a", &dep("b", "*")),
        m("b", &dep("c", "*")),
        m("c", &dep("a", "*")),
        m("d", &dep("d", "*")),
    ];
    check(
        &ms,
        &enable(&["a", "d"]),
        "problem: dependency cycle: a -> b -> c -> a\nproblem: dependency cycle: d -> d",
    );
}

#[test]
fn disabled_dependency_is_a_problem() {
    let ms = [m("a", &dep("b", "*")), m("b", "")];
    let mut reqs = vec![Request {
        name: "b".into(),
        enable: false,
        source: Source::Profile {
            profile: "prod".into(),
            file: "c.toml".into(),
        },
    }];
    reqs.extend(enable(&["a"]));
    check(
        &ms,
        &reqs,
        "problem: `a` depends on `b`, which is disabled by profile `prod` of c.toml",
    );
}

#[test]
fn layers_are_ordered_by_above_and_below() {
    let ms = [
        m("cache", "[ordering]\nabove = [\"parallel\"]\n"),
        m("parallel", "[ordering]\nabove = [\"accel\"]\n"),
        m("accel", ""),
        m("zzz_unordered", ""),
    ];
    check(
        &ms,
        &enable(&["cache", "parallel", "accel"]),
        "on accel: enabled by the command line\non cache: enabled by the command line\non parallel: enabled by the command line\n\
         stack crypto.sig_verify: accel > parallel > cache",
    );
    // `below` says the same from the other side; constraints naming absent layers are ignored.
    let ms = [
        m("cache", ""),
        m(
            "parallel",
            "[ordering]\nbelow = [\"cache\"]\nabove = [\"not_enabled\"]\n",
        ),
    ];
    let r = resolve(&ms, &enable(&["cache", "parallel"]));
    assert_eq!(r.stacks["crypto.sig_verify"], ["parallel", "cache"]);
}

#[test]
fn ordering_cycle_is_a_problem() {
    let ms = [
        m("a", "[ordering]\nabove = [\"b\"]\n"),
        m("b", "[ordering]\nabove = [\"a\"]\n"),
    ];
    check(
        &ms,
        &enable(&["a", "b"]),
        "problem: the layers of `crypto.sig_verify` cannot be ordered: their above/below constraints form a cycle among a, b",
    );
}

#[test]
fn feature_set_id_depends_on_the_enabled_set() {
    let ms = [m("a", ""), m("b", "")];
    let one = resolve(&ms, &enable(&["a"])).feature_set_id;
    let two = resolve(&ms, &enable(&["a", "b"])).feature_set_id;
    assert_ne!(one, two);
    assert_eq!(one, resolve(&ms, &enable(&["a"])).feature_set_id);
}

#[test]
fn resolves_ten_thousand_manifests() {
    // Correctness at scale; the timing is a benchmark (benches/benches/resolver.rs).
    let ms = dubchain_host::workload::synthetic_manifests(10_000);
    let names: Vec<String> = ms.iter().step_by(7).map(|m| m.name.clone()).collect();
    let reqs: Vec<Request> = names
        .iter()
        .map(|n| Request {
            name: n.clone(),
            enable: true,
            source: Source::CommandLine,
        })
        .collect();
    let r = resolve(&ms, &reqs);
    assert!(r.is_ok(), "{:?}", &r.problems[..r.problems.len().min(3)]);
    assert!(r.enabled().count() >= names.len());
}

/// The first-party manifests and the built-in configuration: the production profile
/// resolves with no problem and no warning; the four VM
/// plugins, which declare no relation to each other (none holds: each runs over the
/// others' baselines or plugins, as the four-together differential test shows), resolve
/// each alone, enabling nothing else, and all four together, each on its own slot.
#[test]
fn the_real_manifests_resolve_the_production_profile_and_the_vm_plugins() {
    let d = manifest::discover(&dubchain_tests::manifests_dir());
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    let config = dubchain_host::config::Config::load(None).unwrap();
    let names: Vec<&str> = d.manifests.iter().map(|m| m.name.as_str()).collect();
    let production = resolve(
        &d.manifests,
        &config.requests("production", &names).unwrap(),
    );
    assert!(production.problems.is_empty(), "{:?}", production.problems);
    assert!(production.warnings.is_empty(), "{:?}", production.warnings);
    let vm = [
        ("vm_bytecode_caching", "vm.code_loader"),
        ("vm_gas_optimization", "vm.metering"),
        ("vm_jit_caching", "vm.module_cache"),
        ("vm_state_caching", "vm.contract_state"),
    ];
    for (name, slot) in vm {
        assert_eq!(production.stacks[slot], [name], "production's {slot}");
        let alone = resolve(&d.manifests, &enable(&[name]));
        assert!(alone.problems.is_empty(), "{name}: {:?}", alone.problems);
        assert_eq!(alone.enabled().collect::<Vec<_>>(), [name]);
        let m = d.manifests.iter().find(|m| m.name == name).unwrap();
        assert!(m.depends.is_empty() && m.conflicts.is_empty(), "{name}");
    }
    let together = resolve(
        &d.manifests,
        &enable(&vm.iter().map(|(n, _)| *n).collect::<Vec<_>>()),
    );
    assert!(together.problems.is_empty(), "{:?}", together.problems);
    for (name, slot) in vm {
        assert_eq!(together.stacks[slot], [name]);
    }
}

fn uses(slot: &str) -> String {
    format!("[[uses]]\nslot = \"{slot}\"\nreason = \"calls {slot}\"\n")
}

fn recommends(name: &str) -> String {
    format!("[[recommends]]\nname = \"{name}\"\nreason = \"faster with {name}\"\n")
}

/// `[[uses]]`: an offered slot provided by others is fine; a slot the host does not offer,
/// or one the plugin provides itself, is a problem. `[[recommends]]` gives suggestions and
/// never a problem.
#[test]
fn uses_are_checked_and_recommends_only_suggest() {
    let user = ms(
        "user",
        "exec.tx_validation",
        &(uses("crypto.sig_verify") + &recommends("fast") + &recommends("gone")),
    );
    let fast = m("fast", "");
    let alone = resolve(&[user.clone(), fast.clone()], &enable(&["user"]));
    assert!(alone.problems.is_empty(), "{:?}", alone.problems);
    let suggestions: Vec<String> = alone.suggestions.iter().map(ToString::to_string).collect();
    assert_eq!(
        suggestions,
        [
            "`user` recommends `fast` (faster with fast); it is off: `--enable fast` or a profile turns it on",
            "`user` recommends `gone` (faster with gone), which the plugin directory does not have at a version it accepts",
        ]
    );
    let both = resolve(&[user, fast], &enable(&["user", "fast"]));
    assert!(both.problems.is_empty() && both.suggestions.len() == 1);

    check(
        &[
            ms("odd", "exec.tx_validation", &uses("vm.metering")),
            m("selfish", &uses("crypto.sig_verify")),
        ],
        &enable(&["odd", "selfish"]),
        "problem: `odd` uses slot `vm.metering`, which this host does not offer to plugins (offered: crypto.sig_verify); remove the [[uses]] entry or rebuild against a host that offers it\n\
         problem: `selfish` uses slot `crypto.sig_verify`, which it also provides: its calls would come back to itself; call the layer below through `next` instead, and drop the [[uses]] entry",
    );
}

/// The real manifests' edges: the two users of `crypto.sig_verify` declare it, the one
/// exclusive pair declares its conflict (one problem, carrying the declared reason, not a
/// second "exclusive slot" problem), the async transport and the bounded send queues
/// declare theirs, and the production profile's plan has no problem.
#[test]
fn the_real_manifests_declare_their_edges() {
    let d = manifest::discover(&dubchain_tests::manifests_dir());
    let by = |n: &str| d.manifests.iter().find(|m| m.name == n).unwrap();
    for user in ["consensus_batching", "batching_tx_validation"] {
        let slots: Vec<&str> = by(user).uses.iter().map(|u| u.slot.as_str()).collect();
        assert_eq!(slots, ["crypto.sig_verify"], "{user}");
    }
    let p = only_problem(&resolve(
        &d.manifests,
        &enable(&["batching_shard_aware", "batching_state_writes"]),
    ));
    assert!(
        p.starts_with("`batching_shard_aware` conflicts with `batching_state_writes`: both replace the execution of a block")
            && p.contains("enabled by the command line"),
        "{p}"
    );
    let r = resolve(&d.manifests, &enable(&["batching_tx_validation"]));
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.suggestions.len(), 1);
    assert_eq!(r.suggestions[0].recommends, "crypto_parallel_verification");
    // The async transport takes the sockets from the node's writer threads, so the send
    // queues' bounds would not apply: the two are refused together, with that reason.
    let p = only_problem(&resolve(
        &d.manifests,
        &enable(&["network_async_io", "network_adaptive_backpressure"]),
    ));
    assert!(
        p.starts_with("`network_async_io` conflicts with `network_adaptive_backpressure`: network_async_io queues and writes each peer's frames itself"),
        "{p}"
    );
    for alone in ["network_async_io", "network_adaptive_backpressure"] {
        assert!(resolve(&d.manifests, &enable(&[alone])).problems.is_empty());
    }
}

/// The one problem of `r`, as printed.
fn only_problem(r: &dubchain_host::resolve::Resolution) -> String {
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    r.problems[0].to_string()
}

mod properties {
    //! Random gate graphs: whatever the manifests and requests, a resolution without
    //! problems has its dependencies closed (enabled, at a matching version) and no declared
    //! conflict with both sides on; a resolution with problems is never applied.

    use dubchain_host::resolve::Resolution;
    use proptest::{collection::vec, prelude::*};

    use super::*;

    /// Plugin `i` of `n`: depends on and conflicts with some others (by index, any
    /// direction, so cycles occur), sometimes at a version none has.
    #[derive(Debug, Clone)]
    struct Node {
        depends: Vec<(usize, bool)>,
        conflicts: Vec<usize>,
        exclusive: bool,
    }

    fn node(n: usize) -> impl Strategy<Value = Node> {
        (
            vec((0..n, any::<bool>()), 0..3),
            vec(0..n, 0..2),
            any::<bool>(),
        )
            .prop_map(|(depends, conflicts, exclusive)| Node {
                depends,
                conflicts,
                exclusive,
            })
    }

    fn graph() -> impl Strategy<Value = (Vec<Node>, Vec<(usize, bool)>)> {
        (2usize..10).prop_flat_map(|n| (vec(node(n), n), vec((0..n, any::<bool>()), 0..6)))
    }

    fn manifests(nodes: &[Node]) -> Vec<Manifest> {
        nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut extra = String::new();
                for &(d, right) in &node.depends {
                    if d != i {
                        extra += &dep(&format!("p{d}"), if right { "^0.1" } else { ">=9" });
                    }
                }
                for &c in &node.conflicts {
                    if c != i {
                        extra += &format!("[[conflicts]]\nname = \"p{c}\"\nreason = \"r\"\n");
                    }
                }
                // Exclusive plugins share one exclusive slot; the others are layers.
                let slot = if node.exclusive {
                    "exec.tx_validation"
                } else {
                    "crypto.sig_verify"
                };
                ms(&format!("p{i}"), slot, &extra)
            })
            .collect()
    }

    fn closed_and_conflict_free(ms: &[Manifest], r: &Resolution) -> Result<(), TestCaseError> {
        let on = |n: &str| r.decisions.get(n).is_some_and(|d| d.enabled);
        for m in ms.iter().filter(|m| on(&m.name)) {
            for d in &m.depends {
                let found = ms.iter().find(|x| x.name == d.name);
                prop_assert!(on(&d.name), "{} on without {}", m.name, d.name);
                prop_assert!(found.is_some_and(|x| d.version.matches(&x.version)));
            }
            for c in &m.conflicts {
                prop_assert!(!on(&c.name), "{} and {} both on", m.name, c.name);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn plans_without_problems_are_closed_and_plans_with_problems_are_refused(
            (nodes, requests) in graph()
        ) {
            let ms = manifests(&nodes);
            let requests: Vec<Request> = requests
                .iter()
                .map(|&(i, on)| Request { name: format!("p{i}"), enable: on, source: Source::CommandLine })
                .collect();
            let r = resolve(&ms, &requests);
            if r.problems.is_empty() {
                closed_and_conflict_free(&ms, &r)?;
            } else {
                let host = dubchain_tests::test_host();
                let before = host.slot_status();
                let refused = host.apply(&ms, &r, |_| String::new());
                prop_assert!(refused.is_err());
                let after = host.slot_status();
                prop_assert_eq!(
                    before.iter().map(|s| &s.stack).collect::<Vec<_>>(),
                    after.iter().map(|s| &s.stack).collect::<Vec<_>>()
                );
            }
        }
    }
}
