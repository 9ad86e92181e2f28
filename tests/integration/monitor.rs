//! The performance monitor against a real server on loopback: `/metrics` parses as
//! Prometheus text and its counters move with the calls made; admin calls need the token,
//! a disable takes effect and a conflicting enable is refused with nothing changed; an alert
//! rule fires live after its pending period.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

use dubchain_host::{host::PluginState, testing::TestHost, workload};
use dubchain_monitor::{config, Monitor, Running};
use dubchain_plugin_api::slots::SIG_VERIFY;
use dubchain_tests::{assert_mentions, first_party_manifest, library, manifest_text};

const VERIFIER: &str = "crypto_parallel_verification";

/// One HTTP/1.1 request (the connection closed after it): status and body.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the monitor");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    // axum answers with a length or chunks; the tests' bodies are small and unchunked
    // unless chunked is said.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// `GET path` answered 200 with JSON: the JSON.
fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = http(addr, "GET", path, None);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

/// A host with hot reload on a plugin directory holding `installed` (first-party plugins
/// by name, or `(name, manifest)` of fixtures), enabling `enabled`, and its monitor on a
/// free loopback port with the monitor configuration `config`.
fn monitored(
    installed: &[&str], enabled: &[&str], config: &str, evaluate_every: Duration,
) -> (TestHost, Arc<Monitor>, Running, tempfile::TempDir) {
    monitored_with(installed, &[], enabled, config, evaluate_every)
}

/// The file in a monitored host's data directory where the test's change log writes.
const CHANGE_LOG: &str = "changes.log";

fn monitored_with(
    installed: &[&str], fixtures: &[(&str, String)], enabled: &[&str], config: &str,
    evaluate_every: Duration,
) -> (TestHost, Arc<Monitor>, Running, tempfile::TempDir) {
    let t = TestHost::start(enabled);
    for name in installed {
        t.install(name, &first_party_manifest(name), &library(name));
    }
    for (name, manifest) in fixtures {
        t.install(name, manifest, &library(name));
    }
    t.wait_for(Duration::from_secs(60), |t| {
        enabled.iter().all(|n| t.state(n) == PluginState::Enabled)
    })
    .expect("the plugins load");
    let data = tempfile::tempdir().unwrap();
    // The changes the monitor makes, as the node's log would show them.
    let log = data.path().join(CHANGE_LOG);
    let monitor = Arc::new(
        Monitor::new(
            t.host().clone(),
            Some(t.reloader().clone()),
            config::parse(config, "test configuration"),
            data.path(),
        )
        .unwrap()
        .with_change_log(Box::new(move |what, event| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            writeln!(f, "{what}: {event}").unwrap();
        })),
    );
    let running = dubchain_monitor::serve(
        monitor.clone(),
        "127.0.0.1:0".parse().unwrap(),
        data.path(),
        evaluate_every,
    )
    .unwrap();
    (t, monitor, running, data)
}

/// The value of the one sample of `name` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    match found[0].value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

fn scrape(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = http(addr, "GET", "/metrics", None);
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text")
}

