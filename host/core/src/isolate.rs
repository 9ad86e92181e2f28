//! Process isolation for plugins the user does not trust (`[host] isolate = ["name"]`): the
//! plugin is loaded, initialised and self-tested in a child process (`dubchain-perf plugin
//! serve`), and the host installs proxies that send each call to that process over its
//! standard input and output. A crash there (a segfault, an abort) ends the child, not the
//! node: the call in flight fails, is answered by the layer below like any failed call, and
//! the next call starts a new child (the breaker spaces the restarts out).
//!
//! The wire is a 4-byte big-endian length and a [`Request`] or [`Response`] in bincode
//! (bounded by the length: a hostile length field cannot make either side allocate more).
//! The slots whose calls are plain data both ways can be isolated ([`ISOLATABLE`]); a plugin
//! that provides another slot is refused isolation with a clear error. Isolation costs a
//! copy of the batch each way, its encoding and two pipe transfers per call (`bench
//! --isolation` measures it: the `isolated.` rows).
//!
//! A call the child does not answer within the launcher's `call_timeout` is a failed call
//! too: the child is killed and the next call starts another. Limit: an isolated `crypto.sig_verify`
//! layer's `next` is the baseline in the child, not the host's stack below it (every layer
//! gives the same verdicts, so only speed differs).

use std::{
    io::{BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{Arc, Mutex},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RVec},
};
use dubchain_plugin_api::{
    slots::{
        BlockCheck, BlockValidation, BlockValidationFfi_TO, GasCounter, Guarded, Merkle,
        MerkleFfi_TO, Metered, Metering, MeteringFfi_TO, Next, RecordCodec, RecordCodecFfi_TO,
        SigVerifyFfi_TO, SigVerifyFn, TxCheck, TxDecode, TxDecodeFfi_TO, TxValidation,
        TxValidationFfi_TO, VoteVerify, VoteVerifyFfi_TO, BLOCK_VALIDATION, MERKLE, METERING,
        RECORD_CODEC, SIG_VERIFY, TX_DECODE, TX_VALIDATION, VOTE_VERIFY,
    },
    types::{Block, Bytes32, Record, SigItem, Transaction, VoteItem},
    PluginError,
};
use serde::{Deserialize, Serialize};

use crate::{
    loader::{self, Deadlines, LoadError, LoadedPlugin},
    manifest::Manifest,
};

/// The slots an isolated plugin may provide.
pub const ISOLATABLE: [&str; 8] = [
    SIG_VERIFY.id,
    MERKLE.id,
    RECORD_CODEC.id,
    VOTE_VERIFY.id,
    TX_DECODE.id,
    TX_VALIDATION.id,
    BLOCK_VALIDATION.id,
    METERING.id,
];

/// Largest message either side accepts.
const MAX_MESSAGE: usize = 256 << 20;

/// A call, as the host sends it to the child.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// `crypto.sig_verify`: (public key, signature, message) per item.
    SigVerify(Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>),
    /// `crypto.merkle`: the leaves of each tree.
    Roots(Vec<Vec<Bytes32>>),
    /// `storage.record_codec`, encode.
    Encode(Vec<Record>),
    /// `storage.record_codec`, decode.
    Decode(Vec<Vec<u8>>),
    /// `consensus.vote_verify`: (public key, signature, message) per vote.
    VoteVerify(Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>),
    /// `mem.tx_decode`: the payloads.
    TxDecode(Vec<Vec<u8>>),
    /// `exec.tx_validation`: the transactions.
    TxValidate(Vec<Transaction>),
    /// `consensus.block_validation`: the head the run extends, and the run.
    CheckRun {
        head_height: u64,
        head_hash: Bytes32,
        blocks: Vec<Block>,
    },
    /// `vm.metering`: the contract code.
    Instrument(Vec<u8>),
}

