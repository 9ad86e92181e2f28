//! `storage_incremental_root`: the `storage.state_root` slot, kept incrementally.
//!
//! The baseline hashes every leaf of the state at every block: O(state) per block, so a
//! node slows as its state grows. This plugin keeps the sparse Merkle trees
//! ([`dubchain_plugin_api::state_tree`]) of the last few states it answered, as persistent
//! trees that share every unchanged subtree, each found by its root. A block's changes
//! (sorted by key) are applied to its parent's tree in one pass down the tree: only the
//! nodes on the changed leaves' paths are made again and hashed, about
//! `changes * (log2(leaves) - log2(changes))` hashes plus one per shared upper node, where
//! the baseline makes `2 * leaves`.
//!
//! * **A parent it does not hold** (the node restarted, a rollback past what it kept, a
//!   store it never saw) is not guessed at: it builds the tree of the state after the block
//!   from every leaf the host lists (`all`), as the baseline does, and keeps that.
//! * **Rollbacks** need nothing: the parent of the next block is a state it answered
//!   before (it keeps `versions` of them, least recently used dropped first), and a state
//!   that was refused stays only until it ages out, harmless because it is found by its
//!   root alone (equal roots are equal states).
//! * **Concurrency**: the versions sit behind one mutex held only to find or file a tree;
//!   applying changes runs outside it, on trees no one mutates.

use std::{collections::VecDeque, sync::Arc, sync::Mutex};

use dubchain_plugin_api::{
    export_plugin, settings,
    slots::{LeafSourceRef, StateRoot},
    state_tree::{bit, leaf_hash, node_hash, LeafChange, StateLeaf, EMPTY},
    types::Bytes32,
    PluginError,
};

dubchain_plugin_api::declare_settings! {
    /// How many recent states' trees to keep (at least 1): how far back a rollback can go
    /// before the next block needs a full build.
    versions: usize = 8,
}

/// A subtree of two or more leaves, or exactly one. An empty subtree is `None`.
#[derive(Debug)]
enum Node {
    /// A subtree that holds one leaf, at whatever depth (the tree is compact).
    Leaf { leaf: StateLeaf, hash: Bytes32 },
    /// A subtree of at least two leaves: its halves by the key bit at its depth.
    Branch {
        hash: Bytes32,
        left: Tree,
        right: Tree,
    },
}

type Tree = Option<Arc<Node>>;

fn hash_of(t: &Tree) -> Bytes32 {
    match t.as_deref() {
        None => EMPTY,
        Some(Node::Leaf { hash, .. } | Node::Branch { hash, .. }) => *hash,
    }
}

fn leaf(leaf: StateLeaf) -> Tree {
    Some(Arc::new(Node::Leaf {
        hash: leaf_hash(&leaf),
        leaf,
    }))
}

/// The subtree of `left` and `right`, collapsed as the definition says: no leaf is `None`,
/// one leaf is that leaf.
fn join(left: Tree, right: Tree) -> Tree {
    let single = |t: &Tree| matches!(t.as_deref(), Some(Node::Leaf { .. }));
    match (&left, &right) {
        (None, None) => None,
        (None, _) if single(&right) => right,
        (_, None) if single(&left) => left,
        _ => Some(Arc::new(Node::Branch {
            hash: node_hash(&hash_of(&left), &hash_of(&right)),
            left,
            right,
        })),
    }
}

/// The subtree at `depth` of `leaves` (sorted, distinct keys).
fn build(leaves: &[StateLeaf], depth: usize) -> Tree {
    match leaves {
        [] => None,
        [one] => leaf(*one),
        _ => {
            let split = leaves.partition_point(|l| !bit(&l.key, depth));
            join(
                build(&leaves[..split], depth + 1),
                build(&leaves[split..], depth + 1),
            )
        }
    }
}

/// `tree` (the subtree at `depth`) with `changes` (sorted, distinct, all on its path)
/// applied: a subtree no change reaches is shared, not copied.
fn apply(tree: &Tree, changes: &[LeafChange], depth: usize) -> Tree {
    if changes.is_empty() {
        return tree.clone();
    }
    match tree.as_deref() {
        // A leaf or nothing: what the changes leave of it, built afresh (a handful of leaves).
        None | Some(Node::Leaf { .. }) => {
            let kept = match tree.as_deref() {
                Some(Node::Leaf { leaf, .. }) if !changes.iter().any(|c| c.key == leaf.key) => {
                    Some(*leaf)
                }
                _ => None,
            };
            let mut leaves: Vec<StateLeaf> = changes
                .iter()
                .filter_map(|c| {
                    c.value
                        .into_option()
                        .map(|value| StateLeaf { key: c.key, value })
                })
                .chain(kept)
                .collect();
            leaves.sort_unstable_by_key(|l| l.key);
            build(&leaves, depth)
        }
        Some(Node::Branch { left, right, .. }) => {
            let split = changes.partition_point(|c| !bit(&c.key, depth));
            let (l, r) = changes.split_at(split);
            join(apply(left, l, depth + 1), apply(right, r, depth + 1))
        }
    }
}

