//! `node`: one node as a long-running process with its monitor; `monitor metrics | rules |
//! dashboard`: what the monitor exports, for Prometheus and Grafana.

use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use dubchain_host::{
    session::Session,
    watch::{watch, Reloader},
};
use dubchain_monitor::{alerts, config, metrics, Monitor};
use dubchain_node::ledger;

use crate::{args::NodeArgs, print};

/// Set by SIGINT or SIGTERM: the node finishes the block in progress and stops.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stop_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

pub fn node(s: &Session, args: &NodeArgs) -> Result<ExitCode> {
    print::manifest_errors(s);
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "data directory {}: cannot create it; give a writable --data-dir",
            dir.display()
        )
    })?;
    let host = Arc::new(s.host());
    let reloader = Arc::new(Reloader::new(host.clone(), s.options.clone()));
    let first = reloader.reload(Vec::new());
    println!("{first}");
    let config = match &args.monitor_config {
        Some(path) => config::load(path),
        None => (config::builtin(), Vec::new()),
    };
    for e in &config.1 {
        eprintln!("error: {e}");
    }
    let monitor = Arc::new(Monitor::new(
        host.clone(),
        Some(reloader.clone()),
        config,
        dir,
    )?);
    monitor.set_feature_set(&first.feature_set_id);
    let running =
        dubchain_monitor::serve(monitor.clone(), args.monitor, dir, Duration::from_secs(1))?;
    println!(
        "monitor on http://{} (metrics /metrics, status /api/status, alerts /api/alerts); admin token in {}",
        running.addr,
        running.token_path.display()
    );
    let _watcher = {
        let monitor = monitor.clone();
        watch(&s.options.plugin_dir, reloader, move |event| {
            if event.problems.is_empty() {
                monitor.set_feature_set(&event.feature_set_id);
            }
            println!("{event}");
        })
        .with_context(|| format!("watching {}", s.options.plugin_dir.display()))?
    };
    stop_on_signals();
    let block_time = Duration::from_millis(args.block_time_ms);
    let mut next = Instant::now();
    let node = monitor.node.clone();
    let head = ledger::produce_while(
        &host,
        dir,
        &args.workload.config(args.seed),
        |head| {
            node.head_height.store(head.height, Ordering::Relaxed);
            if args.until_height.is_some_and(|h| head.height >= h) {
                return false;
            }
            // Wait for the next block time, a signal cutting the wait short.
            while Instant::now() < next && !STOP.load(Ordering::SeqCst) {
                std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
            }
            next = Instant::now().max(next) + block_time;
            !STOP.load(Ordering::SeqCst)
        },
        |p| {
            node.committed(p.block.header.height, p.block.transactions.len(), p.took);
            node.mempool.store(p.mempool as u64, Ordering::Relaxed);
        },
    )?;
    println!(
        "stopped at head {} {:?}; every block up to it is committed",
        head.height, head.hash
    );
    drop(running);
    Ok(ExitCode::SUCCESS)
}

pub fn metrics() -> Result<ExitCode> {
    for m in metrics::METRICS {
        let labels = if m.labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", m.labels.join(","))
        };
        println!("{}{labels} ({:?}): {}", m.name, m.kind, m.help);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rules(path: Option<&std::path::Path>) -> Result<ExitCode> {
    let (config, errors) = match path {
        Some(p) => config::load(p),
        None => (config::builtin(), Vec::new()),
    };
    let rules = config.rules;
    for e in &errors {
        eprintln!("error: {e}");
    }
    print!("{}", alerts::prometheus_rules(&rules));
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn dashboard() -> Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string_pretty(&dubchain_monitor::grafana::dashboard())?
    );
    Ok(ExitCode::SUCCESS)
}