/// The child's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// The plugin loaded and passed its self-tests; calls may come.
    Ready,
    Verdicts(Vec<bool>),
    Roots(Vec<Bytes32>),
    Values(Vec<Vec<u8>>),
    Records(Vec<Result<Record, String>>),
    Transactions(Vec<Result<Transaction, String>>),
    TxChecks(Vec<TxCheck>),
    BlockChecks(Vec<BlockCheck>),
    /// Metered code, and how it counts gas.
    Metered(Vec<u8>, GasCounter),
    /// The call failed in the plugin (or the plugin did not load), with why.
    Failed(String),
}

/// The encoding of messages: bincode, bounded.
fn codec() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new().with_limit(MAX_MESSAGE as u64)
}

fn write_message<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    use bincode::Options;
    let body = codec().serialize(msg).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&body)?;
    w.flush()
}

fn read_message<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> std::io::Result<T> {
    use bincode::Options;
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::other(format!(
            "a message of {len} bytes (at most {MAX_MESSAGE})"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    codec()
        .with_limit(len as u64)
        .deserialize(&body)
        .map_err(std::io::Error::other)
}

/// The child's side (`dubchain-perf plugin serve`): loads the plugin of `manifest` with
/// `config` under `deadlines` (its init and self-tests run here), says [`Response::Ready`] (or
/// [`Response::Failed`] with the load error, and returns it), then answers requests until
/// `input` closes.
pub fn serve(
    manifest: &Manifest, config: &str, runtime_dir: &Path, deadlines: Deadlines,
    mut input: impl Read, mut output: impl Write,
) -> Result<(), String> {
    let loaded = match loader::load(manifest, config, runtime_dir, 1, deadlines, false, None) {
        Ok(l) => l,
        Err(e) => {
            let _ = write_message(&mut output, &Response::Failed(e.to_string()));
            return Err(e.to_string());
        }
    };
    write_message(&mut output, &Response::Ready).map_err(|e| e.to_string())?;
    loop {
        let request: Request = match read_message(&mut input) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(format!("reading a request: {e}")),
        };
        let response = answer(&loaded, request);
        write_message(&mut output, &response).map_err(|e| e.to_string())?;
    }
}

/// The items of a signature or vote request, borrowed, each key and signature checked to
/// its length (`K`, `S` bytes); `make` builds an item.
fn borrowed<'a, const K: usize, const S: usize, T>(
    items: &'a [(Vec<u8>, Vec<u8>, Vec<u8>)], make: impl Fn([u8; K], [u8; S], RSlice<'a, u8>) -> T,
) -> Result<Vec<T>, Response> {
    items
        .iter()
        .map(|(k, s, m)| {
            let key = k.as_slice().try_into().ok()?;
            Some(make(
                key,
                s.as_slice().try_into().ok()?,
                m.as_slice().into(),
            ))
        })
        .collect::<Option<Vec<T>>>()
        .ok_or_else(|| {
            Response::Failed(format!(
                "a key of other than {K} bytes or a signature of other than {S}"
            ))
        })
}

/// One item of a signature or vote request, owned.
fn owned(key: &[u8], signature: &[u8], message: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (key.to_vec(), signature.to_vec(), message.to_vec())
}

