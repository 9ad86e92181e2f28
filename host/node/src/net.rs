//! Peers over TCP on loopback: the network baseline the catalogue names. Blocking
//! `std::net` sockets, a reader and a writer thread per peer. A broadcast builds each
//! peer's frames (`net.broadcast`; baseline: serialised once per peer into fresh buffers,
//! `mem.buffer_pool`'s baseline) and queues them (`net.send_queue`; baseline: an unbounded
//! FIFO per peer); the peer's writer thread pops them and writes them (`net.frame_send`;
//! baseline: one write per message).
//!
//! Frames are a 4-byte big-endian length, a tag byte (transaction, block, vote) and the
//! message in JSON. Reader threads only cut frames; the node decodes what it received in
//! batches ([`decode`]), transactions through `mem.tx_decode`. A connection starts with the
//! connecting node's index (4 bytes), so each side knows who is at the other end.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
};

use std::time::{Duration, Instant};

use abi_stable::std_types::{RArc, RVec};
use std::os::fd::IntoRawFd;

use abi_stable::{sabi_trait::TD_Opaque, std_types::RResult};
use dubchain_plugin_api::types::Blob;
use dubchain_plugin_api::{
    slots::{
        ConnectionsBox, InboundSink, InboundSink_TO, Outgoing, PeerSocket, Popped, SharedFrame,
        TrafficClass,
    },
    PluginError,
};

use crate::consensus::Vote;
use dubchain_host::{
    peer_queue::PeerQueue,
    slot::{BufferPoolSlot, FrameSendSlot, Slots},
};

pub use dubchain_plugin_api::wire::MAX_FRAME;

pub use dubchain_plugin_api::wire::Message;
use dubchain_plugin_api::wire::{self, VoteWire, TAG_BLOCK, TAG_TX, TAG_VOTE};

/// The wire message of a vote.
pub fn vote_message(v: &Vote) -> Message {
    Message::Vote {
        height: v.height,
        block: v.block,
        validator: v.validator,
        signature: Blob(v.signature.to_vec().into()),
    }
}

/// The vote `msg` carries: `None` for other messages, and for a signature that is not 96
/// bytes (which no check could accept).
pub fn message_vote(msg: Message) -> Option<Vote> {
    match msg {
        Message::Vote {
            height,
            block,
            validator,
            signature: Blob(bytes),
        } => Some(Vote {
            height,
            block,
            validator,
            signature: <[u8; 96]>::try_from(bytes.as_slice()).ok()?,
        }),
        _ => None,
    }
}

/// A frame's payload (tag and JSON) and the index of the peer it came from.
pub type Inbound = (usize, Vec<u8>);

/// Decodes received payloads, in order: the transactions among them in one batch through
/// `mem.tx_decode`, blocks and votes with serde_json. A payload that does not decode is an
/// error for that one only.
pub fn decode(slots: &Slots, inbound: &[Inbound]) -> Vec<(usize, Result<Message, String>)> {
    let txs: Vec<&[u8]> = inbound
        .iter()
        .filter(|(_, p)| p.first() == Some(&TAG_TX))
        .map(|(_, p)| &p[1..])
        .collect();
    let mut decoded_txs = slots.tx_decode.decode(&txs).into_iter();
    inbound
        .iter()
        .map(|(peer, p)| {
            let msg = match p.split_first() {
                Some((&TAG_TX, _)) => decoded_txs
                    .next()
                    .unwrap_or_else(|| Err("no answer".into()))
                    .map(Message::Tx),
                Some((&TAG_BLOCK, body)) => serde_json::from_slice(body)
                    .map(Message::Block)
                    .map_err(|e| e.to_string()),
                Some((&TAG_VOTE, body)) => serde_json::from_slice::<VoteWire>(body)
                    .map(|v| Message::Vote {
                        height: v.height,
                        block: v.block,
                        validator: v.validator,
                        signature: v.signature,
                    })
                    .map_err(|e| e.to_string()),
                Some((tag, _)) => Err(format!("unknown message tag {tag}")),
                None => Err("an empty frame".into()),
            };
            (*peer, msg)
        })
        .collect()
}

