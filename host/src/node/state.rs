//! Account state on an embedded RocksDB, with a commit protocol that survives `kill -9`.
//!
//! Layout (one key space, prefixes):
//!
//! | key | value |
//! |---|---|
//! | `a/` + account (32 bytes) | the account, serde_json (the baseline record format) |
//! | `b/` + height (8 bytes, big-endian) | the block, encoded by `storage.record_codec` |
//! | `h` | the head: height, block hash, state root (JSON) |
//! | `u/` + height + account | undo: the account's value before block `height` touched it |
//!
//! **Baseline write path**, as the catalogue describes it: each transaction's writes go to
//! the store at once, one put per key; a block is committed by writing its record and then
//! the head with `sync` (an fsync per commit). Before a key is first written in a block, its
//! old value is put under `u/`. RocksDB recovers a prefix of its write-ahead log, so after a
//! crash either the head moved (the block's writes are all there) or it did not, and the
//! undo entries of the unfinished block restore what it overwrote. [`StateStore::open`] runs
//! that recovery; no committed block is ever lost or half-applied.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use dubchain_plugin_api::types::Bytes32;
use rocksdb::{Direction, IteratorMode, Options, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::merkle_root;

/// An account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub balance: u64,
    pub nonce: u64,
}

/// The last committed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub height: u64,
    pub hash: Bytes32,
    pub state_root: Bytes32,
}

/// A state store problem: RocksDB's error, or a record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {path}: {source}")]
    Db {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("state store {path}: corrupt {what}: {detail}")]
    Corrupt {
        path: PathBuf,
        what: String,
        detail: String,
    },
}

/// The state store of one node.
pub struct StateStore {
    db: DB,
    path: PathBuf,
}

const ACCOUNT: &[u8] = b"a/";
const BLOCK: &[u8] = b"b/";
const HEAD: &[u8] = b"h";
const UNDO: &[u8] = b"u/";

fn account_key(a: &Bytes32) -> Vec<u8> {
    [ACCOUNT, &a.0].concat()
}

fn block_key(height: u64) -> Vec<u8> {
    [BLOCK, &height.to_be_bytes()[..]].concat()
}

fn undo_prefix(height: u64) -> Vec<u8> {
    [UNDO, &height.to_be_bytes()[..]].concat()
}

impl StateStore {
    /// Opens (creating if needed) the store at `path` and finishes or rolls back a block
    /// interrupted by a crash.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, path).map_err(|source| StateError::Db {
            path: path.to_owned(),
            source,
        })?;
        let store = StateStore {
            db,
            path: path.to_owned(),
        };
        store.recover()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, source: rocksdb::Error) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: impl Into<String>, detail: impl ToString) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// The committed head, or `None` for an empty store.
    pub fn head(&self) -> Result<Option<Head>, StateError> {
        match self.db.get(HEAD).map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.corrupt("head", e)),
        }
    }

    /// Reads an account from the store (the baseline: every read goes to RocksDB).
    pub fn account(&self, a: &Bytes32) -> Result<Account, StateError> {
        Ok(self.account_record(a)?.0)
    }

    /// The account and its stored bytes (empty when it does not exist), which is what an
    /// undo entry records.
    pub fn account_record(&self, a: &Bytes32) -> Result<(Account, Vec<u8>), StateError> {
        match self.db.get(account_key(a)).map_err(|e| self.db_err(e))? {
            None => Ok((Account::default(), Vec::new())),
            Some(v) => serde_json::from_slice(&v)
                .map(|acc| (acc, v))
                .map_err(|e| self.corrupt(format!("account {a:?}"), e)),
        }
    }

    /// The stored bytes of block `height`.
    pub fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(block_key(height)).map_err(|e| self.db_err(e))
    }

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Box<[u8]>, Box<[u8]>)>, StateError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    /// Every account, in key order.
    pub fn accounts(&self) -> Result<Vec<(Bytes32, Account)>, StateError> {
        let mut out = Vec::new();
        for (k, v) in self.scan(ACCOUNT)? {
            let key = Bytes32(
                k[ACCOUNT.len()..]
                    .try_into()
                    .map_err(|_| self.corrupt("account key", "not 32 bytes"))?,
            );
            let acc: Account = serde_json::from_slice(&v)
                .map_err(|e| self.corrupt(format!("account {key:?}"), e))?;
            out.push((key, acc));
        }
        Ok(out)
    }

    /// The state root: the Merkle root over `sha256(account || balance || nonce)` of every
    /// account with a non-default value, in key order.
    pub fn state_root(&self) -> Result<Bytes32, StateError> {
        Ok(state_root_of(&self.accounts()?))
    }

    /// Starts writing block `height` (the head's height + 1).
    pub fn begin_block(&self, height: u64) -> BlockWriter<'_> {
        BlockWriter {
            store: self,
            height,
            touched: HashSet::new(),
        }
    }

    fn recover(&self) -> Result<(), StateError> {
        let head = self.head()?.map_or(0, |h| h.height);
        // Undo entries of blocks above the head belong to a block that never committed.
        let mut stale = Vec::new();
        for (k, v) in self.scan(UNDO)? {
            let height =
                u64::from_be_bytes(k[UNDO.len()..UNDO.len() + 8].try_into().expect("8 bytes"));
            stale.push((k.to_vec(), v.to_vec(), height > head));
        }
        for (k, v, uncommitted) in &stale {
            if *uncommitted {
                let account = &k[UNDO.len() + 8..];
                let key = [ACCOUNT, account].concat();
                if v.is_empty() {
                    self.db.delete(&key).map_err(|e| self.db_err(e))?;
                } else {
                    self.db.put(&key, v).map_err(|e| self.db_err(e))?;
                }
            }
            self.db.delete(k).map_err(|e| self.db_err(e))?;
        }
        if stale.iter().any(|s| s.2) {
            tracing::warn!(path = %self.path.display(), head, "rolled back a block interrupted before its commit");
        }
        self.db.flush_wal(true).map_err(|e| self.db_err(e))?;
        Ok(())
    }
}

