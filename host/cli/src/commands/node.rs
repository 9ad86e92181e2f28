//! `node`: one node as a long-running process with its monitor; `monitor metrics | rules |
//! dashboard`: what the monitor exports, for Prometheus and Grafana.

use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{Context, Result};
use dubchain_host::{
    session::Session,
    watch::{watch, ReloadEvent, Reloader},
};
use dubchain_monitor::{alerts, config, metrics, Monitor};
use dubchain_node::{cluster::Observed, launch, ledger, process};

use crate::{
    args::{ClusterArgs, NodeArgs},
    print, BadInput,
};

/// How long a launched node waits for all its peers to connect.
const LAUNCHED_CONNECT: Duration = Duration::from_secs(120);

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

/// The node's first load, said once: what it loaded, or that every slot is on its baseline
/// (and, without a plugin directory, that nothing is watched). Its warnings are the
/// session's, printed before it; what failed or was not applied goes to stderr.
fn say_first_load(first: &ReloadEvent, watched: bool) {
    let id = &first.feature_set_id;
    if first.loaded.is_empty() {
        println!("loaded no plugin: every slot on its baseline (feature set {id})");
    } else {
        println!("loaded {} (feature set {id})", first.loaded.join(", "));
    }
    for e in &first.failed {
        eprintln!("error: {e}");
    }
    for p in &first.problems {
        eprintln!("error: not applied: {p}");
    }
    if !watched {
        println!("no plugin directory to watch: plugins dropped in later are not loaded; create it, or give --plugin-dir, and restart");
    }
}

pub fn node(s: &Session, args: &NodeArgs) -> Result<ExitCode> {
    if !args.baselines {
        // On the baselines the plugin directory and the plugins' settings are not read.
        print::manifest_errors(s);
    }
    // Checked before anything is created or bound. A monitor configuration that cannot be
    // read is refused; a broken rule or setting in one that can is left out, and said.
    let config = match &args.monitor_config {
        Some(path) => config::read(path).map_err(BadInput)?,
        None => (config::builtin(), Vec::new()),
    };
    for e in &config.1 {
        eprintln!("warning: {e}");
    }
    let placement = if args.peers.is_empty() && !args.launched {
        None
    } else {
        let n = args.workload.validators;
        if args.peers.len() + 1 != n {
            return Err(BadInput(format!(
                "--validators {n} with {} --peer: give one --peer INDEX@ADDR per other validator",
                args.peers.len()
            ))
            .into());
        }
        let mut placement = process::Placement {
            index: args.index,
            listen: args.listen,
            peers: args.peers.clone(),
        };
        placement.check(n).map_err(|e| BadInput(e.to_string()))?;
        let listener = match args.listen_fd {
            Some(fd) => process::inherited_listener(fd)?,
            None => std::net::TcpListener::bind(args.listen).with_context(|| {
                format!(
                    "--listen {}: cannot listen there; give a free address",
                    args.listen
                )
            })?,
        };
        placement.listen = listener.local_addr()?;
        Some((placement, listener))
    };
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        BadInput(format!(
            "data directory {}: cannot create it ({e}); give a writable --data-dir",
            dir.display()
        ))
    })?;
    // Before the monitor writes its token there: a second node on this directory stops here.
    let _held = dubchain_node::state::lock_data_dir(dir).map_err(anyhow::Error::msg)?;
    let host = Arc::new(s.host());
    let reloader = Arc::new(Reloader::new(host.clone(), s.options.clone()));
    let feature_set = if args.baselines {
        println!("on the baselines: no plugin loaded");
        "baselines".to_owned()
    } else {
        let first = reloader.reload(Vec::new());
        say_first_load(&first, s.options.plugin_dir.is_dir());
        first.feature_set_id
    };
    let monitor = Arc::new(
        Monitor::new(host.clone(), Some(reloader.clone()), config, dir)?
            .with_change_log(Box::new(|what, event| println!("{what}: {event}"))),
    );
    monitor.set_feature_set(&feature_set);
    let running =
        dubchain_monitor::serve(monitor.clone(), args.monitor, dir, Duration::from_secs(1))?;
    println!(
        "monitor on http://{} (metrics /metrics, status /api/status, alerts /api/alerts); admin token in {}",
        running.addr,
        running.token_path.display()
    );
    // Hot reload of the plugin directory; without one the node runs on what it has.
    let plugin_dir = &s.options.plugin_dir;
    let _watcher = if args.baselines {
        None
    } else if plugin_dir.is_dir() {
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
        // Said with the first load.
        None
    };
    stop_on_signals();
    let block_time = Duration::from_millis(args.block_time_ms);
    let node = monitor.node.clone();
    let head = if let Some((placement, listener)) = placement {
        let n = args.workload.validators;
        println!(
            "validator {} of {n}, listening for peers on {}",
            args.index, placement.listen
        );
        let observe = |o: &Observed| {
            node.committed(o.head.height, o.txs, o.took);
            node.finalized_height.store(o.finalized, Ordering::Relaxed);
            node.mempool.store(o.mempool as u64, Ordering::Relaxed);
            node.peers.store(o.peers as u64, Ordering::Relaxed);
            node.traffic(o.sent, o.received);
        };
        let report = |r: &process::Report| {
            use std::io::Write as _;
            let json = serde_json::to_string(r).expect("a report serializes");
            // A launcher that went away is not this node's failure: no panic on a closed pipe.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}{json}", launch::REPORT).and_then(|()| out.flush());
            drop(out);
            // Held open for peers still sending until the launcher closes standard input.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        };
        let peering = if args.launched {
            process::Peering::Fixed {
                timeout: LAUNCHED_CONNECT,
                finished: &report,
            }
        } else {
            process::Peering::Open
        };
        process::run_node(
            &host,
            args.workload.config(args.seed),
            dir.clone(),
            (&placement, listener),
            (&STOP, args.until_height, block_time),
            peering,
            &observe,
        )?
        .head
    } else {
        ledger::produce_paced(
            &host,
            &args.data_dir,
            &args.workload.config(args.seed),
            (&STOP, args.until_height, block_time),
            |head| node.head_height.store(head.height, Ordering::Relaxed),
            |p| {
                node.committed(p.block.header.height, p.block.transactions.len(), p.took);
                node.mempool.store(p.mempool as u64, Ordering::Relaxed);
            },
        )?
    };
    println!(
        "stopped at head {} {:?}; every block up to it is committed",
        head.height, head.hash
    );
    drop(running);
    Ok(ExitCode::SUCCESS)
}

