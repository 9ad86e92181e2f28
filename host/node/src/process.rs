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

/// The peer socket a launcher bound and handed down as descriptor `fd`
/// (`node --listen-fd`), checked to be an open, bound TCP socket, and kept from this
/// process's own children.
pub fn inherited_listener(fd: i32) -> Result<TcpListener, RunError> {
    use std::os::fd::FromRawFd;
    let refused = |why: String| {
        RunError::Placement(format!(
            "--listen-fd {fd}: {why}; it is given by a launcher (`cluster`, `run`) to the node it starts, with the socket it bound"
        ))
    };
    if fd < 0 {
        return Err(refused("not an open descriptor (negative)".into()));
    }
    // SAFETY: `fcntl` is safe to call on any integer; -1 means no open descriptor.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
        return Err(refused(format!(
            "not an open descriptor ({})",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: the descriptor is open (above) and was handed to this process to own; the
    // checks below refuse one that is not a bound TCP socket.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `listening` and `len` are valid for writes of the sizes given.
    let asked = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut listening).cast(),
            &mut len,
        )
    };
    match listener.local_addr() {
        Err(e) => Err(refused(format!("not a TCP socket ({e})"))),
        Ok(_) if asked != 0 || listening == 0 => {
            Err(refused("a socket that is not listening".into()))
        }
        Ok(_) => Ok(listener),
    }
}

impl Placement {
    /// Whether this placement fits `n` validators: its index and its peers' are `0..n`,
    /// each once.
    pub fn check(&self, n: usize) -> Result<(), RunError> {
        let me = self.index;
        let mut seen = std::collections::BTreeSet::from([me]);
        if me >= n || self.peers.iter().any(|(i, _)| *i >= n || !seen.insert(*i)) {
            return Err(RunError::Placement(format!(
                "validator index {me} with peers {:?} does not fit {n} validators: indices are 0..{n}, each once",
                self.peers.iter().map(|(i, _)| *i).collect::<Vec<_>>()
            )));
        }
        Ok(())
    }
}

/// How often a node retries a peer it cannot reach.
const RETRY: Duration = Duration::from_millis(200);

/// When a node still missing peers first says so, and how often after that.
const WAITING_FIRST: Duration = Duration::from_secs(5);
const WAITING_AGAIN: Duration = Duration::from_secs(30);

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

/// Dials validator `peer` at `addr` and shakes hands (this node's index and head, then
/// theirs): the connection and their head.
fn dial(
    addr: SocketAddr, within: Duration, me: usize, peer: usize, head: u64,
) -> io::Result<(TcpStream, u64)> {
    let mut s = TcpStream::connect_timeout(&addr, within)?;
    hello(&mut s, me, head)?;
    let (who, their) = heard(&mut s)?;
    if who != peer {
        return Err(io::Error::other(format!(
            "{addr} answered as validator {who}, not {peer}"
        )));
    }
    let _ = s.set_nodelay(true);
    Ok((s, their))
}

/// Shakes hands on a connection a peer opened (theirs first, then this node's index and
/// head): the connection, their index and their head.
fn greet(mut s: TcpStream, me: usize, head: u64) -> io::Result<(TcpStream, usize, u64)> {
    let _ = s.set_nonblocking(false);
    let (peer, their) = heard(&mut s)?;
    hello(&mut s, me, head)?;
    let _ = s.set_nodelay(true);
    Ok((s, peer, their))
}

/// How a node process meets its peers.
#[derive(Clone, Copy)]
pub enum Peering<'a> {
    /// Dial and accept peers as they come and go; a peer that joins behind is caught up.
    Open,
    /// Connect to every peer first (an error after `timeout`), then run on that fixed set
    /// of connections, through the `net.transport` provider if one takes them; a cluster
    /// without a message for `cluster::STALL` is an error. `finished` is told the node's
    /// run once it has sent its last frames, before it closes its connections (a launcher
    /// holds every node there until all have finished: `crate::launch`).
    Fixed {
        timeout: Duration,
        finished: &'a dyn Fn(&Report),
    },
}

