//! A reference `net.transport` implementation: the host's own I/O model (blocking sockets,
//! a reader thread per peer) behind the slot's interface. A provider can start from it (it
//! is what `dubchain-perf plugin new --slot net.transport` forwards to, and measures about
//! 1x against the host), and tests use it as a known-good transport.

use std::sync::{Arc, Mutex};

/// A `net.transport` implementation on threads: a reader thread per peer on the blocking
/// socket it was handed, writes on the caller's thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadTransport;

/// The connections of a [`ThreadTransport`].
pub struct ThreadConnections {
    writers: Vec<(u32, Mutex<std::net::TcpStream>)>,
    readers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Set when the shutdown starts: a read it cuts short is not the peer's fault.
    closing: Arc<std::sync::atomic::AtomicBool>,
}

impl crate::slots::Connections for ThreadConnections {
    fn send(
        &self, peer: u32, frames: Vec<crate::slots::SharedFrame>,
    ) -> Result<(), crate::PluginError> {
        use std::io::Write;
        let (_, w) = self
            .writers
            .iter()
            .find(|(p, _)| *p == peer)
            .ok_or_else(|| crate::PluginError::failed(format!("no peer {peer}")))?;
        let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
        for f in frames {
            w.write_all(&f)
                .map_err(|e| crate::PluginError::failed(e.to_string()))?;
        }
        Ok(())
    }

    fn shutdown(&self) -> Result<(), crate::PluginError> {
        self.closing
            .store(true, std::sync::atomic::Ordering::Release);
        for (_, w) in &self.writers {
            let _ = w
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .shutdown(std::net::Shutdown::Both);
        }
        for r in self
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = r.join();
        }
        Ok(())
    }
}

impl crate::slots::Transport for ThreadTransport {
    type Connections = ThreadConnections;

    fn connect(
        &self, peers: &[crate::slots::PeerSocket], inbound: crate::slots::InboundSinkBox,
    ) -> Result<ThreadConnections, crate::PluginError> {
        use std::os::fd::FromRawFd;
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failed = |e: std::io::Error| crate::PluginError::failed(e.to_string());
        let inbound = Arc::new(inbound);
        let mut writers = Vec::with_capacity(peers.len());
        let mut readers = Vec::with_capacity(peers.len());
        for p in peers {
            // SAFETY: the contract hands over a connected socket the host no longer uses
            // through this descriptor; it is owned here from now on.
            let stream = unsafe { std::net::TcpStream::from_raw_fd(p.fd) };
            let mut reader = stream.try_clone().map_err(failed)?;
            let (inbound, peer) = (inbound.clone(), p.peer);
            let closing = closing.clone();
            readers.push(std::thread::spawn(move || {
                let fault = crate::wire::read_frames(&mut reader, |payload| {
                    inbound.deliver(peer, payload.into()).into_result().is_ok()
                });
                // A fault of the peer's, not one the shutdown caused: one line (the
                // connection is already dropped).
                if let Some(fault) =
                    fault.filter(|_| !closing.load(std::sync::atomic::Ordering::Acquire))
                {
                    eprintln!("net.transport: peer {peer} {fault}; dropping its connection");
                }
            }));
            writers.push((p.peer, Mutex::new(stream)));
        }
        Ok(ThreadConnections {
            writers,
            readers: Mutex::new(readers),
            closing,
        })
    }
}
