//! The `net.transport` providers against the host's I/O model (`ThreadTransport`, a reader
//! thread per peer on blocking sockets): the same payloads delivered and the same bytes
//! written, per peer and in order, on generated traffic; and peers that misbehave (an
//! oversized or garbage length, a connection closed inside a frame) dropped without
//! disturbing the others, on the baseline model and on every transport plugin.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::IntoRawFd,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use dubchain_host::{testing::ThreadTransport, Host};
use dubchain_plugin_api::{
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RArc, RResult, RVec},
    },
    slots::{
        ConnectionsBox, Guarded, InboundSink, InboundSinkBox, InboundSink_TO, PeerSocket,
        TransportFfi_TO,
    },
    PluginError,
};
use rand::{Rng, SeedableRng};

const WAIT: Duration = Duration::from_secs(20);

/// Every payload delivered, with the peer it came from, in delivery order.
#[derive(Clone, Default)]
struct Delivered(Arc<Mutex<Vec<(u32, Vec<u8>)>>>);

impl InboundSink for Delivered {
    fn deliver(&self, peer: u32, payload: RVec<u8>) -> RResult<(), PluginError> {
        self.all().push((peer, payload.into_vec()));
        RResult::ROk(())
    }
}

impl Delivered {
    fn all(&self) -> std::sync::MutexGuard<'_, Vec<(u32, Vec<u8>)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The payloads from `peer`, in the order they were delivered.
    fn from(&self, peer: u32) -> Vec<Vec<u8>> {
        let all = self.all();
        all.iter()
            .filter(|(p, _)| *p == peer)
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn len(&self) -> usize {
        self.all().len()
    }

    /// Waits (bounded) until `n` payloads in all have arrived.
    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.len() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} payloads in {WAIT:?}",
                self.len()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// `peers` loopback connections: the far ends (bounded reads and writes), and the near ends
/// as a transport takes them.
fn loopback(peers: u32) -> (Vec<TcpStream>, Vec<PeerSocket>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (0..peers)
        .map(|peer| {
            let far = TcpStream::connect(addr).unwrap();
            let (near, _) = listener.accept().unwrap();
            far.set_read_timeout(Some(WAIT)).unwrap();
            far.set_write_timeout(Some(WAIT)).unwrap();
            let fd = near.into_raw_fd();
            (far, PeerSocket { peer, fd })
        })
        .unzip()
}

fn frame(payload: &[u8]) -> Vec<u8> {
    [&(payload.len() as u32).to_be_bytes()[..], payload].concat()
}

/// 0 to 40 payloads of 0 to 70,000 bytes, every seventeenth 1 MiB.
fn payloads(rng: &mut rand_chacha::ChaCha20Rng) -> Vec<Vec<u8>> {
    (0..rng.gen_range(0..40))
        .map(|i| {
            let n = if i % 17 == 16 {
                1 << 20
            } else {
                rng.gen_range(0..70_000)
            };
            (0..n).map(|_| rng.gen()).collect()
        })
        .collect()
}

/// A transport under test: the baseline model in process, or a host's provider.
enum Under<'a> {
    Threads,
    Slot(&'a Host),
}

impl Under<'_> {
    fn connect(&self, peers: &[PeerSocket], sink: InboundSinkBox) -> ConnectionsBox {
        match self {
            Under::Threads => TransportFfi_TO::from_value(Guarded(ThreadTransport), TD_Opaque)
                .connect(peers.into(), sink)
                .into_result()
                .unwrap(),
            Under::Slot(host) => host
                .slots
                .transport
                .connect(peers, sink)
                .expect("the provider takes the connections"),
        }
    }
}

/// What one generated exchange left at both ends: the payloads delivered from each peer,
/// and the bytes each far end read.
#[derive(Debug, PartialEq)]
struct Exchange {
    delivered: Vec<Vec<Vec<u8>>>,
    read: Vec<Vec<u8>>,
}

/// Generated traffic through `under`: each of `peers` far ends sends frames of 0 to 70,000
/// bytes (now and then 1 MiB) in writes cut at random places, and is sent frames of its own
/// in batches, from several threads at once; then the shutdown, after which every far end
/// reads to the end of its stream.
fn exchange(under: &Under, peers: u32, seed: u64) -> Exchange {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let inbound: Vec<Vec<Vec<u8>>> = (0..peers).map(|_| payloads(&mut rng)).collect();
    let outbound: Vec<Vec<Vec<u8>>> = (0..peers).map(|_| payloads(&mut rng)).collect();
    let cuts: Vec<u64> = (0..peers).map(|_| rng.gen()).collect();
    let (far, near) = loopback(peers);
    let sink = Delivered::default();
    let conns = under.connect(&near, InboundSink_TO::from_value(sink.clone(), TD_Opaque));
    let read = std::thread::scope(|s| {
        for (i, f) in far.iter().enumerate() {
            let bytes: Vec<u8> = inbound[i].iter().flat_map(|p| frame(p)).collect();
            let mut cut = rand_chacha::ChaCha20Rng::seed_from_u64(cuts[i]);
            s.spawn(move || {
                let mut f = f;
                let mut at = 0;
                while at < bytes.len() {
                    let n = cut
                        .gen_range(1..=bytes.len() - at)
                        .min(1 + cut.gen_range(0..9000));
                    f.write_all(&bytes[at..at + n]).unwrap();
                    at += n;
                }
            });
        }
        let readers: Vec<_> = far
            .iter()
            .map(|f| {
                s.spawn(move || {
                    let mut f = f;
                    let mut got = Vec::new();
                    f.read_to_end(&mut got).map(|_| got)
                })
            })
            .collect();
        // Two sending threads, each with half the peers; each peer's frames in batches.
        std::thread::scope(|senders| {
            for half in 0..2u32 {
                let (conns, outbound) = (&conns, &outbound);
                senders.spawn(move || {
                    for peer in (half..peers).step_by(2) {
                        for batch in outbound[peer as usize].chunks(7) {
                            let frames: Vec<_> = batch
                                .iter()
                                .map(|p| RArc::new(RVec::from(frame(p))))
                                .collect();
                            conns.send(peer, frames.into()).into_result().unwrap();
                        }
                    }
                });
            }
        });
        sink.wait_for(inbound.iter().map(Vec::len).sum());
        conns.shutdown().into_result().unwrap();
        readers
            .into_iter()
            .map(|r| r.join().unwrap().expect("the far end reads to the end"))
            .collect::<Vec<_>>()
    });
    let result = Exchange {
        delivered: (0..peers).map(|p| sink.from(p)).collect(),
        read,
    };
    // Against what was sent, too: not only the two transports against each other.
    assert_eq!(result.delivered, inbound, "payloads delivered as sent");
    for (peer, got) in result.read.iter().enumerate() {
        let want: Vec<u8> = outbound[peer].iter().flat_map(|p| frame(p)).collect();
        assert!(
            *got == want,
            "peer {peer} read other bytes than it was sent"
        );
    }
    result
}

