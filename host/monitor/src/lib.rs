//! The performance monitor of a running node: Prometheus metrics (`/metrics`), a JSON
//! status and the alerts (`/api/status`, `/api/alerts`), a self-contained live dashboard
//! (`/`), and an admin API that enables and disables plugins and reloads the plugin
//! directory through the same resolution and checks as start-up.
//!
//! A [`Monitor`] reads the node's host and the [`NodeMetrics`] the node keeps; [`serve`]
//! puts it on an HTTP server (axum, on a tokio runtime of its own thread) and evaluates the
//! alert rules every second on another thread. Nothing here runs on the node's call path:
//! the metrics are the host's own counters, read when scraped.
//!
//! Depends on the host and the node (for their figures); nothing below depends on it.

pub mod alerts;
pub mod grafana;
pub mod metrics;
mod server;

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use dubchain_host::{watch::Reloader, Host};
use serde::Serialize;

pub use metrics::NodeMetrics;
pub use server::serve;

/// The monitor's default address: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// The admin token's file name in the node's data directory.
pub const TOKEN_FILE: &str = "monitor.token";

/// What the monitor watches, and its alert rules.
pub struct Monitor {
    host: Arc<Host>,
    /// How the admin API changes the running set (`None`: no admin API).
    reloader: Option<Arc<Reloader>>,
    pub node: Arc<NodeMetrics>,
    engine: Mutex<alerts::Engine>,
    /// Why rules of the rules file were left out.
    pub rule_errors: Vec<String>,
    feature_set: Mutex<String>,
    token: String,
    started: Instant,
}

impl Monitor {
    /// A monitor of `host` (changed through `reloader`, if given) with `rules`; writes a new
    /// admin token to `data_dir/monitor.token` (mode 0600).
    pub fn new(
        host: Arc<Host>,
        reloader: Option<Arc<Reloader>>,
        (rules, rule_errors): (Vec<alerts::Rule>, Vec<String>),
        data_dir: &Path,
    ) -> anyhow::Result<Monitor> {
        let token = new_token();
        write_token(&data_dir.join(TOKEN_FILE), &token)?;
        for e in &rule_errors {
            tracing::warn!("{e}");
        }
        Ok(Monitor {
            host,
            reloader,
            node: Arc::new(NodeMetrics::default()),
            engine: Mutex::new(alerts::Engine::new(rules, Instant::now())),
            rule_errors,
            feature_set: Mutex::new(String::new()),
            token,
            started: Instant::now(),
        })
    }

    /// The feature set the node now runs (shown in `/api/status` and as an info metric).
    pub fn set_feature_set(&self, id: &str) {
        *self.feature_set.lock().unwrap_or_else(|p| p.into_inner()) = id.to_owned();
    }

    fn feature_set(&self) -> String {
        self.feature_set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, alerts::Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every metric, now.
    pub fn gather(&self) -> Vec<metrics::Family> {
        let firing = self.engine().firing();
        metrics::gather(&metrics::Sources {
            host: &self.host,
            node: &self.node,
            feature_set: &self.feature_set(),
            alerts: &firing,
        })
    }

    /// Evaluates the alert rules on the metrics now; returns the transitions.
    pub fn evaluate(&self) -> Vec<alerts::Transition> {
        let families = self.gather();
        self.engine().evaluate(Instant::now(), &families)
    }

    /// `/api/alerts`.
    pub fn alerts(&self) -> AlertsReport {
        let engine = self.engine();
        AlertsReport {
            rules: engine.status(Instant::now()),
            transitions: engine.transitions(),
            rule_errors: self.rule_errors.clone(),
        }
    }

    /// `/api/status`: the node, its plugins and slots, the process, firing alerts.
    pub fn status(&self) -> Status {
        use std::sync::atomic::Ordering::Relaxed;
        let n = &self.node;
        let blocks = n.block_duration();
        let firing = self
            .alerts()
            .rules
            .into_iter()
            .filter(|r| r.phase == alerts::Phase::Firing)
            .map(|r| r.rule.name)
            .collect();
        Status {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            feature_set: self.feature_set(),
            node: NodeStatus {
                head_height: n.head_height.load(Relaxed),
                finalized_height: n.finalized_height.load(Relaxed),
                blocks: n.blocks.load(Relaxed),
                transactions: n.transactions.load(Relaxed),
                mempool: n.mempool.load(Relaxed),
                peers: n.peers.load(Relaxed),
                block_seconds_p50: blocks.quantile_bound(0.5),
                block_seconds_p99: blocks.quantile_bound(0.99),
            },
            plugins: self
                .host
                .plugin_states()
                .into_iter()
                .map(|(name, s)| (name, s.to_string()))
                .collect(),
            slots: self.host.slot_status(),
            system_metrics: SystemMetrics {
                memory_usage_mb: dubchain_host::alloc_count::rss_bytes()
                    .map(|b| b as f64 / (1024.0 * 1024.0)),
                cpu_seconds: dubchain_host::alloc_count::cpu_seconds(),
            },
            alerts_firing: firing,
            admin: self.reloader.is_some(),
        }
    }
}

/// `/api/status`'s answer (the original design's performance summary, for a live node).
#[derive(Debug, Serialize)]
pub struct Status {
    pub uptime_seconds: f64,
    pub feature_set: String,
    pub node: NodeStatus,
    /// Every plugin the host has loaded or failed to load, and its state.
    pub plugins: BTreeMap<String, String>,
    pub slots: Vec<dubchain_host::slot::SlotStatus>,
    pub system_metrics: SystemMetrics,
    pub alerts_firing: Vec<String>,
    /// Whether the admin API is available.
    pub admin: bool,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub head_height: u64,
    pub finalized_height: u64,
    pub blocks: u64,
    pub transactions: u64,
    pub mempool: u64,
    pub peers: u64,
    /// Upper bounds of the buckets holding the median and the 99th percentile of block
    /// durations (`None` before the first block).
    pub block_seconds_p50: Option<f64>,
    pub block_seconds_p99: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct SystemMetrics {
    pub memory_usage_mb: Option<f64>,
    pub cpu_seconds: f64,
}

/// `/api/alerts`'s answer.
#[derive(Debug, Serialize)]
pub struct AlertsReport {
    pub rules: Vec<alerts::RuleStatus>,
    pub transitions: Vec<alerts::Transition>,
    pub rule_errors: Vec<String>,
}

/// 32 random bytes from the operating system, in hex.
fn new_token() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `token` to `path`, readable and writable by the owner only.
fn write_token(path: &Path, token: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}; the monitor writes its admin token there",
                path.display()
            )
        })?;
    // An existing file keeps its mode through `open`: set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(token.as_bytes())?;
    Ok(())
}

/// A running monitor: its server and its alert evaluator. Dropping it stops both.
pub struct Running {
    pub addr: SocketAddr,
    pub token_path: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    evaluator: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in [self.server.take(), self.evaluator.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}

/// Evaluates `monitor`'s alert rules every `every` until `stop`.
fn evaluate_every(monitor: Arc<Monitor>, every: Duration, stop: Arc<AtomicBool>) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            monitor.evaluate();
            next += every;
        }
        std::thread::sleep(Duration::from_millis(50).min(every));
    }
}