/// The value of an answer of kind `Response::$kind`, or the error that the child answered
/// another kind.
macro_rules! answer_as {
    ($answer:expr, $kind:ident) => {
        match $answer {
            Response::$kind(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    };
}

/// The verdicts of a signature or vote answer.
fn verdicts(answer: Response) -> Result<Vec<bool>, PluginError> {
    answer_as!(answer, Verdicts)
}

/// The plugin's answer as a response: `ok` of its value, or why it failed.
fn reply<T>(answer: RResult<T, PluginError>, ok: impl FnOnce(T) -> Response) -> Response {
    answer
        .into_result()
        .map_or_else(|e| Response::Failed(e.to_string()), ok)
}

/// Borrowed views of owned byte strings, as the FFI takes them.
fn byte_slices(values: &[Vec<u8>]) -> Vec<RSlice<'_, u8>> {
    values.iter().map(|v| v.as_slice().into()).collect()
}

/// Per-item answers, each refusal in words, as they travel back to the host.
fn each<T, E: std::fmt::Display>(answers: RVec<RResult<T, E>>) -> Vec<Result<T, String>> {
    answers
        .into_iter()
        .map(|r| r.into_result().map_err(|e| e.to_string()))
        .collect()
}

/// One request, answered by the plugin's own objects.
fn answer(loaded: &LoadedPlugin, request: Request) -> Response {
    // The plugin's object for a slot, or the answer that it has none.
    macro_rules! provided {
        ($field:ident, $slot:ident) => {
            match &loaded.$field {
                Some(imp) => imp,
                None => {
                    return Response::Failed(format!("the plugin does not provide `{}`", $slot.id))
                }
            }
        };
    }
    match request {
        Request::SigVerify(items) => {
            let imp = provided!(sig_verify, SIG_VERIFY);
            let items = match borrowed(&items, SigItem::new) {
                Ok(items) => items,
                Err(refused) => return refused,
            };
            let lower = dubchain_plugin_api::slots::LowerFn(|xs: &[SigItem<'_>]| {
                Ok(crate::baseline::sig_verify(xs))
            });
            reply(
                imp.verify_batch(items.as_slice().into(), lower.as_ffi()),
                |v| Response::Verdicts(v.into_vec()),
            )
        }
        Request::Roots(trees) => {
            let imp = provided!(merkle, MERKLE);
            let trees: Vec<RSlice<'_, Bytes32>> =
                trees.iter().map(|t| t.as_slice().into()).collect();
            reply(imp.roots(trees.as_slice().into()), |v| {
                Response::Roots(v.into_vec())
            })
        }
        Request::Encode(records) => {
            let imp = provided!(record_codec, RECORD_CODEC);
            reply(imp.encode(records.as_slice().into()), |v| {
                Response::Values(v.into_iter().map(|b| b.into_vec()).collect())
            })
        }
        Request::VoteVerify(votes) => {
            let imp = provided!(vote_verify, VOTE_VERIFY);
            let votes = match borrowed(&votes, VoteItem::new) {
                Ok(votes) => votes,
                Err(refused) => return refused,
            };
            reply(imp.verify_votes(votes.as_slice().into()), |v| {
                Response::Verdicts(v.into_vec())
            })
        }
        Request::TxDecode(payloads) => {
            let imp = provided!(tx_decode, TX_DECODE);
            let slices = byte_slices(&payloads);
            reply(imp.decode(slices.as_slice().into()), |v| {
                Response::Transactions(each(v))
            })
        }
        Request::TxValidate(txs) => {
            let imp = provided!(tx_validation, TX_VALIDATION);
            reply(imp.validate(txs.as_slice().into()), |v| {
                Response::TxChecks(v.into_vec())
            })
        }
        Request::CheckRun {
            head_height,
            head_hash,
            blocks,
        } => {
            let imp = provided!(block_validation, BLOCK_VALIDATION);
            reply(
                imp.check_run(head_height, &head_hash, blocks.as_slice().into()),
                |v| Response::BlockChecks(v.into_vec()),
            )
        }
        Request::Instrument(code) => {
            let imp = provided!(metering, METERING);
            reply(imp.instrument(code.as_slice().into()), |m| {
                Response::Metered(m.wasm.into_vec(), m.counter)
            })
        }
        Request::Decode(values) => {
            let imp = provided!(record_codec, RECORD_CODEC);
            let slices = byte_slices(&values);
            reply(imp.decode(slices.as_slice().into()), |v| {
                Response::Records(each(v))
            })
        }
    }
}

/// How the host starts a child for a plugin: `program` with `args`, then `--manifest`
/// and the manifest's path (`dubchain-perf plugin serve` is the program the CLI gives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// How long the child may take to answer one call (`[host] isolated_call_timeout_ms`).
    pub call_timeout: std::time::Duration,
    /// The deadlines of the child's load steps: the host's own (`--init-timeout-ms`,
    /// `--step-timeout-ms` to the child).
    pub deadlines: Deadlines,
}

