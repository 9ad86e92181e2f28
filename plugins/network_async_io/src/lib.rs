//! `network_async_io`: every peer connection of a node driven by one small tokio reactor,
//! for `net.transport` (the catalogue row of that name).
//!
//! The baseline spends a thread per peer on blocking sockets (a reader each, and in the node
//! a writer each), so a node with 256 peers runs 256-512 threads that mostly sleep in
//! `read`, and every frame wakes one of them. Here a multi-threaded tokio runtime of
//! `threads` workers (default 2, for every node this host runs) owns the sockets:
//!
//! * **Reading**: a task per peer cuts the stream into frames (4-byte big-endian length,
//!   payload) and delivers each payload to the host's inbox in the order the peer sent it.
//!   The payload grows as its bytes arrive, so a length prefix alone never makes the plugin
//!   allocate the frame's size.
//! * **Writing**: `send` puts the host's frames on the peer's unbounded queue and returns
//!   (it never waits on the socket); the peer's writer task takes everything queued when it
//!   wakes and writes it in order, gathered into writes of up to `write_buffer` bytes (a
//!   frame as large as that goes out from where it lies, uncopied).
//! * **Faults**: a peer that announces a frame over `wire::MAX_FRAME` (garbage on the wire
//!   reads as such a length), closes the connection part-way through a frame, or fails its
//!   socket gets one line on standard error naming the peer and the fault, and is dropped:
//!   its connection is closed and what is queued for it discarded. The other peers and the
//!   node carry on. A peer that closes between frames just stops sending.
//! * **Shutdown**: the queues are closed, every writer writes what was queued and closes
//!   its side (the peer reads to the end), then delivery stops and every socket is closed.
//!   A peer that reads nothing cannot hold it up: after [`SHUTDOWN_WAIT`] its connection is
//!   closed and the shutdown reports it.
//!
//! The bytes each peer receives, and the payloads delivered from each peer, are exactly the
//! baseline's, in the same order per peer: the conformance suite and the node's cluster
//! tests check it.

