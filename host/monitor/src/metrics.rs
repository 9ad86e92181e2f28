//! What the monitor exports: one table of metrics ([`METRICS`]), read at scrape time from
//! the host's own counters and the node's [`NodeMetrics`], never copied on the call path.
//!
//! The table is the one source of the exposition (`/metrics`), the alert rules' checks
//! (a rule may name only a metric and labels listed here) and the Grafana dashboard
//! (`grafana.rs`). Names follow Prometheus conventions: `dubchain_` prefix, base units as
//! suffixes, `_total` on counters, histograms with explicit buckets.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Mutex,
    },
    time::Duration,
};

use dubchain_host::{
    alloc_count,
    host::PluginState,
    latency::{Latency, LatencySnapshot},
    shadow::{ShadowCounts, Window},
    Host,
};
use dubchain_node::net::KindTraffic;
use prometheus::proto;

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric.
#[derive(Debug, serde::Serialize)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

const fn metric(
    name: &'static str, kind: Kind, labels: &'static [&'static str], help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        help,
        labels,
    }
}

use Kind::*;

const PROVIDER: &[&str] = &["slot", "plugin", "version"];

/// Every metric the monitor exports, in exposition order.
pub const METRICS: &[Metric] = &[
    metric("dubchain_slot_calls_total", Counter, &["slot"],
        "Calls made to a slot, whoever answered them (a provider or the baseline)."),
    metric("dubchain_slot_fallbacks_total", Counter, &["slot"],
        "Calls of a slot answered below the provider meant to answer (its error, panic or open breaker)."),
    metric("dubchain_provider_calls_total", Counter, PROVIDER,
        "Calls a slot's provider was given."),
    metric("dubchain_provider_errors_total", Counter, PROVIDER,
        "Calls of a provider that failed (answered by the layer below), panics included."),
    metric("dubchain_provider_panics_total", Counter, PROVIDER,
        "Calls of a provider that panicked (caught at the boundary, answered below)."),
    metric("dubchain_provider_fallbacks_total", Counter, PROVIDER,
        "Calls meant for a provider answered below it: its failures, and calls its open breaker turned away."),
    metric("dubchain_provider_breaker_open", Gauge, PROVIDER,
        "1 while the provider's circuit breaker is open (its slot answers from below), else 0."),
    metric("dubchain_provider_call_duration_seconds", Histogram, PROVIDER,
        "Duration of a provider's calls, timed on one call in 64 per thread."),
    metric("dubchain_plugin_state", Gauge, &["plugin", "state"],
        "1 for each plugin the host has loaded or failed to load, labelled with its state (enabled, fallback, failed)."),
    metric("dubchain_feature_set_info", Gauge, &["feature_set", "plugins"],
        "Always 1: the active feature set's id and its enabled plugins."),
    metric("dubchain_head_height", Gauge, &[],
        "Height of the node's head block."),
    metric("dubchain_finalized_height", Gauge, &[],
        "Height of the node's latest final block."),
    metric("dubchain_blocks_total", Counter, &[],
        "Blocks this node committed (produced or validated)."),
    metric("dubchain_transactions_total", Counter, &[],
        "Transactions in the blocks this node committed."),
    metric("dubchain_block_duration_seconds", Histogram, &[],
        "From the start of a block's production or validation on this node to its commit."),
    metric("dubchain_mempool_transactions", Gauge, &[],
        "Transactions waiting in the node's mempool."),
    metric("dubchain_peers", Gauge, &[],
        "Peers the node is connected to."),
    metric("dubchain_network_sent_bytes_total", Counter, &["kind"],
        "Bytes of frames sent to peers, by message kind (tx, block, vote)."),
    metric("dubchain_network_sent_messages_total", Counter, &["kind"],
        "Frames sent to peers, by message kind."),
    metric("dubchain_network_received_bytes_total", Counter, &["kind"],
        "Bytes of frames received from peers, by message kind."),
    metric("dubchain_network_received_messages_total", Counter, &["kind"],
        "Frames received from peers, by message kind."),
    metric("dubchain_process_resident_memory_bytes", Gauge, &[],
        "Resident set size of the node's process."),
    metric("dubchain_process_cpu_seconds_total", Counter, &[],
        "CPU time (user and system) the node's process has used."),
    metric("dubchain_shadow_sampled_total", Counter, &[],
        "Calls sampled for a shadow check (queued or dropped)."),
    metric("dubchain_shadow_dropped_total", Counter, &[],
        "Samples dropped because the shadow checker's queue was full."),
    metric("dubchain_shadow_checked_total", Counter, &[],
        "Samples the shadow checker answered again with the baseline and compared."),
    metric("dubchain_shadow_mismatches_total", Counter, PROVIDER,
        "Shadow checks in which the provider's answer differed from the baseline's."),
    metric("dubchain_provider_demoted", Gauge, PROVIDER,
        "1 once a shadow check demoted the provider (until it is loaded again), else 0."),
    metric("dubchain_contract_speedup", Gauge, &["slot", "plugin", "bound"],
        "A provider's live speed-up against the baseline over the shadow window: median, and low and high ends of its 95% interval."),
    metric("dubchain_contract_min_speedup", Gauge, &["slot", "plugin"],
        "The speed-up the provider's manifest promises."),
    metric("dubchain_contract_broken", Gauge, &["slot", "plugin"],
        "1 while the whole interval of the live speed-up is under the promise (less the tolerance), else 0."),
    metric("dubchain_contract_rollbacks_total", Counter, &["plugin"],
        "Plugins disabled because their live speed-up broke their contract."),
    metric("dubchain_alerts_firing", Gauge, &["rule", "severity"],
        "1 while an alert rule is firing, else 0 (one series per rule)."),
];

