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
pub mod config;
pub mod contracts;
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

use dubchain_host::{
    shadow::{Shadow, ShadowConfig},
    watch::{ReloadEvent, Reloader},
    Host,
};
use serde::Serialize;

pub use metrics::NodeMetrics;
pub use server::serve;

/// The monitor's default address: loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// The admin token's file name in the node's data directory.
pub const TOKEN_FILE: &str = dubchain_node::state::MONITOR_TOKEN;

/// Where shadow checks write the evidence of differing answers, in the data directory.
pub const EVIDENCE_DIR: &str = dubchain_node::state::SHADOW_EVIDENCE;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the monitor watches, and its alert rules.
pub struct Monitor {
    host: Arc<Host>,
    /// How the admin API changes the running set (`None`: no admin API).
    reloader: Option<Arc<Reloader>>,
    pub node: Arc<NodeMetrics>,
    engine: Mutex<alerts::Engine>,
    /// Why parts of the configuration were left out.
    pub config_errors: Vec<String>,
    feature_set: Mutex<String>,
    token: String,
    started: Instant,
    /// The shadow checker of the host's replayable slots (`None`: `[shadow] every = 0`).
    shadow: Option<Arc<Shadow>>,
    contract_settings: config::Contracts,
    /// The contracts as last judged.
    contracts: Mutex<Vec<contracts::ContractStatus>>,
    rollbacks: Mutex<Vec<contracts::Rollback>>,
    /// Rollbacks by plugin, with a 0 for every plugin judged (so the counter exists before
    /// its first increment).
    rollback_counts: Mutex<BTreeMap<String, u64>>,
    /// Where the changes the monitor makes to the running set are told (the node's log).
    change_log: Option<ChangeLog>,
}

/// Tells of one change the monitor made: what asked for it, and the reload it caused.
pub type ChangeLog = Box<dyn Fn(&str, &ReloadEvent) + Send + Sync>;

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.shadow.is_some() {
            self.host.slots.set_shadow(None);
        }
    }
}

impl Monitor {
    /// A monitor of `host` (changed through `reloader`, if given) with `config` (and what
    /// was wrong with its file, which the caller tells and `/api/alerts` lists); writes a new admin token to `data_dir/monitor.token` (mode
    /// 0600) and starts shadow checking the host's replayable slots, with evidence under
    /// `data_dir/shadow-evidence/`.
    pub fn new(
        host: Arc<Host>, reloader: Option<Arc<Reloader>>,
        (config, config_errors): (config::MonitorConfig, Vec<String>), data_dir: &Path,
    ) -> anyhow::Result<Monitor> {
        let token = new_token();
        write_token(&data_dir.join(TOKEN_FILE), &token)?;
        let shadow = match config.shadow.every {
            0 => None,
            every => {
                let shadow = Shadow::start(ShadowConfig {
                    every,
                    queue: config.shadow.queue,
                    evidence_dir: data_dir.join(EVIDENCE_DIR),
                    window: config.shadow.window,
                })?;
                host.slots.set_shadow(Some(shadow.clone()));
                Some(shadow)
            }
        };
        Ok(Monitor {
            host,
            reloader,
            node: Arc::new(NodeMetrics::default()),
            engine: Mutex::new(alerts::Engine::new(config.rules, Instant::now())),
            config_errors,
            feature_set: Mutex::new(String::new()),
            token,
            started: Instant::now(),
            shadow,
            contract_settings: config.contracts,
            contracts: Mutex::new(Vec::new()),
            rollbacks: Mutex::new(Vec::new()),
            rollback_counts: Mutex::new(BTreeMap::new()),
            change_log: None,
        })
    }

    /// Tells `log` of every change the admin API or a rollback makes, so that the node's
    /// log shows them beside the plugin directory's reloads.
    pub fn with_change_log(mut self, log: ChangeLog) -> Monitor {
        self.change_log = Some(log);
        self
    }

    fn log_change(&self, what: &str, event: &ReloadEvent) {
        if let Some(log) = &self.change_log {
            log(what, event);
        }
    }

    /// The shadow checker, if it runs.
    pub fn shadow(&self) -> Option<&Arc<Shadow>> {
        self.shadow.as_ref()
    }

    /// Judges every contract on the shadow samples and, with `action = "rollback"`,
    /// disables each plugin whose contract is broken, through the admin API's path.
    pub fn judge_contracts(&self) -> Vec<contracts::ContractStatus> {
        let Some(shadow) = &self.shadow else {
            return Vec::new();
        };
        let judged = contracts::judge(&self.host, &shadow.windows(), &self.contract_settings);
        {
            let mut counts = lock(&self.rollback_counts);
            for c in &judged {
                counts.entry(c.plugin.clone()).or_insert(0);
            }
        }
        if self.contract_settings.action == config::Action::Rollback {
            for c in judged.iter().filter(|c| c.broken) {
                self.roll_back(c, shadow);
            }
        }
        *lock(&self.contracts) = judged.clone();
        judged
    }

