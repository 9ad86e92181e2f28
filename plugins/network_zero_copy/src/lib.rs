//! `network_zero_copy`: a broadcast encoded once, its frames shared by every peer, for
//! `net.broadcast` (the catalogue row of that name).
//!
//! The baseline serialises every message of a broadcast once per peer into a fresh buffer:
//! for a 1 MiB block and 16 peers, 16 serialisations and 16 MiB of copies. Here each message
//! is framed once (length prefix and payload in one buffer, sized from the first encoding)
//! and every peer's list holds a reference to that one frame (`RArc`, a reference count, no
//! bytes copied). The host only reads frames, and a peer's writer hands them to the kernel
//! where they lie, so one copy per broadcast reaches user space instead of one per peer.
//!
//! No settings.

use abi_stable::std_types::{RArc, RVec};
use dubchain_plugin_api::{
    export_plugin,
    slots::{Broadcast, SharedFrame},
    wire::{self, Message},
    PluginError,
};

/// The plugin (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct SharedFrames;

impl SharedFrames {
    /// Each of `msgs` framed once, in order.
    pub fn encode(msgs: &[Message]) -> Vec<SharedFrame> {
        msgs.iter()
            .map(|m| {
                let mut frame = vec![0u8; 4];
                wire::write_payload(m, &mut frame);
                let len = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
                frame[..4].copy_from_slice(&len.to_be_bytes());
                RArc::new(RVec::from(frame))
            })
            .collect()
    }
}

impl Broadcast for SharedFrames {
    fn frames(&self, msgs: &[Message], peers: u32) -> Result<Vec<Vec<SharedFrame>>, PluginError> {
        if peers == 0 {
            return Ok(Vec::new());
        }
        let once = SharedFrames::encode(msgs);
        Ok((0..peers).map(|_| once.clone()).collect())
    }
}

export_plugin! {
    name: "network_zero_copy",
    init: dubchain_plugin_api::settings::none,
    broadcast: |_: &str| Ok(SharedFrames),
}

#[cfg(test)]
mod tests {
    use dubchain_plugin_api::types::Blob;

    use super::*;

    #[test]
    fn every_peer_gets_the_frames_of_wire_frame_sharing_one_buffer() {
        let msgs = vec![
            Message::Vote {
                height: 3,
                block: Default::default(),
                validator: 1,
                signature: Blob(vec![9; 96].into()),
            },
            Message::Vote {
                height: 4,
                block: Default::default(),
                validator: 2,
                signature: Blob(Vec::new().into()),
            },
        ];
        let lists = SharedFrames.frames(&msgs, 3).unwrap();
        assert_eq!(lists.len(), 3);
        for list in &lists {
            let bytes: Vec<Vec<u8>> = list.iter().map(|f| f.to_vec()).collect();
            assert_eq!(bytes, msgs.iter().map(wire::frame).collect::<Vec<_>>());
        }
        assert!(
            std::ptr::eq(&*lists[0][1], &*lists[2][1]),
            "one buffer per message"
        );
        assert!(SharedFrames.frames(&msgs, 0).unwrap().is_empty());
    }
}