/// The metric called `name`, if the monitor exports one.
pub fn find(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// Block durations' bucket bounds, in seconds.
pub const BLOCK_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What the node tells the monitor as it runs (the host's figures are read from the host).
pub struct NodeMetrics {
    pub head_height: AtomicU64,
    pub finalized_height: AtomicU64,
    pub blocks: AtomicU64,
    pub transactions: AtomicU64,
    pub mempool: AtomicU64,
    pub peers: AtomicU64,
    block_duration: Latency,
    /// Sent and received, as the node's network last reported them; `None` for a node
    /// without peers.
    network: Mutex<Option<(KindTraffic, KindTraffic)>>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics {
            head_height: AtomicU64::new(0),
            finalized_height: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            mempool: AtomicU64::new(0),
            peers: AtomicU64::new(0),
            block_duration: Latency::with_bounds(&BLOCK_BUCKETS),
            network: Mutex::new(None),
        }
    }
}

impl NodeMetrics {
    /// A block of `txs` transactions committed at `height`, `took` after its production
    /// or validation began.
    pub fn committed(&self, height: u64, txs: usize, took: Duration) {
        self.head_height.store(height, Relaxed);
        self.blocks.fetch_add(1, Relaxed);
        self.transactions.fetch_add(txs as u64, Relaxed);
        self.block_duration.record(took);
    }

    /// The network's totals so far.
    pub fn traffic(&self, sent: KindTraffic, received: KindTraffic) {
        *self.network.lock().unwrap_or_else(|p| p.into_inner()) = Some((sent, received));
    }

    pub fn block_duration(&self) -> LatencySnapshot {
        self.block_duration.snapshot()
    }
}

/// One sample's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Histogram(LatencySnapshot),
}

/// One series of a metric, at the time of gathering.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

impl Sample {
    /// Whether every `(name, value)` of `want` is one of this sample's labels.
    pub fn matches(&self, want: &BTreeMap<String, String>) -> bool {
        want.iter()
            .all(|(k, v)| self.labels.iter().any(|(n, x)| n == k && x == v))
    }

    fn number(labels: Vec<(&'static str, String)>, v: impl Into<f64>) -> Sample {
        Sample {
            labels,
            value: Value::Number(v.into()),
        }
    }
}

/// A metric and its samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub metric: &'static Metric,
    pub samples: Vec<Sample>,
}

/// Everything the metrics are read from.
pub struct Sources<'a> {
    pub host: &'a Host,
    pub node: &'a NodeMetrics,
    pub feature_set: &'a str,
    /// `(rule, severity, firing)` of every alert rule.
    pub alerts: &'a [(String, String, bool)],
    /// The shadow checker's counts and windows, if it runs.
    pub shadow: Option<(ShadowCounts, Vec<Window>)>,
    pub contracts: &'a [crate::contracts::ContractStatus],
    /// Rollbacks so far, by plugin.
    pub rollbacks: &'a BTreeMap<String, u64>,
}