#[test]
fn the_async_transport_delivers_and_writes_exactly_what_the_threads_do() {
    // One worker and a small write buffer: frames gathered and split every way.
    let (host, _dir) = dubchain_tests::host_with_first_party(
        &["network_async_io"],
        "threads = 1\nwrite_buffer = 4096\n",
    );
    assert!(
        dubchain_host::conformance::run_on(&host, "net.transport")
            .iter()
            .all(|c| c.passed),
        "the conformance suite passes"
    );
    for (seed, peers) in [(1, 1), (2, 5), (3, 12)] {
        assert_eq!(
            exchange(&Under::Slot(&host), peers, seed),
            exchange(&Under::Threads, peers, seed),
            "seed {seed}, {peers} peers"
        );
    }
    let status = host.slots.transport.status();
    assert_eq!((status.counters.errors, status.counters.fallbacks), (0, 0));
}

/// Peers that misbehave at the frame level, each on a connection of its own, between two
/// rounds of good traffic from peer 0: every one is dropped (its far end sees the
/// connection closed), peer 0's frames all arrive in order both ways, and nothing panics.
fn faulty_peers_are_dropped(under: &Under) {
    const GOOD: u32 = 0;
    // (what the far end sends, then closes its side?)
    let faults: [(&str, Vec<u8>, bool); 4] = [
        (
            "an oversized length",
            u32::MAX.to_be_bytes().to_vec(),
            false,
        ),
        (
            "garbage (another protocol)",
            b"GET / HTTP/1.1\r\nHost: node\r\n\r\n".to_vec(),
            false,
        ),
        (
            "a frame cut short",
            [&1_000u32.to_be_bytes()[..], &[7u8; 10]].concat(),
            true,
        ),
        ("a length cut short", vec![0, 0], true),
    ];
    let (mut far, near) = loopback(1 + faults.len() as u32);
    let sink = Delivered::default();
    let conns = under.connect(&near, InboundSink_TO::from_value(sink.clone(), TD_Opaque));
    let good: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 100 * i as usize]).collect();
    for p in &good[..3] {
        far[0].write_all(&frame(p)).unwrap();
    }
    sink.wait_for(3);
    for (i, (_, bytes, close)) in faults.iter().enumerate() {
        let f = &mut far[1 + i];
        f.write_all(bytes).unwrap();
        if *close {
            f.shutdown(std::net::Shutdown::Write).unwrap();
        }
    }
    for (i, (what, _, _)) in faults.iter().enumerate() {
        let mut rest = Vec::new();
        // Closed by the transport: the end of the stream, or a reset; a time-out is not.
        let closed = far[1 + i].read_to_end(&mut rest);
        let timed_out = closed.as_ref().is_err_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        });
        assert!(!timed_out, "the peer that sent {what} was not dropped");
    }
    for p in &good[3..] {
        far[0].write_all(&frame(p)).unwrap();
    }
    sink.wait_for(6);
    assert_eq!(sink.from(GOOD), good, "the good peer's payloads, in order");
    for peer in 1..=faults.len() as u32 {
        assert!(
            sink.from(peer).is_empty(),
            "nothing delivered from peer {peer}"
        );
    }
    // Sending to a dropped peer does not disturb anything; the good peer gets its frames.
    let frames = || -> RVec<_> {
        good.iter()
            .map(|p| RArc::new(RVec::from(frame(p))))
            .collect()
    };
    for peer in 1..=faults.len() as u32 {
        let _ = conns.send(peer, frames()).into_result();
    }
    conns.send(GOOD, frames()).into_result().unwrap();
    let want: Vec<u8> = good.iter().flat_map(|p| frame(p)).collect();
    let mut got = vec![0u8; want.len()];
    far[0].read_exact(&mut got).unwrap();
    assert!(got == want, "the good peer read its frames");
    conns.shutdown().into_result().unwrap();
}

#[test]
fn the_threads_model_drops_faulty_peers_and_serves_the_rest() {
    faulty_peers_are_dropped(&Under::Threads);
}

#[test]
fn the_async_transport_drops_faulty_peers_and_serves_the_rest() {
    let (host, _dir) = dubchain_tests::host_with_first_party(&["network_async_io"], "");
    faulty_peers_are_dropped(&Under::Slot(&host));
    let status = host.slots.transport.status();
    assert_eq!((status.counters.errors, status.counters.fallbacks), (0, 0));
}