use std::{
    collections::HashMap,
    os::fd::FromRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc, Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use abi_stable::std_types::RVec;
use dubchain_plugin_api::{
    export_plugin, settings,
    slots::{Connections, InboundSinkBox, PeerSocket, SharedFrame, Transport},
    wire::MAX_FRAME,
    PluginError,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::tcp::{OwnedReadHalf, OwnedWriteHalf},
    sync::{mpsc, Notify},
    task::JoinHandle,
};

/// How long a shutdown waits for the writers to hand what was queued to their sockets.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

dubchain_plugin_api::declare_settings! {
    /// The reactor's worker threads, shared by every connection of every node in the host
    /// (1 to 64).
    threads: usize = 2,
    /// The most bytes of queued frames gathered into one write (at least 4,096).
    write_buffer: usize = 64 << 10,
}

/// The runtime, shut down without waiting when its last owner (the plugin object or a set
/// of connections) lets go of it.
struct Reactor(Option<tokio::runtime::Runtime>);

impl Reactor {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime is only taken when dropped")
            .handle()
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The plugin: the reactor and the write bound.
pub struct AsyncIo {
    reactor: Arc<Reactor>,
    write_buffer: usize,
}

impl AsyncIo {
    /// A transport with `settings`: its runtime's threads start now.
    pub fn new(s: &Settings) -> Result<AsyncIo, PluginError> {
        let threads = settings::within("threads", s.threads, 1..=64)?;
        let write_buffer = settings::at_least("write_buffer", s.write_buffer, 4096)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("network_async_io")
            .enable_io()
            .build()
            .map_err(|e| PluginError::failed(format!("starting the reactor: {e}")))?;
        Ok(AsyncIo {
            reactor: Arc::new(Reactor(Some(runtime))),
            write_buffer,
        })
    }

    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<AsyncIo, PluginError> {
        AsyncIo::new(&settings::parse(config)?)
    }
}

/// One peer's side of the connections.
struct PeerIo {
    /// Its writer's queue; `None` once the connections are shut down.
    queue: Mutex<Option<mpsc::UnboundedSender<Vec<SharedFrame>>>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// A node's connections on the reactor.
pub struct AsyncConnections {
    peers: Vec<PeerIo>,
    /// Peer index to its place in `peers`.
    index: HashMap<u32, usize>,
    /// Whether payloads are still delivered: readers deliver under the read lock, and the
    /// shutdown takes the write lock to stop them, so none is delivered after it returns.
    open: Arc<RwLock<bool>>,
    /// One message from each writer when it has written its queue and closed its side.
    written: Mutex<std_mpsc::Receiver<()>>,
    shut: AtomicBool,
    _reactor: Arc<Reactor>,
}

impl Transport for AsyncIo {
    type Connections = AsyncConnections;

    fn connect(
        &self, peers: &[PeerSocket], inbound: InboundSinkBox,
    ) -> Result<AsyncConnections, PluginError> {
        // Every descriptor is owned from here on, taken or not.
        let sockets: Vec<(u32, std::net::TcpStream)> = peers
            .iter()
            // SAFETY: the contract hands over connected sockets the host no longer uses
            // through these descriptors; each is owned here from now on, once.
            .map(|p| (p.peer, unsafe { std::net::TcpStream::from_raw_fd(p.fd) }))
            .collect();
        let failed = |e: std::io::Error| PluginError::failed(format!("taking a socket: {e}"));
        let handle = self.reactor.handle();
        let _entered = handle.enter();
        let mut streams = Vec::with_capacity(sockets.len());
        for (peer, socket) in sockets {
            socket.set_nonblocking(true).map_err(failed)?;
            streams.push((
                peer,
                tokio::net::TcpStream::from_std(socket).map_err(failed)?,
            ));
        }
        let inbound = Arc::new(inbound);
        let open = Arc::new(RwLock::new(true));
        let (written_tx, written) = std_mpsc::channel();
        let mut io = Vec::with_capacity(streams.len());
        let mut index = HashMap::with_capacity(streams.len());
        for (peer, stream) in streams {
            let (r, w) = stream.into_split();
            let (queue, frames) = mpsc::unbounded_channel();
            let drop_peer = Arc::new(Notify::new());
            let writer = handle.spawn(write_peer(
                w,
                frames,
                drop_peer.clone(),
                self.write_buffer,
                written_tx.clone(),
            ));
            let reader = handle.spawn(read_peer(r, peer, inbound.clone(), open.clone(), drop_peer));
            index.insert(peer, io.len());
            io.push(PeerIo {
                queue: Mutex::new(Some(queue)),
                reader,
                writer,
            });
        }
        Ok(AsyncConnections {
            peers: io,
            index,
            open,
            written: Mutex::new(written),
            shut: AtomicBool::new(false),
            _reactor: self.reactor.clone(),
        })
    }
}

impl Connections for AsyncConnections {
    fn send(&self, peer: u32, frames: Vec<SharedFrame>) -> Result<(), PluginError> {
        let p = self
            .index
            .get(&peer)
            .map(|&i| &self.peers[i])
            .ok_or_else(|| PluginError::invalid_input(format!("no peer {peer}")))?;
        let queue = p.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(queue) = queue.as_ref() else {
            return Err(PluginError::failed("the connections are shut down"));
        };
        // A peer dropped for a fault has no writer: what is sent to it is discarded, as a
        // node discards what it would send a peer that is gone (the drop was reported).
        let _ = queue.send(frames);
        Ok(())
    }

    fn shutdown(&self) -> Result<(), PluginError> {
        if self.shut.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Closing the queues lets each writer finish what it holds, then close its side.
        for p in &self.peers {
            drop(p.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        let mut finished = 0;
        {
            let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            while finished < self.peers.len() {
                let left = deadline.saturating_duration_since(Instant::now());
                if written.recv_timeout(left).is_err() {
                    break;
                }
                finished += 1;
            }
        }
        *self.open.write().unwrap_or_else(|e| e.into_inner()) = false;
        self.stop_tasks();
        if finished < self.peers.len() {
            return Err(PluginError::failed(format!(
                "{} of {} peers did not take what was queued for them within {SHUTDOWN_WAIT:?}; their connections were closed",
                self.peers.len() - finished,
                self.peers.len()
            )));
        }
        Ok(())
    }
}

impl AsyncConnections {
    /// Ends every task; a task's end closes its half of the socket.
    fn stop_tasks(&self) {
        for p in &self.peers {
            p.reader.abort();
            p.writer.abort();
        }
    }
}

impl Drop for AsyncConnections {
    fn drop(&mut self) {
        *self.open.write().unwrap_or_else(|e| e.into_inner()) = false;
        self.stop_tasks();
    }
}

/// A peer's reader: its frames' payloads to `inbound`, in order, until the peer stops
/// sending, the host's inbox is gone, delivery is closed, or a fault (reported, and the
/// writer told to drop the peer).
async fn read_peer(
    mut r: OwnedReadHalf, peer: u32, inbound: Arc<InboundSinkBox>, open: Arc<RwLock<bool>>,
    drop_peer: Arc<Notify>,
) {
    let fault = loop {
        match read_frame(&mut r).await {
            Ok(Some(payload)) => {
                let open = open.read().unwrap_or_else(|e| e.into_inner());
                if !*open
                    || inbound
                        .deliver(peer, RVec::from(payload))
                        .into_result()
                        .is_err()
                {
                    return;
                }
            }
            Ok(None) => return,
            Err(fault) => break fault,
        }
    };
    eprintln!("network_async_io: peer {peer} {fault}; dropping its connection");
    drop_peer.notify_one();
}

/// The next frame's payload; `None` if the peer closed the connection between frames; a
/// description of the fault otherwise.
async fn read_frame(r: &mut OwnedReadHalf) -> Result<Option<Vec<u8>>, String> {
    let mut len = [0u8; 4];
    let first = r
        .read(&mut len)
        .await
        .map_err(|e| format!("failed its connection ({e})"))?;
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[first..])
        .await
        .map_err(|e| format!("closed the connection inside a frame's length ({e})"))?;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(format!(
            "announced a frame of {n} bytes, over the {MAX_FRAME}-byte limit (garbage, or another protocol)"
        ));
    }
    let mut payload = Vec::with_capacity(n.min(64 << 10));
    (&mut *r)
        .take(n as u64)
        .read_to_end(&mut payload)
        .await
        .map_err(|e| format!("failed its connection inside a frame ({e})"))?;
    if payload.len() < n {
        return Err(format!(
            "closed the connection {} bytes into a frame of {n}",
            payload.len()
        ));
    }
    Ok(Some(payload))
}

/// A peer's writer: what is queued, in order, gathered into writes of up to `limit` bytes,
/// until the queue is closed (then its side of the connection is closed) or the peer is
/// dropped or gone.
async fn write_peer(
    mut w: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Vec<SharedFrame>>,
    drop_peer: Arc<Notify>, limit: usize, written: std_mpsc::Sender<()>,
) {
    let mut buffer: Vec<u8> = Vec::with_capacity(limit);
    let mut ready: Vec<Vec<SharedFrame>> = Vec::new();
    'writing: loop {
        let frames = tokio::select! {
            biased;
            _ = drop_peer.notified() => break 'writing,
            frames = queue.recv() => match frames {
                Some(frames) => frames,
                None => break 'writing,
            },
        };
        ready.push(frames);
        while let Ok(more) = queue.try_recv() {
            ready.push(more);
        }
        for frame in ready.drain(..).flatten() {
            if buffer.len() + frame.len() > limit && flush(&mut w, &mut buffer).await.is_err() {
                break 'writing;
            }
            if frame.len() >= limit {
                if w.write_all(&frame).await.is_err() {
                    break 'writing;
                }
            } else {
                buffer.extend_from_slice(&frame);
            }
        }
        if flush(&mut w, &mut buffer).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
    let _ = written.send(());
}

async fn flush(w: &mut OwnedWriteHalf, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    if !buffer.is_empty() {
        w.write_all(buffer).await?;
        buffer.clear();
    }
    Ok(())
}

export_plugin! {
    name: "network_async_io",
    transport: AsyncIo::from_config,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_naming_the_key() {
        for (config, key) in [
            ("threads = 0\n", "threads"),
            ("threads = 65\n", "threads"),
            ("write_buffer = 100\n", "write_buffer"),
            ("thread = 2\n", "thread"),
        ] {
            let e = AsyncIo::from_config(config).err().expect("refused");
            assert!(e.to_string().contains(key), "{config}: {e}");
        }
        assert!(AsyncIo::from_config("threads = 1\nwrite_buffer = 4096\n").is_ok());
    }
}