/// The state root of `accounts` (sorted by key).
pub fn state_root_of(accounts: &[(Bytes32, Account)]) -> Bytes32 {
    let leaves: Vec<Bytes32> = accounts
        .iter()
        .filter(|(_, a)| *a != Account::default())
        .map(|(k, a)| {
            let mut h = Sha256::new();
            h.update(k.0);
            h.update(a.balance.to_le_bytes());
            h.update(a.nonce.to_le_bytes());
            Bytes32(h.finalize().into())
        })
        .collect();
    merkle_root(&leaves)
}

/// The writes of one block in progress; commit or abort it.
pub struct BlockWriter<'a> {
    store: &'a StateStore,
    height: u64,
    touched: HashSet<Bytes32>,
}

impl BlockWriter<'_> {
    pub fn height(&self) -> u64 {
        self.height
    }

    pub fn account(&self, a: &Bytes32) -> Result<Account, StateError> {
        self.store.account(a)
    }

    /// The account and its stored bytes (see [`StateStore::account_record`]).
    pub fn account_record(&self, a: &Bytes32) -> Result<(Account, Vec<u8>), StateError> {
        self.store.account_record(a)
    }

    /// Writes `account` now, when the caller already read its stored bytes `old` in this
    /// block (before any write to it): the undo entry is written from them instead of
    /// reading the store again.
    pub fn put_with_old(
        &mut self,
        a: &Bytes32,
        old: &[u8],
        account: Account,
    ) -> Result<(), StateError> {
        let db = &self.store.db;
        if self.touched.insert(*a) {
            db.put([undo_prefix(self.height), a.0.to_vec()].concat(), old)
                .map_err(|e| self.store.db_err(e))?;
        }
        let value = serde_json::to_vec(&account).expect("accounts serialise");
        db.put(account_key(a), value)
            .map_err(|e| self.store.db_err(e))
    }

    /// Writes `account` now, after recording its previous value for rollback.
    pub fn put(&mut self, a: &Bytes32, account: Account) -> Result<(), StateError> {
        let db = &self.store.db;
        if self.touched.insert(*a) {
            let old = db
                .get(account_key(a))
                .map_err(|e| self.store.db_err(e))?
                .unwrap_or_default();
            db.put([undo_prefix(self.height), a.0.to_vec()].concat(), old)
                .map_err(|e| self.store.db_err(e))?;
        }
        let value = serde_json::to_vec(&account).expect("accounts serialise");
        db.put(account_key(a), value)
            .map_err(|e| self.store.db_err(e))
    }

    pub fn state_root(&self) -> Result<Bytes32, StateError> {
        self.store.state_root()
    }

    /// Makes the block durable: its record, then the head, synced.
    pub fn commit(self, block: &[u8], head: Head) -> Result<(), StateError> {
        let db = &self.store.db;
        let err = |e| self.store.db_err(e);
        db.put(block_key(self.height), block).map_err(err)?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        db.put_opt(
            HEAD,
            serde_json::to_vec(&head).expect("serialisable"),
            &sync,
        )
        .map_err(err)?;
        for a in &self.touched {
            db.delete([undo_prefix(self.height), a.0.to_vec()].concat())
                .map_err(err)?;
        }
        Ok(())
    }

    /// Undoes every write of this block.
    pub fn abort(self) -> Result<(), StateError> {
        let db = &self.store.db;
        let err = |e| self.store.db_err(e);
        for a in &self.touched {
            let undo = [undo_prefix(self.height), a.0.to_vec()].concat();
            let old = db.get(&undo).map_err(err)?.unwrap_or_default();
            if old.is_empty() {
                db.delete(account_key(a)).map_err(err)?;
            } else {
                db.put(account_key(a), old).map_err(err)?;
            }
            db.delete(undo).map_err(err)?;
        }
        Ok(())
    }
}
