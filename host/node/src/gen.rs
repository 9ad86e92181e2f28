//! The seeded node workload: accounts, transfers with a Zipf hot-key skew, contract calls
//! (and the odd deploy) on the reference contracts, a share of invalid transactions
//! (including calls that run out of gas), validators.
//!
//! Transactions for block `h` are a function of the seed, `h` and the committed state (for
//! nonces), so a run can be resumed after a crash and two runs with the same seed see the
//! same transactions.

use dubchain_plugin_api::{
    chain::contract_address,
    exec::{deploy_gas, CALL_BASE_GAS},
    types::{Blob, Bytes32, Bytes64, Transaction, TxKind},
    wire,
};
use ed25519_dalek::{Signer, SigningKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::{
    chain::signing_bytes,
    execute::TRANSFER_GAS,
    net::{Inbound, Message},
    state::{Account, StateError, StateStore},
    vm::contracts,
};

/// Shape of the workload.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub accounts: usize,
    pub validators: usize,
    pub txs_per_block: usize,
    /// Zipf exponent of the choice of sender and recipient (0 = uniform).
    pub zipf: f64,
    /// Share of generated transactions that are invalid.
    pub invalid_share: f64,
    /// Share of valid transactions that are contract calls (one in twenty of them a
    /// deploy).
    pub contract_share: f64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            seed: 42,
            accounts: 1_000,
            validators: 4,
            txs_per_block: 256,
            zipf: 1.1,
            invalid_share: 0.05,
            contract_share: 0.05,
        }
    }
}

/// The kinds of invalid transaction the workload generates.
pub const INVALID_KINDS: [&str; 6] = [
    "bad signature",
    "bad nonce",
    "insufficient balance",
    "undeclared access",
    "duplicate",
    "out of gas",
];

/// Gas a generated call may use beyond its base: ample for the calls the workload makes
/// (at most 400 rounds of the compute contract), short for an out-of-gas one.
pub const CALL_GAS: u64 = 50_000;

/// Rounds of the compute contract an out-of-gas call asks for: about 100k gas.
const OUT_OF_GAS_ROUNDS: i64 = 5_000;

/// Balance of every account at genesis.
pub const GENESIS_BALANCE: u64 = 1_000_000_000;

/// The generator.
pub struct Workload {
    pub config: WorkloadConfig,
    keys: Vec<SigningKey>,
    pub addresses: Vec<Bytes32>,
    pub validators: Vec<Bytes32>,
    cdf: Vec<f64>,
}

impl Workload {
    pub fn new(config: WorkloadConfig) -> Workload {
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let keys: Vec<SigningKey> = (0..config.accounts.max(2))
            .map(|_| SigningKey::generate(&mut rng))
            .collect();
        let addresses = keys
            .iter()
            .map(|k| Bytes32(k.verifying_key().to_bytes()))
            .collect();
        let validators = (0..config.validators.max(1))
            .map(|_| Bytes32(rng.gen()))
            .collect();
        let weights: Vec<f64> = (1..=keys.len())
            .map(|i| 1.0 / (i as f64).powf(config.zipf))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Workload {
            config,
            keys,
            addresses,
            validators,
            cdf,
        }
    }

    /// Accounts and balances at genesis.
    pub fn genesis(&self) -> Vec<(Bytes32, Account)> {
        self.addresses
            .iter()
            .map(|a| {
                (
                    *a,
                    Account {
                        balance: GENESIS_BALANCE,
                        nonce: 0,
                    },
                )
            })
            .collect()
    }

    /// The proposer of block `height`: validators take turns.
    pub fn proposer(&self, height: u64) -> Bytes32 {
        self.validators[(height % self.validators.len() as u64) as usize]
    }

    fn pick(&self, rng: &mut ChaCha20Rng) -> usize {
        let u: f64 = rng.gen();
        self.cdf
            .partition_point(|c| *c < u)
            .min(self.keys.len() - 1)
    }

