//! `network_batching`: the frames queued for a peer written in a few vectored writes, for
//! `net.frame_send` (the catalogue row of that name).
//!
//! The baseline makes one `write` per frame: for 200-byte gossip that is a system call,
//! and on TCP with `TCP_NODELAY` (as the node sets it) a segment, per message. Here the
//! frames a writer wakes up to (everything its queue held, up to the pop's limit) are cut
//! into groups and each group goes out in one `writev`:
//!
//! * **Bounded by bytes**: a group holds at most `max_bytes` (default 64 KiB, a loopback
//!   socket buffer's worth); a frame larger than that goes alone.
//! * **Bounded by frames**: at most `max_frames` per group (default 512; the kernel takes
//!   at most `IOV_MAX` = 1024 parts in one call).
//! * **Bounded by time**: nothing waits for more frames to arrive. A group is what was
//!   already queued when the writer woke, so batching adds no latency to the first frame
//!   and saves the later ones a system call each.
//!
//! Frames are handed to the kernel where they lie (no copy into a staging buffer); the
//! host's sink finishes a partial `writev` and counts every byte, and if a write fails it
//! completes the stream from the last byte the connection took.

use abi_stable::std_types::RSlice;
use dubchain_plugin_api::{
    export_plugin, settings,
    slots::{FrameSend, FrameSinkRef},
    PluginError,
};

dubchain_plugin_api::declare_settings! {
    /// The most bytes of frames in one write (at least 4,096).
    max_bytes: usize = 64 << 10,
    /// The most frames in one write (1 to 1,024).
    max_frames: usize = 512,
}

/// The plugin: its bounds.
#[derive(Debug, Clone, Copy)]
pub struct Coalescer {
    max_bytes: usize,
    max_frames: usize,
}

impl Coalescer {
    /// A coalescer with `settings`.
    pub fn new(s: &Settings) -> Result<Coalescer, PluginError> {
        Ok(Coalescer {
            max_bytes: settings::at_least("max_bytes", s.max_bytes, 4096)?,
            max_frames: settings::within("max_frames", s.max_frames, 1..=1024)?,
        })
    }

    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Coalescer, PluginError> {
        Coalescer::new(&settings::parse(config)?)
    }

    /// The groups `frames` are written in, as index ranges, in order.
    pub fn groups(&self, frames: &[RSlice<'_, u8>]) -> Vec<std::ops::Range<usize>> {
        let mut groups = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, f) in frames.iter().enumerate() {
            if i > start && (bytes + f.len() > self.max_bytes || i - start == self.max_frames) {
                groups.push(start..i);
                (start, bytes) = (i, 0);
            }
            bytes += f.len();
        }
        if start < frames.len() {
            groups.push(start..frames.len());
        }
        groups
    }
}

impl FrameSend for Coalescer {
    fn send(&self, frames: &[RSlice<'_, u8>], sink: &FrameSinkRef<'_>) -> Result<(), PluginError> {
        for group in self.groups(frames) {
            match &frames[group] {
                [one] => sink.write(*one),
                many => sink.write_vectored(many.into()),
            }
            .into_result()?;
        }
        Ok(())
    }
}

export_plugin! {
    name: "network_batching",
    frame_send: Coalescer::from_config,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes.iter().map(|&n| vec![7u8; n]).collect()
    }

    #[test]
    fn groups_cover_every_frame_once_in_order_within_both_bounds() {
        let c = Coalescer::new(&Settings {
            max_bytes: 4096,
            max_frames: 3,
        })
        .unwrap();
        for sizes in [
            vec![],
            vec![10],
            vec![5000],
            vec![200; 10],
            vec![4000, 100, 4096, 1, 1, 1, 1, 9000, 2],
            vec![2048, 2048, 2048],
        ] {
            let owned = frames(&sizes);
            let views: Vec<RSlice<'_, u8>> = owned.iter().map(|f| f.as_slice().into()).collect();
            let groups = c.groups(&views);
            let flat: Vec<usize> = groups.iter().flat_map(|g| g.clone()).collect();
            assert_eq!(flat, (0..sizes.len()).collect::<Vec<_>>(), "{sizes:?}");
            for g in &groups {
                let bytes: usize = sizes[g.clone()].iter().sum();
                assert!(g.len() <= 3, "{sizes:?}: {g:?}");
                assert!(bytes <= 4096 || g.len() == 1, "{sizes:?}: {g:?}");
            }
        }
    }

    #[test]
    fn settings_out_of_bounds_are_refused_naming_the_key() {
        for (text, key) in [
            ("max_bytes = 10\n", "max_bytes"),
            ("max_frames = 0\n", "max_frames"),
        ] {
            let e = Coalescer::from_config(text).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        assert!(Coalescer::from_config("").is_ok());
    }
}