/// A node's run on a fixed set of peers: its outcome and when (wall clock, nanoseconds since
/// the Unix epoch, so that nodes on one machine compare) its run started (every peer
/// connected, store open) and ended (its last block final).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub outcome: NodeOutcome,
    pub started_unix_ns: u64,
    pub finished_unix_ns: u64,
}

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Runs node `placement.index` of `workload.validators` on the store in `dir`, its peers
/// reaching it on `listener`, until `stop` (or `until_height` blocks are final); `observe`
/// is told of every block it commits.
pub fn run_node(
    host: &Host, workload: WorkloadConfig, dir: PathBuf,
    (placement, listener): (&Placement, TcpListener),
    (stop, until_height, block_time): (&AtomicBool, Option<u64>, Duration), peering: Peering<'_>,
    observe: &(dyn Fn(&Observed) + Sync),
) -> Result<NodeOutcome, RunError> {
    let n = workload.validators.max(1);
    let me = placement.index;
    placement.check(n)?;
    let workload = Workload::new(workload);
    let validators = ValidatorSet::generate(workload.config.seed, &workload.validators);
    let io = |source| RunError::Io {
        path: dir.clone(),
        source,
    };
    let mut node = Node::open(host, &workload, &validators, (me, n), &dir, false)?;
    listener.set_nonblocking(true).map_err(io)?;
    let (tx, inbox) = mpsc::channel();
    if let Peering::Fixed { timeout, finished } = peering {
        let conns = connect_all(me, &listener, placement, timeout)?;
        let net = crate::net::fixed(&host.slots, me, conns, tx).map_err(io)?;
        let started_unix_ns = unix_ns();
        let outcome = node.run(
            &net,
            &inbox,
            &Until {
                blocks: until_height,
                stop: Some(stop),
                stall: Some(crate::cluster::STALL),
                block_time,
                observe: Some(observe),
                ..Until::default()
            },
        );
        let finished_unix_ns = unix_ns();
        net.finish_sending();
        if let Ok(outcome) = &outcome {
            finished(&Report {
                outcome: outcome.clone(),
                started_unix_ns,
                finished_unix_ns,
            });
        }
        net.shutdown();
        return outcome;
    }
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
                    Ok((s, _)) => {
                        let greeted = greet(s, me, head.load(Ordering::SeqCst)).and_then(
                            |(s, peer, their)| {
                                net.add_peer(slots, peer, s)?;
                                Ok((peer, their))
                            },
                        );
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
        // While peers are missing, said now and then (after 5 s, then every 30 s): a node
        // waiting for its peers otherwise says nothing, and makes no block it cannot finalize.
        scope.spawn(move || {
            let started = std::time::Instant::now();
            let mut next = WAITING_FIRST;
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(RETRY);
                if started.elapsed() < next {
                    continue;
                }
                next += WAITING_AGAIN;
                let missing: Vec<String> = placement
                    .peers
                    .iter()
                    .filter(|(p, _)| !net.is_connected(*p))
                    .map(|(p, addr)| format!("{p} at {addr}"))
                    .collect();
                if !missing.is_empty() {
                    tracing::warn!(
                        node = me,
                        "waiting for validators {}: {} of {} peers connected after {:.0} s (this node dials those below its index, and those above dial it); start them, or check the --peer and --listen addresses",
                        missing.join(", "),
                        placement.peers.len() - missing.len(),
                        placement.peers.len(),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        });
        // Peers with lower indices are dialled, and dialled again when they go away.
        for &(peer, addr) in placement.peers.iter().filter(|(i, _)| *i < me) {
            scope.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if !net.is_connected(peer) {
                        let head = head.load(Ordering::SeqCst);
                        let dialled = dial(addr, Duration::from_secs(1), me, peer, head)
                            .and_then(|(s, their)| {
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

/// A connection to every peer, handshakes done: peers with lower indices dialled, the others
/// accepted, until all are there or `timeout` has passed.
fn connect_all(
    me: usize, listener: &TcpListener, placement: &Placement, timeout: Duration,
) -> Result<Vec<(usize, TcpStream)>, RunError> {
    let deadline = std::time::Instant::now() + timeout;
    let mut conns: Vec<(usize, TcpStream)> = Vec::with_capacity(placement.peers.len());
    let has = |conns: &[(usize, TcpStream)], peer| conns.iter().any(|(p, _)| *p == peer);
    while conns.len() < placement.peers.len() {
        if std::time::Instant::now() >= deadline {
            let missing: Vec<String> = placement
                .peers
                .iter()
                .filter(|(p, _)| !has(&conns, *p))
                .map(|(p, a)| format!("{p}@{a}"))
                .collect();
            return Err(RunError::Placement(format!(
                "validator {me} reached no connection to {} within {timeout:?}; start those nodes, or check their addresses",
                missing.join(", ")
            )));
        }
        match listener.accept() {
            Ok((s, _)) => {
                match greet(s, me, 0) {
                    Ok((s, peer, _))
                        if placement.peers.iter().any(|(p, _)| *p == peer)
                            && !has(&conns, peer) =>
                    {
                        conns.push((peer, s));
                    }
                    Ok((_, peer, _)) => tracing::warn!(
                        node = me,
                        peer,
                        "a connection from an unexpected or duplicate validator; closed"
                    ),
                    Err(e) => tracing::warn!(node = me, error = %e, "a peer's handshake failed"),
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => tracing::warn!(node = me, error = %e, "accepting a peer failed"),
        }
        for &(peer, addr) in placement.peers.iter().filter(|(p, _)| *p < me) {
            if has(&conns, peer) {
                continue;
            }
            match dial(addr, RETRY, me, peer, 0) {
                Ok((s, _)) => conns.push((peer, s)),
                Err(e) => {
                    tracing::debug!(node = me, peer, error = %e, "peer not reached; retrying")
                }
            }
        }
        std::thread::sleep(RETRY / 4);
    }
    Ok(conns)
}

#[cfg(test)]
mod tests {
    use std::{
        net::{TcpListener, UdpSocket},
        os::fd::IntoRawFd,
    };

    use super::inherited_listener;

    #[test]
    fn an_inherited_socket_must_be_an_open_listening_tcp_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = inherited_listener(listener.into_raw_fd()).unwrap();
        assert_eq!(got.local_addr().unwrap(), addr);

        let refused = |fd: i32| inherited_listener(fd).unwrap_err().to_string();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let why = refused(file.into_raw_fd());
        assert!(
            why.starts_with("--listen-fd ") && why.contains("not a TCP socket"),
            "{why}"
        );
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let why = refused(udp.into_raw_fd());
        assert!(why.contains("not listening"), "{why}");
        let why = refused(1_000_000);
        assert!(why.contains("not an open descriptor"), "{why}");
        let why = refused(-1);
        assert!(why.contains("not an open descriptor"), "{why}");
    }
}
