//! Starting a cluster as operating-system processes: N `dubchain-perf node --launched`
//! children on loopback, each its own process with its own host, plugins and store, run to
//! the same final height and reported (`dubchain-perf cluster`, and the main job's network
//! stage through `dubchain-instruments`).
//!
//! The protocol with a child, over its standard streams:
//! * the child connects to every peer, runs until `until_height` is final, sends its last
//!   frames and prints one line `report <JSON>` ([`crate::process::Report`]);
//! * it then keeps its connections open (a peer may still be sending it the last votes: a
//!   write to a closed peer is a failed send) until its standard input closes;
//! * the launcher closes every child's standard input once all have reported, or kills all
//!   of them when one fails or the timeout passes. No child outlives [`launch`].
//!
//! Each child's peer socket is bound by the launcher and inherited (`--listen-fd`), never
//! closed and bound again: between the two, the port is free for anyone, and the nodes
//! themselves take free ports (their monitors' `127.0.0.1:0`, their outgoing connections)
//! from the same range. The main job once failed so ("Address already in use").
//!
//! This module speaks the command line of `dubchain-perf node` (`node_args`); the CLI's
//! tests start clusters through it, which holds the two together.

use std::{
    io::{BufRead, BufReader, Read},
    net::{SocketAddr, TcpListener},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::{gen::WorkloadConfig, process::Report};

/// The line a launched node prints when its run is over: this prefix, then the JSON.
pub const REPORT: &str = "report ";

/// What to start.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `dubchain-perf` binary.
    pub exe: PathBuf,
    /// Its arguments before `node`: the plugin selection (`--plugin-dir`, `--profile`, ...).
    pub host_args: Vec<String>,
    /// More arguments of `node` itself (`--baselines`, `--monitor-config FILE`).
    pub node_args: Vec<String>,
    /// `validators` is the number of nodes.
    pub workload: WorkloadConfig,
    pub until_height: u64,
    pub block_time: Duration,
    /// Node `i`'s store goes in `<data_dir>/node-<i>`, emptied first if an earlier launch
    /// made it (see [`SCRATCH_MARK`]); any other non-empty one is refused.
    pub data_dir: PathBuf,
    /// How long the whole cluster may take, start-up included.
    pub timeout: Duration,
}

/// `--field-name value` for each field of `$from` named (underscores become dashes, as
/// clap names a field's flag): the arguments that hand a parsed value on to a child
/// process.
#[macro_export]
macro_rules! flags {
    ($from:expr; $($field:ident),+ $(,)?) => {
        [$((stringify!($field), $from.$field.to_string())),+]
            .into_iter()
            .flat_map(|(field, value)| [format!("--{}", field.replace('_', "-")), value])
    };
}

/// `workload` as arguments of `dubchain-perf node`.
fn workload_args(w: &WorkloadConfig) -> Vec<String> {
    flags!(w; seed, txs_per_block, accounts, validators, zipf, invalid_share, contract_share)
        .collect()
}

/// The arguments of node `index` of the cluster listening on `addrs`, its own socket
/// inherited as descriptor `fd`.
fn node_args(l: &Launch, index: usize, addrs: &[SocketAddr], fd: i32) -> Vec<String> {
    let dir = l.data_dir.join(format!("node-{index}"));
    let mut args = l.host_args.clone();
    args.extend(["node".into(), "--launched".into(), "--data-dir".into()]);
    args.push(dir.display().to_string());
    if addrs.len() > 1 {
        // Alone (a cluster of one) the node is index 0, and `--index` needs a `--peer`.
        args.extend(["--index".into(), index.to_string()]);
    }
    args.extend(["--listen-fd".into(), fd.to_string()]);
    args.extend(["--monitor".into(), "127.0.0.1:0".into()]);
    args.extend(["--until-height".into(), l.until_height.to_string()]);
    args.extend([
        "--block-time-ms".into(),
        l.block_time.as_millis().to_string(),
    ]);
    args.extend(workload_args(&l.workload));
    for (j, a) in addrs.iter().enumerate().filter(|(j, _)| *j != index) {
        args.extend(["--peer".into(), format!("{j}@{a}")]);
    }
    args.extend(l.node_args.iter().cloned());
    args
}

/// Why a cluster did not finish.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node {index} exited ({status}) without a report: {said}")]
    Failed {
        index: usize,
        status: ExitStatus,
        said: String,
    },
    #[error("node {index} printed a report that does not parse ({error}): {line}")]
    Report {
        index: usize,
        error: String,
        line: String,
    },
    #[error("the cluster did not finish within {0:?} (nodes {1:?} had not finished); every node was stopped: allow more time or ask for fewer blocks")]
    Timeout(Duration, Vec<usize>),
    /// A node directory the launch would empty that is not its to empty (nothing was
    /// started or removed).
    #[error("{0}")]
    NotScratch(String),
}

/// Every child, killed and reaped if the launch ends early.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// One listening socket on loopback per node, and their addresses.
fn listeners(n: usize) -> std::io::Result<(Vec<TcpListener>, Vec<SocketAddr>)> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let addrs = held
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()?;
    Ok((held, addrs))
}