/// `cluster`: N `node` processes of this binary on loopback, to the same final height.
pub fn cluster(args: &ClusterArgs, global: Vec<String>) -> Result<ExitCode> {
    let n = usize::from(args.nodes);
    let mut workload = args.workload.config(args.seed);
    workload.validators = n;
    let l = launch::Launch {
        exe: std::env::current_exe()?,
        host_args: global,
        node_args: Vec::new(),
        workload,
        until_height: args.until_height,
        block_time: Duration::from_millis(args.block_time_ms),
        data_dir: args.data_dir.clone(),
        timeout: Duration::from_secs(args.timeout),
    };
    println!(
        "{n} node process{}, stores in {}, to height {}",
        if n == 1 { "" } else { "es" },
        args.data_dir.display(),
        args.until_height
    );
    let reports = launch::launch(&l, |index, line| {
        if line.starts_with("monitor on ") {
            println!("node {index}: {line}");
        }
    })
    .map_err(|e| match e {
        launch::LaunchError::NotScratch(why) => anyhow::Error::from(crate::BadInput(why)),
        e => e.into(),
    })?;
    let first = reports[0].outcome.head;
    let started = reports.iter().map(|r| r.started_unix_ns).min().unwrap_or(0);
    let mut agreed = true;
    for r in &reports {
        let o = &r.outcome;
        let sent = o.stats.network.sent.total();
        println!(
            "node {}: head {} {:?}, {} final; sent {} frames ({} bytes), {} peer threads; ran {:.3} s",
            o.index,
            o.head.height,
            o.head.hash,
            o.finalized,
            sent.messages,
            sent.bytes,
            o.stats.network.threads,
            r.finished_unix_ns.saturating_sub(started) as f64 / 1e9
        );
        agreed &= o.head == first;
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
        Some(p) => config::read(p).map_err(BadInput)?,
        None => (config::builtin(), Vec::new()),
    };
    if !errors.is_empty() {
        // All or nothing: a rules file without the rules that did not parse would drop
        // their alerts without a word once deployed.
        for e in &errors {
            eprintln!("error: {e}");
        }
        eprintln!("error: nothing printed; fix the monitor configuration first");
        return Ok(ExitCode::from(2));
    }
    print!("{}", alerts::prometheus_rules(&config.rules));
    Ok(ExitCode::SUCCESS)
}

pub fn dashboard() -> Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string_pretty(&dubchain_monitor::grafana::dashboard())?
    );
    Ok(ExitCode::SUCCESS)
}