/// Every metric of [`METRICS`] with its current samples.
pub fn gather(src: &Sources<'_>) -> Vec<Family> {
    let mut by_name: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
    let mut put = |name: &'static str, s: Sample| {
        debug_assert!(find(name).is_some(), "{name} is not in METRICS");
        by_name.entry(name).or_default().push(s);
    };
    for slot in src.host.slot_status() {
        let at = || vec![("slot", slot.slot.to_owned())];
        put(
            "dubchain_slot_calls_total",
            Sample::number(at(), slot.counters.calls as f64),
        );
        put(
            "dubchain_slot_fallbacks_total",
            Sample::number(at(), slot.counters.fallbacks as f64),
        );
        for p in &slot.detail {
            let at = || {
                vec![
                    ("slot", slot.slot.to_owned()),
                    ("plugin", p.plugin.clone()),
                    ("version", p.version.clone()),
                ]
            };
            let c = p.counters;
            for (name, v) in [
                ("dubchain_provider_calls_total", c.calls),
                ("dubchain_provider_errors_total", c.errors),
                ("dubchain_provider_panics_total", c.panics),
                ("dubchain_provider_fallbacks_total", c.fallbacks),
                ("dubchain_provider_breaker_open", u64::from(p.breaker_open)),
                ("dubchain_provider_demoted", u64::from(p.demoted)),
            ] {
                put(name, Sample::number(at(), v as f64));
            }
            put(
                "dubchain_provider_call_duration_seconds",
                Sample {
                    labels: at(),
                    value: Value::Histogram(p.latency.clone()),
                },
            );
        }
    }
    let states = src.host.plugin_states();
    for (plugin, state) in &states {
        let state = match state {
            PluginState::Disabled => continue,
            other => other.to_string(),
        };
        put(
            "dubchain_plugin_state",
            Sample::number(vec![("plugin", plugin.clone()), ("state", state)], 1u8),
        );
    }
    let enabled: Vec<&str> = states
        .iter()
        .filter(|(_, s)| matches!(s, PluginState::Enabled | PluginState::Fallback))
        .map(|(n, _)| n.as_str())
        .collect();
    put(
        "dubchain_feature_set_info",
        Sample::number(
            vec![
                ("feature_set", src.feature_set.to_owned()),
                ("plugins", enabled.join(",")),
            ],
            1u8,
        ),
    );
    let node = src.node;
    let gauge = |a: &AtomicU64| Sample::number(vec![], a.load(Relaxed) as f64);
    put("dubchain_head_height", gauge(&node.head_height));
    put("dubchain_finalized_height", gauge(&node.finalized_height));
    put("dubchain_blocks_total", gauge(&node.blocks));
    put("dubchain_transactions_total", gauge(&node.transactions));
    put(
        "dubchain_block_duration_seconds",
        Sample {
            labels: vec![],
            value: Value::Histogram(node.block_duration()),
        },
    );
    put("dubchain_mempool_transactions", gauge(&node.mempool));
    put("dubchain_peers", gauge(&node.peers));
    if let Some((sent, received)) = *node.network.lock().unwrap_or_else(|p| p.into_inner()) {
        for (t, bytes, messages) in [
            (
                sent,
                "dubchain_network_sent_bytes_total",
                "dubchain_network_sent_messages_total",
            ),
            (
                received,
                "dubchain_network_received_bytes_total",
                "dubchain_network_received_messages_total",
            ),
        ] {
            for (kind, k) in [("tx", t.tx), ("block", t.block), ("vote", t.vote)] {
                put(
                    bytes,
                    Sample::number(vec![("kind", kind.to_owned())], k.bytes as f64),
                );
                put(
                    messages,
                    Sample::number(vec![("kind", kind.to_owned())], k.messages as f64),
                );
            }
        }
    }
    if let Some(rss) = alloc_count::rss_bytes() {
        put(
            "dubchain_process_resident_memory_bytes",
            Sample::number(vec![], rss as f64),
        );
    }
    put(
        "dubchain_process_cpu_seconds_total",
        Sample::number(vec![], alloc_count::cpu_seconds()),
    );
    if let Some((counts, windows)) = &src.shadow {
        put(
            "dubchain_shadow_sampled_total",
            Sample::number(vec![], counts.sampled as f64),
        );
        put(
            "dubchain_shadow_dropped_total",
            Sample::number(vec![], counts.dropped as f64),
        );
        put(
            "dubchain_shadow_checked_total",
            Sample::number(vec![], counts.checked as f64),
        );
        for w in windows {
            put(
                "dubchain_shadow_mismatches_total",
                Sample::number(
                    vec![
                        ("slot", w.slot.clone()),
                        ("plugin", w.plugin.clone()),
                        ("version", w.version.clone()),
                    ],
                    w.mismatches as f64,
                ),
            );
        }
    }
    for c in src.contracts {
        let at = || vec![("slot", c.slot.clone()), ("plugin", c.plugin.clone())];
        put(
            "dubchain_contract_min_speedup",
            Sample::number(at(), c.min_speedup),
        );
        put(
            "dubchain_contract_broken",
            Sample::number(at(), u8::from(c.broken)),
        );
        if let Some(e) = c.speedup {
            for (bound, v) in [("median", e.median), ("low", e.low), ("high", e.high)] {
                let mut labels = at();
                labels.push(("bound", bound.to_owned()));
                put("dubchain_contract_speedup", Sample::number(labels, v));
            }
        }
    }
    for (plugin, n) in src.rollbacks {
        put(
            "dubchain_contract_rollbacks_total",
            Sample::number(vec![("plugin", plugin.clone())], *n as f64),
        );
    }
    for (rule, severity, firing) in src.alerts {
        put(
            "dubchain_alerts_firing",
            Sample::number(
                vec![("rule", rule.clone()), ("severity", severity.clone())],
                u8::from(*firing),
            ),
        );
    }
    METRICS
        .iter()
        .map(|metric| Family {
            metric,
            samples: by_name.remove(metric.name).unwrap_or_default(),
        })
        .collect()
}