/// What a child's standard streams said.
enum Said {
    Line(usize, String),
    /// Its standard output closed; the last lines of its standard error.
    Closed(usize, String),
}

/// The file a launch writes into each node directory it makes: what lets the next launch
/// empty that directory. A directory without it (a node's store of one's own that happens
/// to be called `node-0`) is never emptied.
pub const SCRATCH_MARK: &str = "launched.scratch";

/// Whether the launch may empty `dir`: missing, empty, or made by a launch and not in use
/// by a running node.
fn check_scratch(dir: &Path) -> Result<(), LaunchError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(LaunchError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    if entries.count() > 0 && !dir.join(SCRATCH_MARK).exists() {
        return Err(LaunchError::NotScratch(format!(
            "{}: holds files that no launch made (no {SCRATCH_MARK}), and a launch empties its node directories first; give another --data-dir, or remove it yourself if it may go",
            dir.display()
        )));
    }
    if dir.join(crate::state::NODE_LOCK).exists() {
        // Taken and dropped: a node running on it holds it.
        crate::state::lock_data_dir(dir).map_err(LaunchError::NotScratch)?;
    }
    Ok(())
}

/// Starts the cluster, waits until every node has reported, lets them close, and returns
/// the reports by node. `said(index, line)` is told every other line a node prints (where
/// its monitor listens, the plugins it loaded).
pub fn launch(l: &Launch, said: impl Fn(usize, &str)) -> Result<Vec<Report>, LaunchError> {
    let n = l.workload.validators.max(1);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| LaunchError::Io { path, source }
    };
    let (sockets, addrs) = listeners(n).map_err(io(Path::new("127.0.0.1")))?;
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| l.data_dir.join(format!("node-{i}")))
        .collect();
    // Every directory is checked before any is emptied.
    for dir in &dirs {
        check_scratch(dir)?;
    }
    for dir in &dirs {
        if dir.exists() {
            // Held while emptying, so a node that starts on it meanwhile is refused.
            let _lock = crate::state::lock_data_dir(dir).map_err(LaunchError::NotScratch)?;
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::write(
            dir.join(SCRATCH_MARK),
            "Made by a launch of dubchain-perf node processes (`cluster`, the main job's network stage); the next launch on this directory empties it.\n",
        )
        .map_err(io(dir))?;
    }
    let deadline = Instant::now() + l.timeout;
    let mut children = Children(Vec::with_capacity(n));
    let (tx, heard) = mpsc::channel();
    for (index, socket) in sockets.iter().enumerate() {
        let fd = socket.as_raw_fd();
        let mut command = Command::new(&l.exe);
        // SAFETY: runs in the forked child before exec, and only calls `fcntl`, which is
        // async-signal-safe: it lets this child's socket (and no other) survive the exec.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .args(node_args(l, index, &addrs, fd))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(&l.exe))?;
        let (out, mut err) = (
            child.stdout.take().expect("piped"),
            child.stderr.take().expect("piped"),
        );
        children.0.push(child);
        let tx = tx.clone();
        std::thread::spawn(move || {
            // Standard error drained beside, so that a chatty child never blocks on it.
            let err = std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                text
            });
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(Said::Line(index, line));
            }
            let text = err.join().unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
            let _ = tx.send(Said::Closed(index, tail));
        });
    }
    drop(tx);
    // Each child has its own; the launcher's would only keep the ports after the children.
    drop(sockets);
    let mut reports: Vec<Option<Report>> = vec![None; n];
    while reports.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match heard.recv_timeout(left) {
            Ok(Said::Line(index, line)) => {
                let Some(json) = line.strip_prefix(REPORT) else {
                    said(index, &line);
                    continue;
                };
                let report =
                    serde_json::from_str::<Report>(json).map_err(|e| LaunchError::Report {
                        index,
                        error: e.to_string(),
                        line: line.clone(),
                    })?;
                reports[index] = Some(report);
            }
            Ok(Said::Closed(index, stderr_tail)) if reports[index].is_none() => {
                let status = children.0[index].wait().map_err(io(&l.exe))?;
                return Err(LaunchError::Failed {
                    index,
                    status,
                    said: stderr_tail,
                });
            }
            Ok(Said::Closed(..)) => {}
            Err(_) => {
                let waiting = (0..n).filter(|i| reports[*i].is_none()).collect();
                return Err(LaunchError::Timeout(l.timeout, waiting));
            }
        }
    }
    // Every node has finished: let them close their connections and exit.
    for c in &mut children.0 {
        drop(c.stdin.take());
    }
    for (index, c) in children.0.iter_mut().enumerate() {
        let status = loop {
            if let Some(status) = c.try_wait().map_err(io(&l.exe))? {
                break status;
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::Timeout(l.timeout, vec![index]));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !status.success() {
            return Err(LaunchError::Failed {
                index,
                status,
                said: "after its report".into(),
            });
        }
    }
    Ok(reports
        .into_iter()
        .map(|r| r.expect("all reported"))
        .collect())
}
