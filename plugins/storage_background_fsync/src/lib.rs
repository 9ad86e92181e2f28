//! `storage_background_fsync`: group commit for `storage.durability` (the catalogue row
//! of that name).
//!
//! The baseline fsyncs the store's log once per commit, so eight committers pay eight
//! fsyncs one after another. Here the commits of one store that arrive while a sync runs
//! wait for the next one, which one of them (the leader) starts as soon as the running
//! sync ends: one fsync covers them all.
//!
//! The contract is kept to the letter: a caller returns `Ok` only once a sync that *began
//! after it arrived* completed successfully. Syncs of a store are numbered as they begin;
//! a caller that arrives when `begun` syncs have begun needs sync `begun + 1` or a later
//! one. A failed sync fails the callers that were waiting on it (the host then syncs
//! itself, as without the plugin); the next caller starts a new one.

use std::{
    collections::HashMap,
    sync::{Arc, Condvar, Mutex},
};

use dubchain_plugin_api::{
    export_plugin,
    slots::{Durability, WalSyncRef},
    PluginError,
};

/// What a poisoned lock of this plugin held, for its error.
const HELD: &str = "the group commit state";

/// The plugin: a group per store.
#[derive(Debug, Default)]
pub struct GroupCommit {
    groups: Mutex<HashMap<u64, Arc<Group>>>,
}

/// One store's syncs.
#[derive(Debug, Default)]
struct Group {
    state: Mutex<Syncs>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct Syncs {
    /// Syncs begun, and completed (successfully or not), counted from 1.
    begun: u64,
    completed: u64,
    /// The number of the last sync that succeeded, and why the last failure failed.
    last_ok: u64,
    last_error: Option<String>,
    /// A sync is running.
    running: bool,
    /// Calls that have arrived, ever.
    arrivals: u64,
}

/// Groups kept before idle ones are dropped.
const IDLE_GROUPS: usize = 64;

/// How many times a would-be leader yields at most, while callers keep arriving.
const GATHER_YIELDS: usize = 8;

impl GroupCommit {
    fn group(&self, store: u64) -> Result<Arc<Group>, PluginError> {
        let mut groups = self
            .groups
            .lock()
            .map_err(|_| PluginError::poisoned(HELD))?;
        // A store takes a new identity at every rollback, so groups of identities no longer
        // used pile up: past a few, drop the idle ones (held by nobody but this map; callers
        // take theirs under this lock, so the count cannot rise meanwhile). A dropped group
        // that is needed again starts afresh, which the contract allows: each call still
        // waits for a sync that began after it arrived.
        if groups.len() > IDLE_GROUPS {
            groups.retain(|_, g| Arc::strong_count(g) > 1);
        }
        Ok(groups.entry(store).or_default().clone())
    }
}

impl Durability for GroupCommit {
    fn make_durable(&self, store: u64, wal: &WalSyncRef<'_>) -> Result<(), PluginError> {
        let group = self.group(store)?;
        let mut s = group
            .state
            .lock()
            .map_err(|_| PluginError::poisoned(HELD))?;
        // The first sync that can cover this call is the next one to begin.
        let needed = s.begun + 1;
        s.arrivals += 1;
        loop {
            if s.last_ok >= needed {
                return Ok(());
            }
            if s.completed >= needed {
                // Every sync since this call arrived has completed, and the last one
                // failed: report it (the host syncs on its own).
                let why = s.last_error.clone().unwrap_or_default();
                return Err(PluginError::failed(format!(
                    "the group's sync failed: {why}"
                )));
            }
            if s.running {
                s = group
                    .done
                    .wait(s)
                    .map_err(|_| PluginError::poisoned(HELD))?;
                continue;
            }
            // Let the committers the last sync just woke arrive first (each of them will
            // need the next sync): yield while callers keep arriving, a few times at most,
            // then lead; every caller that arrived before the sync begins is covered.
            let mut seen = s.arrivals;
            for _ in 0..GATHER_YIELDS {
                drop(s);
                std::thread::yield_now();
                s = group
                    .state
                    .lock()
                    .map_err(|_| PluginError::poisoned(HELD))?;
                if s.running || s.arrivals == seen {
                    break;
                }
                seen = s.arrivals;
            }
            if s.running || s.last_ok >= needed {
                continue;
            }
            // Lead: this sync begins now, after every waiting caller arrived.
            s.begun += 1;
            let number = s.begun;
            s.running = true;
            drop(s);
            let result = wal.sync().into_result();
            s = group
                .state
                .lock()
                .map_err(|_| PluginError::poisoned(HELD))?;
            s.running = false;
            s.completed = number;
            match result {
                Ok(()) => s.last_ok = number,
                Err(e) => s.last_error = Some(e.to_string()),
            }
            group.done.notify_all();
        }
    }
}

export_plugin! {
    name: "storage_background_fsync",
    init: dubchain_plugin_api::settings::none,
    durability: |_: &str| Ok(GroupCommit::default()),
}
