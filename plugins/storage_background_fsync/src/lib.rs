//! `storage_background_fsync`: group commit for `storage.durability` (the catalogue row
//! of that name).
//!
//! The baseline fsyncs the store's log once per commit, so eight committers pay eight
//! fsyncs one after another. Here the commits of one store that arrive while a sync runs
//! wait for the next one, which one of them (the leader) starts once the running sync has
//! ended: one fsync covers them all.
//!
//! When the leader starts is the whole of the gain. The committers a sync releases come
//! back one by one (on 2 cores, several wake-ups per core), so a leader that starts at once
//! covers only those already back, and the rest need a sync of their own. The leader
//! therefore waits for the committers that are active: as many as the last sync covered
//! plus those that arrived while it ran (they are waiting, or coming back). It waits for no
//! one when that count is one (a lone committer, as the node's own commit path is, pays no
//! delay), and never longer than the last sync took (2 ms at most), so a committer that
//! stopped committing costs at most one sync's time once, after which the count no longer
//! includes it. With 8 committers this fills groups of 8 on a 2-core machine, where
//! starting at once made groups of about 4 (docs/benchmarks.md).
//!
//! The contract is kept to the letter: a caller returns `Ok` only once a sync that *began
//! after it arrived* completed successfully. Syncs of a store are numbered as they begin;
//! a caller that arrives when `begun` syncs have begun needs sync `begun + 1` or a later
//! one. A failed sync fails the callers that were waiting on it (the host then syncs
//! itself, as without the plugin); the next caller starts a new one.

use std::{
    collections::HashMap,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
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
    /// A sync completed.
    done: Condvar,
    /// The callers a gathering leader waits for have arrived.
    arrived: Condvar,
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
    /// Calls that have arrived, ever; and when the last sync began (those since wait for
    /// the next one).
    arrivals: u64,
    arrivals_at_begin: u64,
    /// Callers the running (or last) sync covers.
    covered: u64,
    /// The committers the next sync should wait for: see the crate's documentation.
    active: u64,
    /// How long the last sync took: the longest a leader gathers.
    last_sync: Duration,
    /// A leader is gathering (one at a time; the others wait for its sync).
    gathering: bool,
}

impl Syncs {
    /// Callers that arrived since the last sync began: those the next one covers.
    fn waiting(&self) -> u64 {
        self.arrivals - self.arrivals_at_begin
    }
}

/// Groups kept before idle ones are dropped.
const IDLE_GROUPS: usize = 64;

/// The longest a leader gathers, whatever the last sync took.
const MAX_GATHER: Duration = Duration::from_millis(2);

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
        if s.gathering && s.waiting() >= s.active {
            // The leader waits for this many: wake it once, not at every arrival.
            group.arrived.notify_one();
        }
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
            if s.running || s.gathering {
                s = group
                    .done
                    .wait(s)
                    .map_err(|_| PluginError::poisoned(HELD))?;
                continue;
            }
            // Gather the active committers (each of them will need the next sync), for
            // no longer than the last sync took; every caller that arrived before the sync
            // begins is covered.
            let deadline = Instant::now() + s.last_sync.min(MAX_GATHER);
            while s.waiting() < s.active {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                s.gathering = true;
                let woken = group.arrived.wait_timeout(s, left);
                s = woken.map_err(|_| PluginError::poisoned(HELD))?.0;
            }
            s.gathering = false;
            // Lead: this sync begins now, after every waiting caller arrived.
            s.begun += 1;
            let number = s.begun;
            s.running = true;
            s.covered = s.waiting();
            s.arrivals_at_begin = s.arrivals;
            drop(s);
            let began = Instant::now();
            let result = wal.sync().into_result();
            let took = began.elapsed();
            s = group
                .state
                .lock()
                .map_err(|_| PluginError::poisoned(HELD))?;
            s.running = false;
            s.completed = number;
            s.last_sync = took;
            s.active = s.covered + s.waiting();
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
