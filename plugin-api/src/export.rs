/// Exports a plugin's root module.
///
/// The crate using it must depend on `abi_stable` directly too: the root-module export this
/// expands to refers to `::abi_stable`.
///
/// ```ignore
/// dubchain_plugin_api::export_plugin! {
///     name: "crypto_parallel_verification",
///     init: |config: &str| Ok(()),                  // optional
///     sig_verify: |config: &str| Ok(MyVerifier::new()),
/// }
/// ```
///
/// The plugin's heap is counted ([`alloc`](crate::alloc)) and the host's allocation counts
/// include it; `allocator: own` (last) leaves that out, for a plugin that installs a
/// `#[global_allocator]` of its own.
///
/// `name` must equal the manifest's `name`. Each slot entry is a constructor that receives
/// the plugin's configuration (TOML text) and returns the implementation of that slot's Rust
/// trait. Every generated entry point catches panics, so a panicking constructor or call is
/// reported to the host as an error instead of unwinding across the boundary.
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:literal
        $(, init: $init:expr)?
        $(, sig_verify: $sig:expr)?
        $(, record_codec: $codec:expr)?
        $(, vote_verify: $votes:expr)?
        $(, merkle: $merkle:expr)?
        $(, block_execution: $exec:expr)?
        $(, block_validation: $valid:expr)?
        $(, tx_validation: $txv:expr)?
        $(, code_loader: $loader:expr)?
        $(, metering: $metering:expr)?
        $(, module_cache: $modules:expr)?
        $(, contract_state: $cstate:expr)?
        $(, block_reclaim: $reclaim:expr)?
        $(, buffer_pool: $pool:expr)?
        $(, frame_send: $send:expr)?
        $(, tx_pool: $txpool:expr)?
        $(, vote_tally: $cons:expr)?
        $(, tx_decode: $txdec:expr)?
        $(, account_read: $accread:expr)?
        $(, durability: $durable:expr)?
        $(, broadcast: $bcast:expr)?
        $(, send_queue: $squeue:expr)?
        $(, transport: $transport:expr)?
        $(, block_commit: $bcommit:expr)?
        $(, state_root: $sroot:expr)?
        $(, allocator: $allocator:ident)?
        $(,)?
    ) => {
        $crate::__plugin_allocator!($($allocator)?);

        #[$crate::abi_stable::export_root_module]
        pub fn __dubchain_plugin_root_module() -> $crate::PluginModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;

            extern "C" fn fingerprint() -> $crate::Fingerprint {
                $crate::Fingerprint::current()
            }
            extern "C" fn name() -> $crate::abi_stable::std_types::RStr<'static> {
                $crate::abi_stable::std_types::RStr::from_str($name)
            }
            extern "C" fn init(
                config: $crate::abi_stable::std_types::RStr<'_>,
            ) -> $crate::abi_stable::std_types::RResult<(), $crate::PluginError> {
                $crate::slots::guard(|| {
                    let _config: &str = config.as_str();
                    $( let f: fn(&str) -> Result<(), $crate::PluginError> = $init; f(_config)?; )?
                    Ok(())
                })
            }
            $crate::PluginMod {
                fingerprint,
                name,
                init,
                sig_verify: $crate::__slot_factory!(sig_verify $(, $sig)?),
                record_codec: $crate::__slot_factory!(record_codec $(, $codec)?),
                vote_verify: $crate::__slot_factory!(vote_verify $(, $votes)?),
                merkle: $crate::__slot_factory!(merkle $(, $merkle)?),
                block_execution: $crate::__slot_factory!(block_execution $(, $exec)?),
                block_validation: $crate::__slot_factory!(block_validation $(, $valid)?),
                tx_validation: $crate::__slot_factory!(tx_validation $(, $txv)?),
                code_loader: $crate::__slot_factory!(code_loader $(, $loader)?),
                metering: $crate::__slot_factory!(metering $(, $metering)?),
                module_cache: $crate::__slot_factory!(module_cache $(, $modules)?),
                contract_state: $crate::__slot_factory!(contract_state $(, $cstate)?),
                block_reclaim: $crate::__slot_factory!(block_reclaim $(, $reclaim)?),
                buffer_pool: $crate::__slot_factory!(buffer_pool $(, $pool)?),
                frame_send: $crate::__slot_factory!(frame_send $(, $send)?),
                tx_pool: $crate::__slot_factory!(tx_pool $(, $txpool)?),
                vote_tally: $crate::__slot_factory!(vote_tally $(, $cons)?),
                tx_decode: $crate::__slot_factory!(tx_decode $(, $txdec)?),
                account_read: $crate::__slot_factory!(account_read $(, $accread)?),
                durability: $crate::__slot_factory!(durability $(, $durable)?),
                broadcast: $crate::__slot_factory!(broadcast $(, $bcast)?),
                send_queue: $crate::__slot_factory!(send_queue $(, $squeue)?),
                transport: $crate::__slot_factory!(transport $(, $transport)?),
                block_commit: $crate::__slot_factory!(block_commit $(, $bcommit)?),
                state_root: $crate::__slot_factory!(state_root $(, $sroot)?),
                heap: $crate::__plugin_allocator!(@entry $($allocator)?),
                attach_services: Some($crate::services::attach),
            }
            .leak_into_prefix()
        }
    };
}

