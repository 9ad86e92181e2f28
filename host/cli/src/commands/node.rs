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
use dubchain_node::{cluster::Observed, ledger, process};

use crate::{
    args::{ClusterArgs, NodeArgs},
    print,
};

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
    // Hot reload of the plugin directory; without one the node runs on what it has.
    let plugin_dir = &s.options.plugin_dir;
    let _watcher = if plugin_dir.is_dir() {
        let monitor = monitor.clone();
        Some(
            watch(plugin_dir, reloader, move |event| {
                if event.problems.is_empty() {
                    monitor.set_feature_set(&event.feature_set_id);
                }
                println!("{event}");
            })
            .with_context(|| format!("watching {}", plugin_dir.display()))?,
        )
    } else {
        eprintln!(
            "warning: plugin directory {} does not exist: the node runs on the baselines and watches nothing; create it, or give --plugin-dir",
            plugin_dir.display()
        );
        None
    };
    stop_on_signals();
    let block_time = Duration::from_millis(args.block_time_ms);
    let node = monitor.node.clone();
    let head = if args.peers.is_empty() {
        alone(&host, args, &node, block_time)?
    } else {
        let n = args.workload.validators;
        if args.peers.len() + 1 != n {
            anyhow::bail!(
                "--validators {n} with {} --peer: give one --peer INDEX@ADDR per other validator",
                args.peers.len()
            );
        }
        let placement = process::Placement {
            index: args.index,
            listen: args.listen,
            peers: args.peers.clone(),
        };
        println!(
            "validator {} of {n}, listening for peers on {}",
            args.index, args.listen
        );
        let observe = |o: &Observed| {
            node.committed(o.head.height, o.txs, o.took);
            node.finalized_height.store(o.finalized, Ordering::Relaxed);
            node.mempool.store(o.mempool as u64, Ordering::Relaxed);
            node.peers.store(o.peers as u64, Ordering::Relaxed);
            node.traffic(o.sent, o.received);
        };
        process::run_node(
            &host,
            args.workload.config(args.seed),
            dir.clone(),
            &placement,
            (&STOP, args.until_height, block_time),
            &observe,
        )?
        .head
    };
    println!(
        "stopped at head {} {:?}; every block up to it is committed",
        head.height, head.hash
    );
    drop(running);
    Ok(ExitCode::SUCCESS)
}

/// A node without peers: it produces every block itself, one per `block_time`.
fn alone(
    host: &dubchain_host::Host,
    args: &NodeArgs,
    node: &dubchain_monitor::NodeMetrics,
    block_time: Duration,
) -> Result<dubchain_node::state::Head> {
    let mut next = Instant::now();
    Ok(ledger::produce_while(
        host,
        &args.data_dir,
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
    )?)
}

/// `cluster`: N `node` processes of this binary on loopback, to the same final height.
pub fn cluster(args: &ClusterArgs, global: Vec<String>) -> Result<ExitCode> {
    let n = usize::from(args.nodes);
    let free = || -> Result<std::net::SocketAddr> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
    };
    let listen: Vec<_> = (0..n).map(|_| free()).collect::<Result<_>>()?;
    let exe = std::env::current_exe()?;
    let mut workload = args.workload.clone();
    workload.validators = n;
    let mut children = Vec::with_capacity(n);
    for (i, addr) in listen.iter().enumerate() {
        let dir = args.data_dir.join(format!("node-{i}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(&global)
            .arg("node")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--index", &i.to_string(), "--listen", &addr.to_string()])
            .args(["--monitor", "127.0.0.1:0", "--seed", &args.seed.to_string()])
            .args(["--until-height", &args.until_height.to_string()])
            .args(["--block-time-ms", &args.block_time_ms.to_string()])
            .args(workload.child_args())
            .stdout(std::process::Stdio::piped());
        for (j, a) in listen.iter().enumerate().filter(|(j, _)| *j != i) {
            cmd.args(["--peer", &format!("{j}@{a}")]);
        }
        children.push(cmd.spawn().context("starting a node process")?);
    }
    println!(
        "{n} node processes on {}",
        listen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut heads = Vec::with_capacity(n);
    for (i, mut child) in children.into_iter().enumerate() {
        let out = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = child.wait()?;
        let stdout = reader.join().unwrap_or_default();
        let head = stdout
            .lines()
            .find_map(|l| l.strip_prefix("stopped at head "))
            .and_then(|r| {
                let mut w = r.split_whitespace();
                Some((
                    w.next()?.to_owned(),
                    w.next()?.trim_end_matches(';').to_owned(),
                ))
            });
        heads.push((i, status, head));
    }
    let mut agreed = true;
    let first = heads.first().and_then(|(_, _, h)| h.clone());
    for (i, status, head) in &heads {
        match head {
            Some((height, hash)) => println!("node {i}: head {height} {hash} ({status})"),
            None => println!("node {i}: no head reported ({status})"),
        }
        agreed &= status.success() && head.is_some() && *head == first;
    }
    if agreed {
        println!("every node stopped at the same head");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: the nodes did not all stop at the same head");
        Ok(ExitCode::FAILURE)
    }
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