/// Messages and bytes of one kind (bytes of whole frames, length prefix included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    pub messages: u64,
    pub bytes: u64,
}

/// Traffic per message kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KindTraffic {
    pub tx: Traffic,
    pub block: Traffic,
    pub vote: Traffic,
}

impl KindTraffic {
    /// Counts one frame of `len` bytes whose payload starts with `tag`.
    pub fn count(&mut self, tag: Option<u8>, len: usize) {
        let kind = match tag {
            Some(TAG_TX) => &mut self.tx,
            Some(TAG_BLOCK) => &mut self.block,
            _ => &mut self.vote,
        };
        kind.messages += 1;
        kind.bytes += len as u64;
    }

    /// Every kind together.
    pub fn total(&self) -> Traffic {
        Traffic {
            messages: self.tx.messages + self.block.messages + self.vote.messages,
            bytes: self.tx.bytes + self.block.bytes + self.vote.bytes,
        }
    }
}

/// What a node's network did: the frames it sent (each peer's copy counted), the deepest
/// any of its send queues got (`None` where a `net.transport` provider queues), and the
/// threads it ran for its peers (a reader and a writer each on the baseline; none of its
/// own with a provider, whose threads are the provider's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkStats {
    pub sent: KindTraffic,
    pub queue_peak: Option<u64>,
    pub threads: u64,
}

struct Peer {
    index: usize,
    stream: Mutex<TcpStream>,
    queue: Arc<PeerQueue>,
    /// Cleared when the peer's reader stops (the connection closed or failed).
    alive: Arc<AtomicBool>,
}

/// One node's connections to every other node: driven by its own reader and writer
/// threads (the baseline), or by a `net.transport` provider. With the threads, peers can
/// join after the start ([`Network::add_peer`]: a node process reconnecting).
pub struct Network {
    pub index: usize,
    peers: Mutex<Vec<Arc<Peer>>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    transport: Option<ConnectionsBox>,
    /// Where the readers deliver (the threads model).
    inbox: Option<mpsc::Sender<Inbound>>,
    sent: Mutex<KindTraffic>,
    queue_peak: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node's inbox, as a `net.transport` provider delivers to it.
struct Inbox(Mutex<mpsc::Sender<Inbound>>);

impl InboundSink for Inbox {
    fn deliver(&self, peer: u32, payload: RVec<u8>) -> RResult<(), PluginError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((peer as usize, payload.into_vec()))
            .map_err(|_| PluginError::failed("the node has stopped"))
            .into()
    }
}

/// The class of `msg` for send queues: blocks and votes are consensus traffic.
fn class_of(msg: &Message) -> TrafficClass {
    match msg {
        Message::Tx(_) => TrafficClass::Gossip,
        Message::Block(_) | Message::Vote { .. } => TrafficClass::Consensus,
    }
}

/// A peer's writer: pops frames from its queue and writes them through `net.frame_send` until the
/// queue is closed and drained; buffers no other peer shares go back to the pool.
fn write_loop(
    queue: &PeerQueue, (send, pool): (&FrameSendSlot, &BufferPoolSlot), stream: &mut TcpStream,
    (from, to): (usize, usize),
) {
    loop {
        let frames = match queue.pop(256, Duration::from_millis(100)) {
            Popped::Frames(f) => f,
            Popped::Idle => continue,
            Popped::Closed => return,
        };
        let views: Vec<&[u8]> = frames.iter().map(|o| o.frame.as_slice()).collect();
        let bytes = views.iter().map(|v| v.len()).sum();
        let t = Instant::now();
        if let Err(e) = send.send(&views, stream) {
            tracing::debug!(from, to, error = %e, "send failed");
        }
        queue.written(bytes, t.elapsed());
        drop(views);
        for o in frames {
            if let Ok(buffer) = RArc::try_unwrap(o.frame) {
                pool.give(buffer);
            }
        }
    }
}