    /// The transactions submitted while block `height` is being built.
    pub fn txs_for_block(
        &self, height: u64, state: &StateStore,
    ) -> Result<Vec<Transaction>, StateError> {
        let mut rng = ChaCha20Rng::seed_from_u64(
            self.config.seed ^ height.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut next_nonce: std::collections::HashMap<usize, u64> =
            std::collections::HashMap::new();
        let mut out: Vec<Transaction> = Vec::with_capacity(self.config.txs_per_block);
        for _ in 0..self.config.txs_per_block {
            let from = self.pick(&mut rng);
            let mut to = self.pick(&mut rng);
            if to == from {
                to = (to + 1) % self.keys.len();
            }
            let nonce = match next_nonce.get(&from) {
                Some(n) => *n,
                None => state.account(&self.addresses[from])?.nonce,
            };
            let invalid = rng.gen_bool(probability(self.config.invalid_share));
            let kind = if invalid {
                rng.gen_range(0..INVALID_KINDS.len())
            } else {
                usize::MAX
            };
            if kind == 4 {
                if let Some(prev) = out.last().cloned() {
                    out.push(prev);
                    continue;
                }
            }
            let contract = if kind == 5 {
                Some((contracts::compute().address, OUT_OF_GAS_ROUNDS))
            } else if !invalid && rng.gen_bool(probability(self.config.contract_share)) {
                match rng.gen_range(0..20) {
                    0 => Some((Bytes32::default(), -1)), // a deploy, below
                    1..=9 => Some((contracts::counter().address, rng.gen_range(0..16))),
                    _ => Some((contracts::compute().address, rng.gen_range(10..400))),
                }
            } else {
                None
            };
            if let Some((target, arg)) = contract {
                let deploy = arg == -1 && target == Bytes32::default();
                let from_addr = self.addresses[from];
                let code = &contracts::counter().code;
                let to = if deploy {
                    contract_address(&from_addr, nonce)
                } else {
                    target
                };
                let mut tx = Transaction {
                    from: from_addr,
                    to,
                    amount: 0,
                    fee: rng.gen_range(1..100),
                    nonce,
                    gas_limit: if deploy {
                        deploy_gas(code.len())
                    } else {
                        CALL_BASE_GAS + CALL_GAS
                    },
                    kind: if deploy { TxKind::Deploy } else { TxKind::Call },
                    payload: Blob(if deploy {
                        code.clone().into()
                    } else {
                        arg.to_le_bytes().to_vec().into()
                    }),
                    access_list: vec![from_addr, to].into(),
                    signature: Bytes64([0; 64]),
                };
                tx.signature = Bytes64(self.keys[from].sign(&signing_bytes(&tx)).to_bytes());
                // Included even when it runs out of gas: the nonce moves.
                next_nonce.insert(from, nonce + 1);
                out.push(tx);
                continue;
            }
            let mut tx = Transaction {
                from: self.addresses[from],
                to: self.addresses[to],
                amount: if kind == 2 {
                    GENESIS_BALANCE * 1_000
                } else {
                    rng.gen_range(1..1_000)
                },
                fee: rng.gen_range(1..100),
                nonce: match (kind, nonce) {
                    (1, 0) => 1_000_000, // far in the future: pending, never includable
                    (1, n) => n - 1,     // already used: rejected at admission
                    _ => nonce,
                },
                gas_limit: TRANSFER_GAS,
                kind: TxKind::Transfer,
                payload: Blob::default(),
                access_list: if kind == 3 {
                    vec![self.addresses[from]].into()
                } else {
                    vec![self.addresses[from], self.addresses[to]].into()
                },
                signature: Bytes64([0; 64]),
            };
            tx.signature = Bytes64(self.keys[from].sign(&signing_bytes(&tx)).to_bytes());
            if kind == 0 {
                tx.signature.0[40] ^= 1;
            }
            if !invalid {
                next_nonce.insert(from, nonce + 1);
            }
            out.push(tx);
        }
        Ok(out)
    }
}

/// A share as a probability: clamped to [0, 1], and 0 for NaN (which `clamp` passes
/// through and `gen_bool` panics on). The command line refuses such values before this.
fn probability(share: f64) -> f64 {
    if share.is_nan() {
        0.0
    } else {
        share.clamp(0.0, 1.0)
    }
}

/// `txs` as a node receives them gossiped: a frame's payload each (a tag and JSON), from
/// peer 0. The clients' work, like generating and signing them: untimed in `run`, and left
/// out of a profile's shares (its frames stand under this module).
pub fn gossip(txs: &[Transaction]) -> Vec<Inbound> {
    txs.iter()
        .map(|tx| (0, wire::payload(&Message::Tx(tx.clone()))))
        .collect()
}