/// The plugin's global allocator: [`alloc::PLUGIN_ALLOCATOR`](crate::alloc::PLUGIN_ALLOCATOR) (and the root
/// module's `heap` entry points that count it), or, with `allocator: own`, none (the plugin
/// installs its own, which the host does not count).
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_allocator {
    () => {
        #[global_allocator]
        static __DUBCHAIN_PLUGIN_ALLOCATOR: $crate::alloc::Counted =
            $crate::alloc::PLUGIN_ALLOCATOR;
    };
    (own) => {};
    (@entry) => {
        Some(&$crate::alloc::HEAP)
    };
    (@entry own) => {
        None
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __slot_factory {
    ($slot:ident) => {
        None
    };
    (sig_verify, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, SigVerifyBox, SigVerifyFfi_TO)
    };
    (vote_verify, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, VoteVerifyBox, VoteVerifyFfi_TO)
    };
    (block_execution, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, BlockExecutionBox, BlockExecutionFfi_TO)
    };
    (block_validation, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, BlockValidationBox, BlockValidationFfi_TO)
    };
    (tx_validation, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, TxValidationBox, TxValidationFfi_TO)
    };
    (code_loader, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, CodeLoaderBox, CodeLoaderFfi_TO)
    };
    (metering, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, MeteringBox, MeteringFfi_TO)
    };
    (module_cache, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, ModuleCacheBox, ModuleCacheFfi_TO)
    };
    (contract_state, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, ContractStateBox, ContractStateFfi_TO)
    };
    (block_reclaim, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, BlockReclaimBox, BlockReclaimFfi_TO)
    };
    (buffer_pool, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, BufferPoolBox, BufferPoolFfi_TO)
    };
    (frame_send, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, FrameSendBox, FrameSendFfi_TO)
    };
    (tx_pool, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, TxPoolBox, TxPoolFfi_TO)
    };
    (vote_tally, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, VoteTalliesBox, VoteTalliesFfi_TO)
    };
    (tx_decode, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, TxDecodeBox, TxDecodeFfi_TO)
    };
    (account_read, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, AccountReadBox, AccountReadFfi_TO)
    };
    (durability, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, DurabilityBox, DurabilityFfi_TO)
    };
    (broadcast, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, BroadcastBox, BroadcastFfi_TO)
    };
    (send_queue, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, SendQueuesBox, SendQueuesFfi_TO)
    };
    (transport, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, TransportBox, TransportFfi_TO)
    };
    (block_commit, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, BlockCommitBox, BlockCommitFfi_TO)
    };
    (state_root, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, StateRootBox, StateRootFfi_TO)
    };
    (merkle, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, MerkleBox, MerkleFfi_TO)
    };
    (@make $ctor:expr, $boxed:ident, $to:ident) => {{
        extern "C" fn factory(
            config: $crate::abi_stable::std_types::RStr<'_>,
        ) -> $crate::abi_stable::std_types::RResult<$crate::slots::$boxed, $crate::PluginError> {
            $crate::slots::guard(|| {
                let imp = ($ctor)(config.as_str())?;
                Ok($crate::slots::$to::from_value(
                    $crate::slots::Guarded(imp),
                    $crate::abi_stable::sabi_trait::TD_Opaque,
                ))
            })
        }
        Some(factory as $crate::Factory<$crate::slots::$boxed>)
    }};
    (record_codec, $ctor:expr) => {
        $crate::__slot_factory!(@make $ctor, RecordCodecBox, RecordCodecFfi_TO)
    };
}