/// The host's side: one plugin's child process, started on demand and again after it
/// died.
pub struct Supervised {
    plugin: String,
    launcher: Launcher,
    manifest: PathBuf,
    config: String,
    running: Mutex<Option<Running>>,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Supervised {
    /// Starts the child for `manifest` and waits until it says the plugin loaded and
    /// passed its self-tests; its refusal is the load error.
    pub fn start(
        launcher: &Launcher, manifest: &Manifest, config: &str,
    ) -> Result<Arc<Supervised>, String> {
        let s = Arc::new(Supervised {
            plugin: manifest.name.clone(),
            launcher: launcher.clone(),
            manifest: manifest.path.clone(),
            config: config.to_owned(),
            running: Mutex::new(None),
        });
        *s.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.spawn()?);
        Ok(s)
    }

    fn spawn(&self) -> Result<Running, String> {
        let mut child = Command::new(&self.launcher.program)
            .args(&self.launcher.args)
            .arg("--manifest")
            .arg(&self.manifest)
            .arg(format!(
                "--init-timeout-ms={}",
                self.launcher.deadlines.init.as_millis()
            ))
            .arg(format!(
                "--step-timeout-ms={}",
                self.launcher.deadlines.step.as_millis()
            ))
            .env("DUBCHAIN_PLUGIN_CONFIG", &self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "starting {} for the isolated plugin: {e}",
                    self.launcher.program.display()
                )
            })?;
        let stdin = child
            .stdin
            .take()
            .ok_or("the child has no standard input")?;
        let mut stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or("the child has no standard output")?,
        );
        match read_message::<Response>(&mut stdout) {
            Ok(Response::Ready) => Ok(Running {
                child,
                stdin,
                stdout,
            }),
            Ok(Response::Failed(e)) => {
                let _ = child.wait();
                Err(e)
            }
            Ok(other) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the child answered {other:?} before saying it was ready"
                ))
            }
            Err(e) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(format!(
                    "the child ended before it was ready ({status}): {e}"
                ))
            }
        }
    }

    /// Sends `request` to the child (starting one if none runs) and returns its answer.
    /// If the child dies, it is reaped and the call fails; the next call starts another.
    pub fn call(&self, request: &Request) -> Result<Response, PluginError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.is_none() {
            *running = Some(self.spawn().map_err(|e| {
                PluginError::failed(format!(
                    "isolated plugin `{}` could not be restarted: {e}",
                    self.plugin
                ))
            })?);
        }
        let r = running.as_mut().expect("started above");
        let timeout = self.launcher.call_timeout;
        let answer = write_message(&mut r.stdin, request)
            .and_then(|()| answer_within(&r.stdout, timeout))
            .and_then(|()| read_message::<Response>(&mut r.stdout));
        match answer {
            Ok(Response::Failed(e)) => Err(PluginError::failed(e)),
            Ok(response) => Ok(response),
            Err(e) => {
                let mut gone = running.take().expect("running");
                let _ = gone.child.kill();
                let status = gone
                    .child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|w| w.to_string());
                tracing::warn!(plugin = %self.plugin, %status, "an isolated plugin's process ended; its call is answered below, the next call restarts it");
                Err(PluginError::failed(format!(
                    "isolated plugin `{}`: its process ended ({status}; {e}); the next call starts a new one",
                    self.plugin
                )))
            }
        }
    }
}

/// Waits until the child has begun to answer, at most `timeout`.
fn answer_within(
    stdout: &BufReader<ChildStdout>, timeout: std::time::Duration,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if !stdout.buffer().is_empty() {
        return Ok(());
    }
    let mut fd = libc::pollfd {
        fd: stdout.get_ref().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is one valid pollfd for the duration of the call, and the count is 1.
    match unsafe { libc::poll(&mut fd, 1, ms) } {
        0 => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        )),
        n if n < 0 => Err(std::io::Error::last_os_error()),
        _ => Ok(()),
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(mut r) = self.running.get_mut().ok().and_then(Option::take) {
            drop(r.stdin);
            let _ = r.child.wait();
        }
    }
}

/// An answer of the wrong kind: the child does not follow the protocol.
fn unexpected(r: Response) -> PluginError {
    PluginError::failed(format!("the isolated plugin answered {r:?}"))
}