/// The families in the Prometheus text exposition format (version 0.0.4).
pub fn encode(families: &[Family]) -> String {
    use prometheus::Encoder as _;
    // A family without samples (no providers yet, a node without peers) is left out: the
    // format has no way to say "no series".
    let families: Vec<proto::MetricFamily> = families
        .iter()
        .filter(|f| !f.samples.is_empty())
        .map(to_proto)
        .collect();
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&families, &mut out)
        .expect("a family built from METRICS encodes");
    String::from_utf8(out).expect("the text encoder writes UTF-8")
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

fn to_proto(f: &Family) -> proto::MetricFamily {
    let mut family = proto::MetricFamily::default();
    family.set_name(f.metric.name.to_owned());
    family.set_help(f.metric.help.to_owned());
    family.set_field_type(match f.metric.kind {
        Counter => proto::MetricType::COUNTER,
        Gauge => proto::MetricType::GAUGE,
        Histogram => proto::MetricType::HISTOGRAM,
    });
    for s in &f.samples {
        let mut m = proto::Metric::from_label(
            s.labels
                .iter()
                .map(|(k, v)| {
                    let mut l = proto::LabelPair::default();
                    l.set_name((*k).to_owned());
                    l.set_value(v.clone());
                    l
                })
                .collect(),
        );
        match (&s.value, f.metric.kind) {
            (Value::Number(v), Counter) => {
                let mut c = proto::Counter::default();
                c.set_value(*v);
                m.set_counter(c);
            }
            (Value::Number(v), _) => {
                let mut g = proto::Gauge::default();
                g.set_value(*v);
                m.set_gauge(g);
            }
            (Value::Histogram(h), _) => {
                let mut p = proto::Histogram::default();
                p.set_sample_count(h.count);
                p.set_sample_sum(h.sum_seconds);
                p.set_bucket(
                    h.cumulative
                        .iter()
                        .map(|(bound, count)| {
                            let mut b = proto::Bucket::default();
                            b.set_upper_bound(*bound);
                            b.set_cumulative_count(*count);
                            b
                        })
                        .collect(),
                );
                m.set_histogram(p);
            }
        }
        family.mut_metric().push(m);
    }
    family
}