/// A peer's reader: cuts what `peer` sends node `node` into frames and hands each payload to
/// the node's inbox, until the peer closes between frames or the node is gone. Anything
/// else is the peer's fault: one line, and the connection is dropped (`wire::read_frames`).
fn read_loop(mut reader: TcpStream, (node, peer): (usize, usize), inbox: &mpsc::Sender<Inbound>) {
    if let Some(fault) = wire::read_frames(&mut reader, |frame| inbox.send((peer, frame)).is_ok()) {
        tracing::warn!(node, peer, "peer {peer} {fault}; dropping its connection");
    }
}

/// `msg` as a frame (length, tag, JSON), in a buffer from `mem.buffer_pool`.
fn encode_frame(slots: &Slots, msg: &Message) -> RVec<u8> {
    let payload = wire::payload(msg);
    dubchain_host::baseline::fill_frame(slots.buffer_pool.take(4 + payload.len()), &payload)
}

impl Network {
    /// Sends `msgs`, in order, to every peer. The frames come from `net.broadcast`
    /// (baseline: serialised once per peer into buffers from `mem.buffer_pool`) and go to
    /// each peer's queue (`net.send_queue`), whose writer thread writes them.
    pub fn broadcast(&self, slots: &Slots, msgs: &[Message]) {
        let peers = lock(&self.peers).clone();
        let lists = slots
            .broadcast
            .frames(msgs, peers.len())
            .unwrap_or_else(|| {
                peers
                    .iter()
                    .map(|_| {
                        msgs.iter()
                            .map(|m| RArc::new(encode_frame(slots, m)))
                            .collect()
                    })
                    .collect()
            });
        for (p, frames) in peers.iter().zip(lists) {
            self.deliver(p, frames, msgs);
        }
    }