#[test]
fn metrics_parse_as_prometheus_text_and_counters_move_with_calls() {
    let (t, _m, running, _data) = monitored(&[VERIFIER], &[VERIFIER], "", Duration::from_secs(1));
    let at = [("slot", "crypto.sig_verify"), ("plugin", VERIFIER)];
    let before = scrape(running.addr);
    let calls = sample(&before, "dubchain_provider_calls_total", &at);
    let slot_calls = sample(
        &before,
        "dubchain_slot_calls_total",
        &[("slot", "crypto.sig_verify")],
    );
    let set = workload::signature_set(5, 64, true);
    for _ in 0..200 {
        t.host().slots.sig_verify.verify_batch(&set.items());
    }
    let after = scrape(running.addr);
    assert_eq!(
        sample(&after, "dubchain_provider_calls_total", &at),
        calls + 200.0
    );
    assert_eq!(
        sample(
            &after,
            "dubchain_slot_calls_total",
            &[("slot", "crypto.sig_verify")]
        ),
        slot_calls + 200.0
    );
    assert_eq!(sample(&after, "dubchain_provider_breaker_open", &at), 0.0);
    assert_eq!(
        sample(
            &after,
            "dubchain_plugin_state",
            &[("plugin", VERIFIER), ("state", "enabled")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "dubchain_feature_set_info",
            &[("plugins", VERIFIER)]
        ),
        1.0
    );
    assert!(sample(&after, "dubchain_process_resident_memory_bytes", &[]) > 0.0);
    // The call-duration histogram: explicit buckets up to +Inf, and the sampled calls
    // (one in 64 per thread) counted.
    let h = after
        .samples
        .iter()
        .find(|s| {
            s.metric == "dubchain_provider_call_duration_seconds"
                && s.labels.get("plugin") == Some(VERIFIER)
        })
        .expect("a call-duration histogram");
    match &h.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let last = buckets.last().unwrap();
            assert!(last.less_than.is_infinite(), "{buckets:?}");
            assert!(
                last.count >= 3.0,
                "200 calls on one thread time at least 3: {buckets:?}"
            );
        }
        other => panic!("not a histogram: {other:?}"),
    }
    // The same figures as JSON.
    let status = get_json(running.addr, "/api/status");
    assert_eq!(status["plugins"][VERIFIER], "enabled");
    assert!(
        status["system_metrics"]["memory_usage_mb"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let (status, page) = http(running.addr, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(
        page.contains("DubChain node monitor")
            && !page.contains("http://")
            && !page.contains("https://"),
        "the dashboard is self-contained"
    );
}

#[test]
fn admin_calls_need_the_token_a_disable_takes_effect_and_a_conflict_changes_nothing() {
    let installed = [
        VERIFIER,
        "network_async_io",
        "network_adaptive_backpressure",
    ];
    let (t, _m, running, data) = monitored(
        &installed,
        &[VERIFIER, "network_async_io"],
        "",
        Duration::from_secs(1),
    );
    let token_path = data.path().join(dubchain_monitor::TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token is the owner's only");
    }
    let disable = format!("/api/plugins/{VERIFIER}/disable");

    let (status, body) = http(running.addr, "POST", &disable, None);
    assert_eq!(status, 401, "{body}");
    let (status, _) = http(running.addr, "POST", &disable, Some("not-the-token"));
    assert_eq!(status, 401);
    assert_eq!(
        t.state(VERIFIER),
        PluginState::Enabled,
        "refused calls change nothing"
    );

    let (status, body) = http(running.addr, "POST", &disable, Some(&token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.state(VERIFIER), PluginState::Disabled);
    assert_eq!(t.active("crypto.sig_verify"), "baseline");

    // Backpressure conflicts with the async transport, which is on: 409, nothing changed.
    let before = t.host().slot_status();
    let (status, body) = http(
        running.addr,
        "POST",
        "/api/plugins/network_adaptive_backpressure/enable",
        Some(&token),
    );
    assert_eq!(status, 409, "{body}");
    assert_mentions(&body, &["conflicts with"]);
    assert!(
        body.contains("`network_adaptive_backpressure` is enabled by the node's monitor")
            && body.contains("`network_async_io` is enabled by the command line"),
        "the problem says who asked for each: {body}"
    );
    assert_eq!(
        t.state("network_adaptive_backpressure"),
        PluginState::Disabled
    );
    assert_eq!(t.state("network_async_io"), PluginState::Enabled);
    let stacks = |s: &[dubchain_host::slot::SlotStatus]| {
        s.iter().map(|s| s.stack.clone()).collect::<Vec<_>>()
    };
    assert_eq!(stacks(&t.host().slot_status()), stacks(&before));
    // And a later reload does not bring the refused request back.
    let (status, body) = http(running.addr, "POST", "/api/reload", Some(&token));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        t.state("network_adaptive_backpressure"),
        PluginState::Disabled
    );
    assert_eq!(
        t.state(VERIFIER),
        PluginState::Disabled,
        "the disable holds across reloads"
    );

    let (status, body) = http(
        running.addr,
        "POST",
        &format!("/api/plugins/{VERIFIER}/enable"),
        Some(&token),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.state(VERIFIER), PluginState::Enabled);
    let (status, body) = http(
        running.addr,
        "POST",
        "/api/plugins/no_such_plugin/enable",
        Some(&token),
    );
    assert_eq!(status, 404, "{body}");

    // The node's log tells of each change and of the refused one.
    let log = std::fs::read_to_string(data.path().join(CHANGE_LOG)).unwrap();
    let told: Vec<&str> = log.lines().filter(|l| l.starts_with("admin API")).collect();
    assert_eq!(
        told.iter()
            .map(|l| l.split(" (").next().unwrap())
            .collect::<Vec<_>>(),
        [
            format!("admin API: disable {VERIFIER}: reload"),
            "admin API: enable network_adaptive_backpressure: reload".to_owned(),
            "admin API: reload: reload".to_owned(),
            format!("admin API: enable {VERIFIER}: reload"),
        ],
        "{log}"
    );
    assert!(
        log.contains(&format!("retired {VERIFIER}"))
            && log.contains("not applied: `network_async_io` conflicts with"),
        "{log}"
    );

    // An unknown path or method is told what the monitor serves.
    let (status, body) = http(running.addr, "GET", "/api/plugins", None);
    assert_eq!(status, 404, "{body}");
    assert_mentions(&body, &["/api/status"]);
    let (status, body) = http(running.addr, "GET", "/api/reload", None);
    assert_eq!(status, 405, "{body}");
    assert_mentions(&body, &["POST /api/plugins/NAME/enable"]);
}

#[test]
fn an_alert_rule_fires_live_after_its_pending_period() {
    let rules = r#"
        [[rule]]
        name = "VerifierBusy"
        metric = "dubchain_provider_calls_total"
        labels = { slot = "crypto.sig_verify" }
        aggregate = "sum"
        op = ">="
        threshold = 50
        for = "1s"
        severity = "warning"
        summary = "the verifier has been called 50 times"
    "#;
    let (t, _m, running, _data) =
        monitored(&[VERIFIER], &[VERIFIER], rules, Duration::from_millis(100));
    let alerts = |addr| get_json(addr, "/api/alerts");
    assert_eq!(alerts(running.addr)["rules"][0]["phase"], "inactive");
    let set = workload::signature_set(6, 16, false);
    for _ in 0..50 {
        t.host().slots.sig_verify.verify_batch(&set.items());
    }
    let start = Instant::now();
    let fired = loop {
        let a = alerts(running.addr);
        if a["rules"][0]["phase"] == "firing" {
            break a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never fired: {a}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let transitions = fired["transitions"].as_array().unwrap();
    let to: Vec<&str> = transitions
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(to, ["pending", "firing"]);
    let pending_for =
        transitions[1]["at"].as_f64().unwrap() - transitions[0]["at"].as_f64().unwrap();
    assert!(
        pending_for >= 0.9,
        "fired {pending_for} s after pending; `for` is 1 s"
    );
    let m = scrape(running.addr);
    assert_eq!(
        sample(&m, "dubchain_alerts_firing", &[("rule", "VerifierBusy")]),
        1.0
    );
}

/// Waits until `pred` holds, up to 30 s.
fn until(what: &str, pred: impl Fn() -> bool) {
    let start = Instant::now();
    while !pred() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_wrong_answer_on_a_shadow_check_demotes_the_plugin_writes_evidence_and_alerts() {
    let bug = "fixture_latent_bug";
    let config = r#"
        [shadow]
        every = 1

        [[rule]]
        name = "ShadowMismatch"
        metric = "dubchain_shadow_mismatches_total"
        aggregate = "sum"
        increase = "1h"
        op = ">"
        threshold = 0
        severity = "critical"
        summary = "a plugin answered differently from the baseline"
    "#;
    let (t, monitor, running, data) = monitored_with(
        &[],
        &[(bug, manifest_text(bug, SIG_VERIFY.id, ""))],
        &[bug],
        config,
        Duration::from_millis(100),
    );
    // Honest traffic: every shadow check agrees, the plugin keeps serving.
    let honest = workload::signature_set(8, 32, true);
    for _ in 0..20 {
        t.host().slots.sig_verify.verify_batch(&honest.items());
    }
    let shadow = monitor.shadow().expect("shadow checks on").clone();
    assert!(shadow.drain(Duration::from_secs(30)));
    assert_eq!(shadow.counts().mismatches, 0);
    assert_eq!(shadow.counts().checked, 20, "every = 1 checks every call");
    assert!(t.active("crypto.sig_verify").starts_with(bug));

    // The input the latent bug flips: the plugin's answer is served once (the check runs
    // off the hot path), then the plugin is demoted and the baseline answers.
    let mut set = workload::signature_set(9, 4, false);
    let message = b"LATENT-BUG: a message no self-test generates".to_vec();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    set.entries[2] = (
        key.verifying_key().to_bytes(),
        ed25519_dalek::Signer::sign(&key, &message).to_bytes(),
        message,
    );
    let expected = dubchain_host::baseline::sig_verify(&set.items());
    t.host().slots.sig_verify.verify_batch(&set.items());
    assert!(shadow.drain(Duration::from_secs(30)));
    assert_eq!(shadow.counts().mismatches, 1);
    assert_eq!(
        t.state(bug),
        PluginState::Fallback,
        "demoted: its breaker is open for good"
    );
    assert_eq!(t.active("crypto.sig_verify"), "baseline");
    assert_eq!(
        t.host().slots.sig_verify.verify_batch(&set.items()),
        expected
    );

    let found = shadow.mismatches();
    let evidence = found[0].evidence.clone().expect("evidence written");
    assert!(evidence.starts_with(data.path().join(dubchain_monitor::EVIDENCE_DIR)));
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&evidence).unwrap()).unwrap();
    assert_eq!(doc["plugin"], bug);
    assert_eq!(doc["call"]["differ_at"], serde_json::json!([2]));
    assert_eq!(doc["call"]["baseline"], serde_json::json!(expected));
    assert_ne!(doc["call"]["provider"], doc["call"]["baseline"]);
    assert_eq!(doc["call"]["items"].as_array().unwrap().len(), 4);

    until("the mismatch alert", || {
        let (_, body) = http(running.addr, "GET", "/api/alerts", None);
        body.contains(r#""phase":"firing""#)
    });
    let m = scrape(running.addr);
    let at = [("slot", "crypto.sig_verify"), ("plugin", bug)];
    assert_eq!(sample(&m, "dubchain_shadow_mismatches_total", &at), 1.0);
    assert_eq!(sample(&m, "dubchain_provider_demoted", &at), 1.0);
    let status = get_json(running.addr, "/api/status");
    assert_eq!(status["shadow"]["mismatches"][0]["plugin"], bug);
    assert!(status["shadow"]["not_replayed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["slot"] == "exec.block_execution"));
}

#[test]
fn a_plugin_slower_than_its_contract_is_rolled_back() {
    // A correct layer that passes every batch to the baseline: about 1x, and its manifest
    // promises 3x.
    let slow = "fixture_reloadable";
    let manifest = manifest_text(
        slow,
        SIG_VERIFY.id,
        "[contract]\nmin_speedup = 3.0\nworkload = \"batches of 64 signatures\"\n",
    );
    let config = r#"
        [shadow]
        every = 1
        window = 40

        [contracts]
        action = "rollback"
        tolerance = 0.1
        min_samples = 20
    "#;
    let (t, monitor, running, _data) = monitored_with(
        &[],
        &[(slow, manifest)],
        &[slow],
        config,
        Duration::from_millis(200),
    );
    // Calls, paced, until the contract check rolls the plugin back. The shadow checker
    // times the baseline on its own thread: calls in a tight loop on a loaded machine can
    // starve it and inflate the first samples' ratios, and newer samples replace them.
    let set = workload::signature_set(10, 64, false);
    until("the rollback", || {
        t.host().slots.sig_verify.verify_batch(&set.items());
        t.state(slow) == PluginState::Disabled
    });
    assert_eq!(t.active("crypto.sig_verify"), "baseline");
    let status = get_json(running.addr, "/api/status");
    let rollback = &status["rollbacks"][0];
    assert_eq!(rollback["plugin"], slow);
    assert!(rollback["refused"].is_null(), "{rollback}");
    let why = rollback["why"].as_str().unwrap();
    assert_mentions(why, &["under its contract's 3x"]);
    // The disable is the admin path's: it holds across a reload of the directory.
    t.reloader().reload(Vec::new());
    assert_eq!(t.state(slow), PluginState::Disabled);
    let m = scrape(running.addr);
    assert_eq!(
        sample(&m, "dubchain_contract_rollbacks_total", &[("plugin", slow)]),
        1.0
    );
    drop(monitor);
}

#[test]
fn the_dashboard_renders_live_values_in_headless_chromium() {
    let (_t, monitor, running, _data) =
        monitored(&[VERIFIER], &[VERIFIER], "", Duration::from_secs(1));
    monitor.node.committed(1234, 256, Duration::from_millis(20));
    monitor
        .node
        .mempool
        .store(77, std::sync::atomic::Ordering::Relaxed);
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no chromium on PATH: `.ci/install-deps` installs it (cargo xtask test runs it)");
    let profile = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{}/", running.addr))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut dom = String::new();
    let reader = {
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        })
    };
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish rendering the dashboard in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    dom.push_str(&reader.join().unwrap());
    // Values the page could only have fetched from the node.
    assert!(dom.contains(r#"id="head-height">1234<"#), "{dom}");
    assert!(dom.contains(r#"id="mempool">77<"#), "{dom}");
    assert!(
        dom.contains(&format!(
            r#"<td>{VERIFIER}</td><td class="ok">enabled</td>"#
        )),
        "{dom}"
    );
    assert_mentions(&dom, &["<td>crypto.sig_verify</td>"]);
    assert!(
        dom.contains(r#"<span id="error"></span>"#),
        "no fetch failed: {dom}"
    );
}

#[test]
fn gossiped_transactions_decoded_by_a_plugin_are_shadow_checked_too() {
    let decoder = "memory_allocation_reduction";
    let (t, monitor, _running, _data) = monitored(
        &[decoder],
        &[decoder],
        "[shadow]\nevery = 1\n",
        Duration::from_secs(1),
    );
    assert!(t.active("mem.tx_decode").starts_with(decoder));
    let txs = workload::transactions(12, 2, 16);
    let mut payloads: Vec<Vec<u8>> = txs
        .iter()
        .map(|tx| serde_json::to_vec(tx).unwrap())
        .collect();
    payloads.push(b"{\"not\": \"a transaction\"}".to_vec());
    let views: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    for _ in 0..5 {
        t.host().slots.tx_decode.decode(&views);
    }
    let shadow = monitor.shadow().unwrap();
    assert!(shadow.drain(Duration::from_secs(30)));
    let w = shadow
        .windows()
        .into_iter()
        .find(|w| w.slot == "mem.tx_decode")
        .expect("the decoder's calls were checked");
    assert_eq!((w.checked, w.mismatches), (5, 0), "{w:?}");
    assert_eq!(t.active("mem.tx_decode").split('@').next(), Some(decoder));
}
