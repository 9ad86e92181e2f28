//! One validator node as an operating-system process (`dubchain-perf node --peer ...`):
//! the cluster's node ([`crate::cluster`]) on a persistent store, connected to its peers
//! by address, reconnecting when a connection drops, and catching up a peer that joins
//! behind it.
//!
//! Connections: node `i` dials every peer with a lower index (again and again while the
//! peer is away) and accepts the others. A connection starts with a handshake both ways:
//! the validator index (4 bytes, big-endian) and the head's height (8 bytes). A node that
//! learns a peer's head is behind its own sends it the stored blocks it lacks and its votes
//! for them (`cluster::CATCH_UP` at most), over the peer's ordinary send queue. So a node
//! killed and restarted on its data directory resumes from its head, gets what it missed
//! from the first peer it reaches, and takes its turns again.
//!
//! What it does not do: agree on a proposer when one is away. The proposer of each height
//! is fixed (validators take turns); while a node is down the others finish the blocks
//! before its turn (three of four validators are a quorum) and wait for it.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::Duration,
};

use dubchain_host::Host;

use crate::{
    cluster::{Node, NodeOutcome, Observed, Until},
    consensus::ValidatorSet,
    gen::{Workload, WorkloadConfig},
    net::Network,
    run::RunError,
};

/// How a node process is placed among its peers.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Its validator index.
    pub index: usize,
    /// Where it listens for peers.
    pub listen: SocketAddr,
    /// Every other validator: index and address.
    pub peers: Vec<(usize, SocketAddr)>,
}

/// How often a node retries a peer it cannot reach.
const RETRY: Duration = Duration::from_millis(200);

/// One side of a handshake: index and head.
fn hello(stream: &mut TcpStream, index: usize, head: u64) -> io::Result<()> {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&(index as u32).to_be_bytes());
    b[4..].copy_from_slice(&head.to_be_bytes());
    stream.write_all(&b)
}

/// The other side's index and head.
fn heard(stream: &mut TcpStream) -> io::Result<(usize, u64)> {
    let mut b = [0u8; 12];
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.read_exact(&mut b)?;
    stream.set_read_timeout(None)?;
    let index = u32::from_be_bytes(b[..4].try_into().expect("4 bytes")) as usize;
    let head = u64::from_be_bytes(b[4..].try_into().expect("8 bytes"));
    Ok((index, head))
}

/// Runs node `placement.index` of `workload.validators` on the store in `dir` until `stop`
/// (or `until_height` blocks are final); `observe` is told of every block it commits.
pub fn run_node(
    host: &Host,
    workload: WorkloadConfig,
    dir: PathBuf,
    placement: &Placement,
    (stop, until_height, block_time): (&AtomicBool, Option<u64>, Duration),
    observe: &(dyn Fn(&Observed) + Sync),
) -> Result<NodeOutcome, RunError> {
    let n = workload.validators.max(1);
    let me = placement.index;
    if me >= n || placement.peers.iter().any(|(i, _)| *i >= n || *i == me) {
        return Err(RunError::Placement(format!(
            "validator index {me} with peers {:?} does not fit {n} validators: indices are 0..{n}, each once",
            placement.peers.iter().map(|(i, _)| *i).collect::<Vec<_>>()
        )));
    }
    let workload = Workload::new(workload);
    let validators = ValidatorSet::generate(workload.config.seed, &workload.validators);
    let io = |source| RunError::Io {
        path: dir.clone(),
        source,
    };
    let mut node = Node::open(host, &workload, &validators, (me, n), &dir, false)?;
    let listener = TcpListener::bind(placement.listen).map_err(|source| RunError::Io {
        path: PathBuf::from(placement.listen.to_string()),
        source,
    })?;
    listener.set_nonblocking(true).map_err(io)?;
    let (tx, inbox) = mpsc::channel();
    let net = Network::threads(me, tx);
    let (joined, joins) = mpsc::channel::<(usize, u64)>();
    let head = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        let (net, head, done, joined) = (&net, &head, &done, &joined);
        let slots = &host.slots;
        // Peers with higher indices dial in.
        scope.spawn(move || {
            while !done.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let greeted = heard(&mut s).and_then(|(peer, their)| {
                            hello(&mut s, me, head.load(Ordering::SeqCst))?;
                            let _ = s.set_nodelay(true);
                            net.add_peer(slots, peer, s)?;
                            Ok((peer, their))
                        });
                        match greeted {
                            Ok(j) => {
                                let _ = joined.send(j);
                            }
                            Err(e) => {
                                tracing::warn!(node = me, error = %e, "a peer's handshake failed")
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(RETRY / 4)
                    }
                    Err(e) => tracing::warn!(node = me, error = %e, "accepting a peer failed"),
                }
            }
        });
        // Peers with lower indices are dialled, and dialled again when they go away.
        for &(peer, addr) in placement.peers.iter().filter(|(i, _)| *i < me) {
            scope.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if !net.is_connected(peer) {
                        let dialled = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                            .and_then(|mut s| {
                                hello(&mut s, me, head.load(Ordering::SeqCst))?;
                                let (who, their) = heard(&mut s)?;
                                if who != peer {
                                    return Err(io::Error::other(format!(
                                        "{addr} answered as validator {who}, not {peer}"
                                    )));
                                }
                                let _ = s.set_nodelay(true);
                                net.add_peer(slots, peer, s)?;
                                Ok(their)
                            });
                        match dialled {
                            Ok(their) => {
                                let _ = joined.send((peer, their));
                            }
                            Err(e) => tracing::debug!(node = me, peer, error = %e, "peer not reached; retrying"),
                        }
                    }
                    std::thread::sleep(RETRY);
                }
            });
        }
        let outcome = node.run(
            net,
            &inbox,
            &Until {
                blocks: until_height,
                stop: Some(stop),
                stall: None,
                block_time,
                joins: Some(&joins),
                head: Some(head),
                observe: Some(observe),
            },
        );
        done.store(true, Ordering::SeqCst);
        outcome
    });
    net.shutdown();
    outcome
}

/// The placement of node `index` among `addrs` (every validator's address, by index).
pub fn placement(index: usize, addrs: &[SocketAddr]) -> Placement {
    Placement {
        index,
        listen: addrs[index],
        peers: addrs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(i, a)| (i, *a))
            .collect(),
    }
}