    /// Counts `frames` (one per message of `msgs`) as sent and hands them to peer `p`: to
    /// the `net.transport` provider if one drives the sockets, else to `p`'s send queue.
    fn deliver(&self, p: &Peer, frames: Vec<SharedFrame>, msgs: &[Message]) {
        {
            let mut sent = lock(&self.sent);
            for f in &frames {
                sent.count(f.get(4).copied(), f.len());
            }
        }
        if let Some(t) = &self.transport {
            if let Err(e) = t.send(p.index as u32, frames.into()).into_result() {
                tracing::warn!(from = self.index, to = p.index, error = %e, "net.transport provider failed to take frames");
            }
            return;
        }
        p.queue.push(
            frames
                .into_iter()
                .zip(msgs)
                .map(|(frame, m)| Outgoing {
                    class: class_of(m),
                    frame,
                })
                .collect(),
        );
        self.queue_peak
            .fetch_max(p.queue.depth() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// A network of node `index` on the baseline's threads, with no peer yet; readers
    /// deliver to `inbox`.
    pub fn threads(index: usize, inbox: mpsc::Sender<Inbound>) -> Network {
        Network {
            index,
            peers: Mutex::default(),
            readers: Mutex::default(),
            writers: Mutex::default(),
            transport: None,
            inbox: Some(inbox),
            sent: Default::default(),
            queue_peak: Default::default(),
        }
    }

    /// Connects `peer` over `stream` (handshake done): its send queue (`net.send_queue`),
    /// writer and reader threads. A connection of the same peer that was there before is
    /// closed. Only on the threads model ([`Network::threads`]).
    pub fn add_peer(&self, slots: &Slots, peer: usize, stream: TcpStream) -> io::Result<()> {
        let Some(inbox) = self.inbox.clone() else {
            return Err(io::Error::other(
                "peers join only a network on the baseline's threads",
            ));
        };
        let index = self.index;
        let queue = Arc::new(PeerQueue::new(slots.send_queue.new_queue(peer as u32)));
        let (q, mut out) = (queue.clone(), stream.try_clone()?);
        let (send, pool) = (slots.frame_send.clone(), slots.buffer_pool.clone());
        let writer = std::thread::Builder::new()
            .name(format!("peer-{index}->{peer}"))
            .spawn(move || write_loop(&q, (&send, &pool), &mut out, (index, peer)))?;
        let alive = Arc::new(AtomicBool::new(true));
        let (reader, flag) = (stream.try_clone()?, alive.clone());
        let reader = std::thread::Builder::new()
            .name(format!("peer-{index}<-{peer}"))
            .spawn(move || {
                read_loop(reader, (index, peer), &inbox);
                flag.store(false, Ordering::SeqCst);
            })?;
        let new = Arc::new(Peer {
            index: peer,
            stream: Mutex::new(stream),
            queue,
            alive,
        });
        let old = {
            let mut peers = lock(&self.peers);
            let old = peers
                .iter()
                .position(|p| p.index == peer)
                .map(|i| peers.remove(i));
            peers.push(new);
            old
        };
        if let Some(old) = old {
            old.queue.close();
            let _ = lock(&old.stream).shutdown(Shutdown::Both);
        }
        lock(&self.writers).push(writer);
        lock(&self.readers).push(reader);
        Ok(())
    }

    /// Whether `peer` is connected and its connection has not failed.
    pub fn is_connected(&self, peer: usize) -> bool {
        lock(&self.peers)
            .iter()
            .any(|p| p.index == peer && p.alive.load(Ordering::SeqCst))
    }

    /// Peers connected now.
    pub fn connected(&self) -> usize {
        lock(&self.peers)
            .iter()
            .filter(|p| p.alive.load(Ordering::SeqCst))
            .count()
    }

    /// Sends `msgs`, in order, to `peer` alone (catching it up), as [`Network::broadcast`]
    /// sends to each.
    pub fn send_to(&self, slots: &Slots, peer: usize, msgs: &[Message]) {
        let Some(p) = lock(&self.peers).iter().find(|p| p.index == peer).cloned() else {
            return;
        };
        let frames = msgs
            .iter()
            .map(|m| RArc::new(encode_frame(slots, m)))
            .collect();
        self.deliver(&p, frames, msgs);
    }

    /// What this network has done so far.
    pub fn stats(&self) -> NetworkStats {
        NetworkStats {
            sent: *self.sent.lock().unwrap_or_else(|e| e.into_inner()),
            queue_peak: self
                .transport
                .is_none()
                .then(|| self.queue_peak.load(std::sync::atomic::Ordering::Relaxed)),
            threads: (lock(&self.readers).len() + lock(&self.writers).len()) as u64,
        }
    }

    /// Lets every writer finish what is queued, then closes every connection and waits for
    /// the reader threads.
    pub fn shutdown(self) {
        if let Some(t) = &self.transport {
            if let Err(e) = t.shutdown().into_result() {
                tracing::warn!(node = self.index, error = %e, "net.transport provider failed to shut down");
            }
        }
        self.finish_sending();
        let peers = std::mem::take(&mut *lock(&self.peers));
        for p in &peers {
            let _ = lock(&p.stream).shutdown(Shutdown::Both);
        }
        for r in std::mem::take(&mut *lock(&self.readers)) {
            let _ = r.join();
        }
    }

    /// Lets every writer finish what is queued and stop; the connections stay open, so
    /// peers still writing to this node are not cut off ([`Network::shutdown`] closes them).
    pub fn finish_sending(&self) {
        for p in lock(&self.peers).iter() {
            p.queue.close();
        }
        for w in std::mem::take(&mut *lock(&self.writers)) {
            let _ = w.join();
        }
    }
}

/// `index`'s connections handed to the `net.transport` provider, if there is one and it
/// takes them. It gets duplicates of the sockets: the host keeps its own, to close them at
/// shutdown, or to run its threads on them if the provider refuses.
fn with_transport(
    slots: &Slots, index: usize, conns: &[(usize, TcpStream)], tx: &mpsc::Sender<Inbound>,
) -> io::Result<Option<Network>> {
    if !slots.transport.has_provider() {
        return Ok(None);
    }
    let mut sockets = Vec::with_capacity(conns.len());
    for (peer, stream) in conns {
        sockets.push(PeerSocket {
            peer: *peer as u32,
            fd: stream.try_clone()?.into_raw_fd(),
        });
    }
    let inbox = InboundSink_TO::from_value(Inbox(Mutex::new(tx.clone())), TD_Opaque);
    let Some(connections) = slots.transport.connect(&sockets, inbox) else {
        return Ok(None);
    };
    let mut peers = Vec::with_capacity(conns.len());
    for (peer, stream) in conns {
        peers.push(Arc::new(Peer {
            index: *peer,
            stream: Mutex::new(stream.try_clone()?),
            queue: Arc::new(PeerQueue::new(None)),
            alive: Arc::new(AtomicBool::new(true)),
        }));
    }
    Ok(Some(Network {
        index,
        peers: Mutex::new(peers),
        readers: Mutex::default(),
        writers: Mutex::default(),
        transport: Some(connections),
        inbox: None,
        sent: Default::default(),
        queue_peak: Default::default(),
    }))
}

/// Connects one node per entry of `slots` (node `i`'s own slots) on 127.0.0.1 in a full
/// mesh, each peer with a reader thread and a writer thread over its send queue. Returns,
/// per node, its network and the receiver of everything its peers send it.
pub fn mesh(slots: &[&Slots]) -> io::Result<Vec<(Network, mpsc::Receiver<Inbound>)>> {
    let n = slots.len();
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let addrs: Vec<_> = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()?;
    // streams[i] holds (peer index, stream) for node i.
    let mut streams: Vec<Vec<(usize, TcpStream)>> = (0..n).map(|_| Vec::new()).collect();
    for j in 0..n {
        for (i, addr) in addrs.iter().enumerate().take(j) {
            let mut out = TcpStream::connect(addr)?;
            out.write_all(&(j as u32).to_be_bytes())?;
            let (mut inc, _) = listeners[i].accept()?;
            let mut who = [0u8; 4];
            inc.read_exact(&mut who)?;
            let from = u32::from_be_bytes(who) as usize;
            if from != j {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected node {j}, got {from}"),
                ));
            }
            out.set_nodelay(true)?;
            inc.set_nodelay(true)?;
            streams[j].push((i, out));
            streams[i].push((j, inc));
        }
    }
    streams
        .into_iter()
        .enumerate()
        .map(|(index, conns)| {
            let (tx, rx) = mpsc::channel();
            Ok((fixed(slots[index], index, conns, tx)?, rx))
        })
        .collect()
}