    fn roll_back(&self, c: &contracts::ContractStatus, shadow: &Shadow) {
        let why = c.why(self.contract_settings.tolerance);
        let refused = match &self.reloader {
            None => Some("this monitor has no admin path to disable plugins".to_owned()),
            Some(reloader) => {
                let event = reloader.try_change(|o| o.set_by_monitor(&c.plugin, false));
                self.log_change(&format!("contract rollback: disable {}", c.plugin), &event);
                if let Some(id) = (event.problems.is_empty()).then_some(&event.feature_set_id) {
                    self.set_feature_set(id);
                    None
                } else {
                    Some(event.problems.join("; "))
                }
            }
        };
        match &refused {
            None => tracing::error!(plugin = %c.plugin, "rolled back: {why}"),
            Some(r) => {
                tracing::error!(plugin = %c.plugin, "contract broken ({why}) but the rollback was refused: {r}")
            }
        }
        shadow.forget(&c.plugin);
        *lock(&self.rollback_counts)
            .entry(c.plugin.clone())
            .or_insert(0) += u64::from(refused.is_none());
        lock(&self.rollbacks).push(contracts::Rollback {
            plugin: c.plugin.clone(),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            why,
            refused,
        });
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

    /// Every metric, now (the contracts as last judged).
    pub fn gather(&self) -> Vec<metrics::Family> {
        let firing = self.engine().firing();
        let contracts = lock(&self.contracts).clone();
        let rollbacks = lock(&self.rollback_counts).clone();
        metrics::gather(&metrics::Sources {
            host: &self.host,
            node: &self.node,
            feature_set: &self.feature_set(),
            alerts: &firing,
            shadow: self.shadow.as_ref().map(|s| (s.counts(), s.windows())),
            contracts: &contracts,
            rollbacks: &rollbacks,
        })
    }

    /// Judges the contracts, then evaluates the alert rules on the metrics now; returns the
    /// transitions.
    pub fn evaluate(&self) -> Vec<alerts::Transition> {
        self.judge_contracts();
        let families = self.gather();
        self.engine().evaluate(Instant::now(), &families)
    }

    /// `/api/alerts`.
    pub fn alerts(&self) -> AlertsReport {
        let engine = self.engine();
        AlertsReport {
            rules: engine.status(Instant::now()),
            transitions: engine.transitions(),
            config_errors: self.config_errors.clone(),
        }
    }

    /// `/api/status`: the node, its plugins and slots, the process, firing alerts.
    pub fn status(&self) -> Status {
        use std::sync::atomic::Ordering::Relaxed;
        let n = &self.node;
        let blocks = n.block_duration();
        let firing = self
            .engine()
            .firing()
            .into_iter()
            .filter_map(|(rule, _, firing)| firing.then_some(rule))
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
            shadow: ShadowStatus {
                every: self.shadow.as_ref().map(|s| s.every()),
                counts: self.shadow.as_ref().map(|s| s.counts()),
                replayed: dubchain_host::shadow::REPLAYED.to_vec(),
                not_replayed: dubchain_host::shadow::NOT_REPLAYED
                    .iter()
                    .map(|(slot, why)| NotReplayed { slot, why })
                    .collect(),
                mismatches: self
                    .shadow
                    .as_ref()
                    .map(|s| s.mismatches())
                    .unwrap_or_default(),
            },
            contracts: lock(&self.contracts).clone(),
            rollbacks: lock(&self.rollbacks).clone(),
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
    pub shadow: ShadowStatus,
    pub contracts: Vec<contracts::ContractStatus>,
    pub rollbacks: Vec<contracts::Rollback>,
}

/// Shadow checking, in `/api/status`.
#[derive(Debug, Serialize)]
pub struct ShadowStatus {
    /// One call in how many is checked (`None`: off).
    pub every: Option<u32>,
    pub counts: Option<dubchain_host::shadow::ShadowCounts>,
    /// The slots whose calls are checked.
    pub replayed: Vec<&'static str>,
    /// The slots whose calls are not, and why.
    pub not_replayed: Vec<NotReplayed>,
    pub mismatches: Vec<dubchain_host::shadow::Mismatch>,
}

#[derive(Debug, Serialize)]
pub struct NotReplayed {
    pub slot: &'static str,
    pub why: &'static str,
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
    pub config_errors: Vec<String>,
}

/// 32 random bytes from the operating system, in hex.
fn new_token() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    dubchain_plugin_api::types::hex_encode(&bytes)
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