/// The plugin: recent states' trees, most recently used last.
#[derive(Debug)]
pub struct IncrementalRoot {
    versions: usize,
    trees: Mutex<VecDeque<(Bytes32, Tree)>>,
}

impl IncrementalRoot {
    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Self, PluginError> {
        let s: Settings = settings::parse(config)?;
        Ok(IncrementalRoot {
            // At least the last state's tree is kept.
            versions: settings::at_least("versions", s.versions, 1)?,
            trees: Mutex::default(),
        })
    }

    fn trees(&self) -> Result<std::sync::MutexGuard<'_, VecDeque<(Bytes32, Tree)>>, PluginError> {
        self.trees
            .lock()
            .map_err(|_| PluginError::poisoned("the state trees"))
    }

    /// The tree of the state whose root is `root`, if kept (then the most recently used).
    fn find(&self, root: &Bytes32) -> Result<Option<Tree>, PluginError> {
        let mut trees = self.trees()?;
        let Some(at) = trees.iter().position(|(r, _)| r == root) else {
            return Ok(None);
        };
        let found = trees.remove(at).expect("found above");
        let tree = found.1.clone();
        trees.push_back(found);
        Ok(Some(tree))
    }

    /// Files `tree` under its root as the most recently used, dropping the least.
    fn keep(&self, tree: Tree) -> Result<Bytes32, PluginError> {
        let root = hash_of(&tree);
        let mut trees = self.trees()?;
        trees.retain(|(r, _)| *r != root);
        trees.push_back((root, tree));
        while trees.len() > self.versions {
            trees.pop_front();
        }
        Ok(root)
    }
}

impl StateRoot for IncrementalRoot {
    fn root(
        &self, parent: &Bytes32, changes: &[LeafChange], all: &LeafSourceRef<'_>,
    ) -> Result<Bytes32, PluginError> {
        let tree = match self.find(parent)? {
            Some(tree) => apply(&tree, changes, 0),
            None => {
                let mut leaves = all.leaves().into_result()?.into_vec();
                leaves.sort_unstable_by_key(|l| l.key);
                if let Some(w) = leaves.windows(2).find(|w| w[0].key == w[1].key) {
                    return Err(PluginError::invalid_input(format!(
                        "the state lists key {:?} twice",
                        w[0].key
                    )));
                }
                build(&leaves, 0)
            }
        };
        self.keep(tree)
    }
}

export_plugin! {
    name: "storage_incremental_root",
    state_root: IncrementalRoot::from_config,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dubchain_plugin_api::state_tree;
    use dubchain_plugin_api::{abi_stable::std_types::ROption, slots::HostLeaves};

    fn key(b: u8) -> Bytes32 {
        Bytes32([b; 32])
    }

    #[test]
    fn builds_apply_and_collapse_as_the_definition_says() {
        let leaves: Vec<StateLeaf> = [0x00u8, 0x40, 0x80, 0xc0, 0xc1]
            .iter()
            .map(|&k| StateLeaf {
                key: key(k),
                value: key(k ^ 1),
            })
            .collect();
        let tree = build(&leaves, 0);
        assert_eq!(hash_of(&tree), state_tree::sorted_root(&leaves, 0));
        // Remove all but one: the root is that leaf's hash.
        let removals: Vec<LeafChange> = leaves[1..]
            .iter()
            .map(|l| LeafChange {
                key: l.key,
                value: ROption::RNone,
            })
            .collect();
        let one = apply(&tree, &removals, 0);
        assert_eq!(hash_of(&one), leaf_hash(&leaves[0]));
        let none = apply(
            &one,
            &[LeafChange {
                key: leaves[0].key,
                value: ROption::RNone,
            }],
            0,
        );
        assert_eq!(hash_of(&none), EMPTY);
    }

    #[test]
    fn an_unknown_parent_is_built_from_every_leaf_and_kept() {
        let plugin = IncrementalRoot::from_config("versions = 1").unwrap();
        let state = vec![StateLeaf {
            key: key(9),
            value: key(1),
        }];
        let all = HostLeaves(|| Ok(state.clone()));
        let root = plugin.root(&key(0xaa), &[], &all.as_source()).unwrap();
        assert_eq!(root, leaf_hash(&state[0]));
        assert!(plugin.find(&root).unwrap().is_some());
        assert!(IncrementalRoot::from_config("versions = 0").is_err());
        assert!(IncrementalRoot::from_config("depth = 3").is_err());
    }
}