/// Node `index`'s network on a fixed set of connections (`(peer, stream)`, handshakes
/// done): the `net.transport` provider's if it takes them, else a reader and a writer
/// thread per peer; what peers send goes to `tx`.
pub fn fixed(
    slots: &Slots, index: usize, conns: Vec<(usize, TcpStream)>, tx: mpsc::Sender<Inbound>,
) -> io::Result<Network> {
    if let Some(network) = with_transport(slots, index, &conns, &tx)? {
        return Ok(network);
    }
    let network = Network::threads(index, tx);
    for (peer, stream) in conns {
        network.add_peer(slots, peer, stream)?;
    }
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The baseline's reader on a real socket: frames before a fault are delivered, then a
    /// garbage length (or a frame cut short) drops the peer: its end of the connection sees
    /// the stream end; a peer that closes between frames just stops.
    #[test]
    fn the_baselines_reader_drops_a_faulty_peer_after_its_good_frames() {
        let frame = |p: &[u8]| [&(p.len() as u32).to_be_bytes()[..], p].concat();
        for (fault, dropped) in [
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), true),
            ([&100u32.to_be_bytes()[..], &[1; 10]].concat(), true),
            (Vec::new(), false),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut far = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (near, _) = listener.accept().unwrap();
            far.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let (tx, rx) = mpsc::channel();
            let reader = std::thread::spawn(move || read_loop(near, (0, 7), &tx));
            far.write_all(&[frame(b"one"), frame(b""), fault].concat())
                .unwrap();
            far.shutdown(Shutdown::Write).unwrap();
            reader.join().unwrap();
            let got: Vec<Inbound> = rx.try_iter().collect();
            assert_eq!(got, [(7, b"one".to_vec()), (7, Vec::new())]);
            if dropped {
                // Shut both ways by the reader: the far end reads the end of the stream, or
                // a reset where the kernel still held bytes the reader never read (the fault's
                // tail, under load). A peer kept open would time out here instead.
                let mut rest = Vec::new();
                match far.read_to_end(&mut rest) {
                    Ok(n) => assert_eq!(n, 0),
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
                }
            }
        }
    }
}