/// `crypto.sig_verify` through the child.
fn sig_verify_in(child: &Supervised, items: &[SigItem<'_>]) -> Result<Vec<bool>, PluginError> {
    let items = items
        .iter()
        .map(|i| owned(&i.public_key, &i.signature, &i.message))
        .collect();
    verdicts(child.call(&Request::SigVerify(items))?)
}

/// `crypto.merkle` through the child.
struct MerkleProxy(Arc<Supervised>);

impl Merkle for MerkleProxy {
    fn roots(&self, trees: &[RSlice<'_, Bytes32>]) -> Result<Vec<Bytes32>, PluginError> {
        let trees = trees.iter().map(|t| t.as_slice().to_vec()).collect();
        answer_as!(self.0.call(&Request::Roots(trees))?, Roots)
    }
}

/// `storage.record_codec` through the child.
struct RecordCodecProxy(Arc<Supervised>);

impl RecordCodec for RecordCodecProxy {
    fn encode(&self, records: &[Record]) -> Result<Vec<Vec<u8>>, PluginError> {
        answer_as!(self.0.call(&Request::Encode(records.to_vec()))?, Values)
    }

    fn decode(
        &self, values: &[RSlice<'_, u8>],
    ) -> Result<Vec<Result<Record, PluginError>>, PluginError> {
        let values = values.iter().map(|v| v.as_slice().to_vec()).collect();
        match self.0.call(&Request::Decode(values))? {
            Response::Records(v) => Ok(v
                .into_iter()
                .map(|r| r.map_err(PluginError::invalid_input))
                .collect()),
            other => Err(unexpected(other)),
        }
    }
}

/// `consensus.vote_verify` through the child.
struct VoteVerifyProxy(Arc<Supervised>);

impl VoteVerify for VoteVerifyProxy {
    fn verify_votes(&self, votes: &[VoteItem<'_>]) -> Result<Vec<bool>, PluginError> {
        let votes = votes
            .iter()
            .map(|v| owned(&v.public_key, &v.signature, &v.message))
            .collect();
        verdicts(self.0.call(&Request::VoteVerify(votes))?)
    }
}

/// `mem.tx_decode` through the child.
struct TxDecodeProxy(Arc<Supervised>);

impl TxDecode for TxDecodeProxy {
    fn decode(
        &self, payloads: &[RSlice<'_, u8>],
    ) -> Result<Vec<Result<Transaction, String>>, PluginError> {
        let payloads = payloads.iter().map(|p| p.as_slice().to_vec()).collect();
        answer_as!(self.0.call(&Request::TxDecode(payloads))?, Transactions)
    }
}

/// `exec.tx_validation` through the child.
struct TxValidationProxy(Arc<Supervised>);

impl TxValidation for TxValidationProxy {
    fn validate(&self, txs: &[Transaction]) -> Result<Vec<TxCheck>, PluginError> {
        answer_as!(self.0.call(&Request::TxValidate(txs.to_vec()))?, TxChecks)
    }
}

/// `consensus.block_validation` through the child.
struct BlockValidationProxy(Arc<Supervised>);

impl BlockValidation for BlockValidationProxy {
    fn check_run(
        &self, head_height: u64, head_hash: &Bytes32, blocks: &[Block],
    ) -> Result<Vec<BlockCheck>, PluginError> {
        let request = Request::CheckRun {
            head_height,
            head_hash: *head_hash,
            blocks: blocks.to_vec(),
        };
        answer_as!(self.0.call(&request)?, BlockChecks)
    }
}

/// `vm.metering` through the child.
struct MeteringProxy(Arc<Supervised>);

impl Metering for MeteringProxy {
    fn instrument(&self, code: &[u8]) -> Result<Metered, PluginError> {
        match self.0.call(&Request::Instrument(code.to_vec()))? {
            Response::Metered(wasm, counter) => Ok(Metered {
                wasm: wasm.into(),
                counter,
            }),
            other => Err(unexpected(other)),
        }
    }
}

/// Loads `manifest`'s plugin isolated: refused unless every slot it provides is
/// [`ISOLATABLE`]; the child loads and self-tests it; the host gets proxies for its slots.
pub fn load(
    manifest: &Manifest, config: &str, generation: u64, launcher: &Launcher,
) -> Result<LoadedPlugin, LoadError> {
    if let Some(p) = manifest
        .provides
        .iter()
        .find(|p| !ISOLATABLE.contains(&p.slot.as_str()))
    {
        return Err(LoadError::NotIsolatable {
            plugin: manifest.name.clone(),
            slot: p.slot.clone(),
        });
    }
    let bytes = std::fs::read(&manifest.library).map_err(|source| LoadError::Io {
        plugin: manifest.name.clone(),
        library: manifest.library.clone(),
        source,
    })?;
    let child = Supervised::start(launcher, manifest, config).map_err(|detail| {
        LoadError::IsolatedLoadFailed {
            plugin: manifest.name.clone(),
            detail,
        }
    })?;
    let provides = |slot: &str| manifest.provides_slot(slot);
    let mut loaded = LoadedPlugin::empty(
        manifest,
        config,
        manifest.library.clone(),
        loader::sha256_hex(&bytes),
        dubchain_plugin_api::Fingerprint::current(),
        generation,
    );
    if provides(SIG_VERIFY.id) {
        let child = child.clone();
        let proxy = SigVerifyFn::new(move |items: &[SigItem<'_>], _next: &Next<'_>| {
            sig_verify_in(&child, items)
        });
        loaded.sig_verify = Some(SigVerifyFfi_TO::from_value(Guarded(proxy), TD_Opaque));
    }
    // Each other slot the manifest names: the proxy that sends its calls to the child.
    macro_rules! proxied {
        ($($slot:ident: $field:ident = $ffi:ident($proxy:ident)),* $(,)?) => {$(
            if provides($slot.id) {
                loaded.$field = Some($ffi::from_value(
                    Guarded($proxy(child.clone())),
                    TD_Opaque,
                ));
            }
        )*};
    }
    proxied! {
        MERKLE: merkle = MerkleFfi_TO(MerkleProxy),
        RECORD_CODEC: record_codec = RecordCodecFfi_TO(RecordCodecProxy),
        VOTE_VERIFY: vote_verify = VoteVerifyFfi_TO(VoteVerifyProxy),
        TX_DECODE: tx_decode = TxDecodeFfi_TO(TxDecodeProxy),
        TX_VALIDATION: tx_validation = TxValidationFfi_TO(TxValidationProxy),
        BLOCK_VALIDATION: block_validation = BlockValidationFfi_TO(BlockValidationProxy),
        METERING: metering = MeteringFfi_TO(MeteringProxy),
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every answer kind crosses the pipe intact, and a hostile length is refused before
    /// anything is allocated for it.
    #[test]
    fn messages_cross_intact_and_a_hostile_length_is_refused() {
        let txs = crate::workload::tx_batch(3, 4, true);
        let answers = [
            Response::Transactions(vec![Ok(txs[0].clone()), Err("not JSON".into())]),
            Response::Records(vec![Ok(Record::Transaction(txs[1].clone()))]),
            Response::Verdicts(vec![true, false]),
            Response::TxChecks(crate::baseline::validate_txs(&txs)),
            Response::BlockChecks(vec![dubchain_plugin_api::slots::BlockCheck::Parent {
                expected: Bytes32([1; 32]),
                got: Bytes32([2; 32]),
            }]),
            Response::Metered(vec![0, 0x61, 0x73, 0x6d], GasCounter::Global),
            Response::Failed("why".into()),
        ];
        for answer in answers {
            let mut wire = Vec::new();
            write_message(&mut wire, &answer).unwrap();
            let back: Response = read_message(&mut wire.as_slice()).unwrap();
            assert_eq!(format!("{back:?}"), format!("{answer:?}"));
        }
        let hostile = u32::MAX.to_be_bytes();
        let e = read_message::<Response>(&mut hostile.as_slice()).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
    }
}
