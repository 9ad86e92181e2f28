//! Hot swap under load: threads call a slot without pause while its implementation is
//! swapped back and forth; no call fails and every answer equals the baseline's.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use dubchain_host::{baseline, workload};
use dubchain_tests::{enable, library, resolve, test_host, PluginDir};

#[test]
fn swap_back_and_forth_under_load() {
    let dir = PluginDir::new();
    dir.add_first_party("crypto_parallel_verification");
    dir.add_first_party("storage_binary_formats");
    let host = Arc::new(test_host());
    let manifests = dir.manifests();
    let on = resolve(
        &manifests,
        &enable(&["crypto_parallel_verification", "storage_binary_formats"]),
    );
    let off = resolve(&manifests, &[]);
    host.apply(&manifests, &on, |_| String::new()).unwrap();

    let set = Arc::new(workload::signature_set(21, 48, true));
    let records = Arc::new(workload::records(21, 2, 8));
    let expected = Arc::new(baseline::sig_verify(&set.items()));
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (host, set, records, expected, stop, calls) = (
                host.clone(),
                set.clone(),
                records.clone(),
                expected.clone(),
                stop.clone(),
                calls.clone(),
            );
            std::thread::spawn(move || {
                let items = set.items();
                while !stop.load(Ordering::Relaxed) {
                    if t % 2 == 0 {
                        assert_eq!(host.slots.sig_verify.verify_batch(&items), *expected);
                    } else {
                        let enc = host.slots.record_codec.encode(&records);
                        let refs: Vec<&[u8]> = enc.iter().map(Vec::as_slice).collect();
                        let dec = host.slots.record_codec.decode(&refs);
                        assert!(dec
                            .iter()
                            .zip(records.iter())
                            .all(|(d, r)| d.as_ref() == Ok(r)));
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut swaps = 0;
    for i in 0..120 {
        let before = calls.load(Ordering::Relaxed);
        // Alternate: plugins off, plugins on from the same library, and every tenth time a
        // new copy of the library (a new version, loaded while the old one is live).
        if i % 10 == 5 {
            dir.put_library(
                "crypto_parallel_verification",
                &library("crypto_parallel_verification"),
            );
            let config = format!("chunk = {}\n", 8 + i);
            host.apply(&manifests, &on, |_| config.clone()).unwrap();
        } else {
            host.apply(&manifests, if i % 2 == 0 { &off } else { &on }, |_| {
                String::new()
            })
            .unwrap();
        }
        swaps += 1;
        // Let calls run on each arrangement before the next swap. A hang guard, not a
        // timing: a caller that panicked, or callers stuck for a minute, end the test.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while calls.load(Ordering::Relaxed) < before + 4 {
            assert!(
                workers.iter().all(|w| !w.is_finished()),
                "a caller stopped after swap {i} (its panic is printed above)"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "no calls completed within 60 s of swap {i}"
            );
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join()
            .expect("no caller panicked: every answer equalled the baseline's");
    }
    assert!(swaps >= 100);
    for s in host.slot_status() {
        assert_eq!(s.counters.errors, 0, "{s:?}");
        assert_eq!(s.counters.fallbacks, 0, "{s:?}");
    }
}

/// Every stored value in `written`, read through the host's `storage.record_codec` slot.
fn read_all(
    host: &dubchain_host::Host, written: &[Vec<u8>],
) -> Vec<dubchain_plugin_api::types::Record> {
    let refs: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
    host.slots
        .record_codec
        .decode(&refs)
        .into_iter()
        .map(|r| r.expect("every record reads"))
        .collect()
}

#[test]
fn records_written_by_a_codec_that_was_swapped_out_are_still_read() {
    let dir = PluginDir::new();
    dir.add_first_party("storage_binary_formats");
    let host = test_host();
    let manifests = dir.manifests();
    let on = resolve(&manifests, &enable(&["storage_binary_formats"]));
    host.apply(&manifests, &on, |_| String::new()).unwrap();
    let records = workload::records(5, 2, 4);
    let written = host.slots.record_codec.encode(&records);
    assert!(written.iter().all(|w| w.starts_with(b"DCB1")));
    // Swap the codec out: the baseline cannot read binary records, the retired codec can.
    host.apply(&manifests, &resolve(&manifests, &[]), |_| String::new())
        .unwrap();
    assert_eq!(host.slots.record_codec.status().active, "baseline");
    let read = read_all(&host, &written);
    assert_eq!(read, records);
    // Garbage is still an error.
    assert!(host.slots.record_codec.decode(&[b"garbage".as_slice()])[0].is_err());
}

/// A codec that writes `PX` + the JSON record, and (once `broken`) fails every encode:
/// its breaker opens while it can still read what it wrote.
struct FailsToEncode {
    broken: Arc<AtomicBool>,
}

impl dubchain_plugin_api::slots::RecordCodec for FailsToEncode {
    fn encode(
        &self, records: &[dubchain_plugin_api::types::Record],
    ) -> Result<Vec<Vec<u8>>, dubchain_plugin_api::PluginError> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(dubchain_plugin_api::PluginError::failed(
                "broken on purpose",
            ));
        }
        Ok(baseline::encode_records(records)
            .into_iter()
            .map(|json| [b"PX".as_slice(), &json].concat())
            .collect())
    }

    fn decode(
        &self, values: &[dubchain_plugin_api::abi_stable::std_types::RSlice<'_, u8>],
    ) -> Result<
        Vec<Result<dubchain_plugin_api::types::Record, dubchain_plugin_api::PluginError>>,
        dubchain_plugin_api::PluginError,
    > {
        Ok(values
            .iter()
            .map(|v| {
                let json = v.as_slice().strip_prefix(b"PX").unwrap_or(v.as_slice());
                serde_json::from_slice(json)
                    .map_err(|e| dubchain_plugin_api::PluginError::invalid_input(e.to_string()))
            })
            .collect())
    }
}

/// The active codec's breaker opening must not strand what it wrote: with the breaker open,
/// encoding falls back to JSON and decoding to the baseline, and what the baseline cannot
/// read is read by the installed codec whatever its breaker says.
#[test]
fn records_a_codec_wrote_are_read_while_its_breaker_is_open() {
    use dubchain_plugin_api::slots::{Guarded, RecordCodecFfi_TO};
    let host = test_host();
    let broken = Arc::new(AtomicBool::new(false));
    dubchain_host::testing::install_one(
        &host.slots.record_codec,
        "px_codec",
        RecordCodecFfi_TO::from_value(
            Guarded(FailsToEncode {
                broken: broken.clone(),
            }),
            dubchain_plugin_api::abi_stable::sabi_trait::TD_Opaque,
        ),
    );
    let records = workload::records(9, 2, 4);
    let mut written = host.slots.record_codec.encode(&records);
    assert!(written.iter().all(|w| w.starts_with(b"PX")));
    broken.store(true, Ordering::Relaxed);
    for _ in 0..5 {
        written.extend(host.slots.record_codec.encode(&records[..1]));
    }
    let status = host.slots.record_codec.status();
    assert!(!status.open.is_empty(), "the breaker opened: {status:?}");
    let read = read_all(&host, &written);
    assert_eq!(&read[..records.len()], &records[..]);
    assert!(read[records.len()..].iter().all(|r| *r == records[0]));
}
