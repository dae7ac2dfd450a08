use super::format::arr;
use super::*;
use crate::state::{StateFields, Status};
use proptest::prelude::*;
use std::io::Cursor;

fn header() -> TraceHeader {
    TraceHeader::new(10, [0xc0; 32], [0xa0; 32])
}

fn rec(step: u64) -> TraceRecord {
    let state_root = crate::hash::tagged(b"test.trace\0\0\0\0\0\0", &[&step.to_le_bytes()]);
    let fuel = step * 7 / 2;
    TraceRecord {
        step,
        fuel,
        state_root,
    }
}

fn trace(n: u64) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    (1..=n).for_each(|k| w.push(&rec(k)).unwrap());
    assert_eq!(w.steps(), n);
    w.finish().unwrap()
}

fn open(b: &[u8]) -> Result<TraceReader<Cursor<&[u8]>>, TraceError> {
    TraceReader::open(Cursor::new(b))
}

fn stream(b: &[u8], strict: bool) -> Result<Vec<TraceRecord>, TraceError> {
    StreamingTraceReader::new(b)?.strict(strict).collect()
}

/// The error, as `Debug` text.
fn err<T>(r: Result<T, TraceError>) -> String {
    r.err().map(|e| format!("{e:?}")).unwrap_or_default()
}

#[test]
fn round_trip_in_memory() {
    let bytes = trace(100);
    assert_eq!(bytes.len(), HEADER_LEN + 100 * RECORD_LEN);
    assert_eq!(TraceHeader::decode(&arr(&bytes[..80])).unwrap(), header());
    let mut r = open(&bytes).unwrap();
    assert_eq!((*r.header(), r.len()), (header(), 100));
    assert!(!r.has_partial_tail());
    assert_eq!(r.root_at(0).unwrap(), header().initial_root);
    for k in [1, 2, 50, 99, 100] {
        assert_eq!(r.record(k).unwrap(), rec(k));
        assert_eq!(r.root_at(k).unwrap(), rec(k).state_root);
        let off = record_offset(k).unwrap() as usize;
        assert_eq!(TraceRecord::decode(&arr(&bytes[off..off + 48])), rec(k));
    }
    for k in [0, 101, u64::MAX] {
        let want = format!("NoSuchStep {{ step: {k}, len: 100 }}");
        assert_eq!(err(r.record(k)), want);
    }
    let empty = trace(0);
    assert!(open(&empty).unwrap().is_empty());
    assert_eq!(stream(&empty, true).unwrap(), vec![]);
}

#[test]
fn round_trip_on_disk() {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let name = format!(
        "opml-trace-{}-{}",
        std::process::id(),
        t.unwrap().as_nanos()
    );
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.trace");
    let mut w = TraceWriter::new(std::fs::File::create(&path).unwrap(), &header()).unwrap();
    (1..=3000).for_each(|k| w.push(&rec(k)).unwrap());
    w.finish().unwrap().sync_all().unwrap();
    let f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let mut r = TraceReader::open(f).unwrap();
    assert_eq!(r.len(), 3000);
    assert_eq!(r.record(1234).unwrap(), rec(1234));
    let all: Vec<_> = r.records(1, 3000).unwrap().map(Result::unwrap).collect();
    assert_eq!(all, (1..=3000).map(rec).collect::<Vec<_>>());
    let streamed = stream(&std::fs::read(&path).unwrap(), true).unwrap();
    assert_eq!(streamed, all);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn random_access_equals_streaming_order() {
    let bytes = trace(300);
    let mut r = open(&bytes).unwrap();
    let streamed = stream(&bytes, true).unwrap();
    let ranged: Vec<_> = r.records(1, 300).unwrap().map(Result::unwrap).collect();
    assert_eq!(ranged, streamed);
    for (i, s) in streamed.iter().enumerate() {
        assert_eq!(r.record(i as u64 + 1).unwrap(), *s);
    }
    let slice: Vec<_> = r.records(40, 60).unwrap().map(Result::unwrap).collect();
    assert_eq!(slice, streamed[39..60]);
    assert_eq!(r.records(7, 7).unwrap().count(), 1);
    assert_eq!(r.records(8, 7).unwrap().count(), 0);
    assert_eq!(err(r.records(0, 3)), "NoSuchStep { step: 0, len: 300 }");
    assert_eq!(err(r.records(3, 301)), "NoSuchStep { step: 301, len: 300 }");
}

#[test]
fn partial_tail_is_ignored_and_reported() {
    let bytes = trace(5);
    for cut in HEADER_LEN..=bytes.len() {
        let part = &bytes[..cut];
        let n = complete_records(cut as u64);
        let partial = !(cut - HEADER_LEN).is_multiple_of(RECORD_LEN);
        let mut r = open(part).unwrap();
        assert_eq!((r.len(), r.has_partial_tail()), (n, partial));
        assert_eq!(r.records(1, n).unwrap().count() as u64, n);
        let mut s = StreamingTraceReader::new(part).unwrap();
        assert_eq!(s.by_ref().map(Result::unwrap).count() as u64, n);
        assert_eq!(s.has_partial_tail(), partial);
        let offset = record_offset(n + 1).unwrap();
        let want = match partial {
            true => format!(
                "Truncated {{ offset: {offset}, needed: 48, got: {} }}",
                cut as u64 - offset
            ),
            false => String::new(),
        };
        assert_eq!(err(stream(part, true)), want);
    }
}

#[test]
fn corrupted_header_fields_are_named() {
    let good = trace(3);
    let check = |b: &[u8], want: &str| {
        assert!(err(open(b)).starts_with(want), "{} !~ {want}", err(open(b)));
        assert!(err(stream(b, false)).starts_with(want));
    };
    for i in 0..8 {
        let mut b = good.clone();
        b[i] ^= 0x20;
        check(&b, "BadMagic");
    }
    for (at, v, want) in [
        (8, 0, "UnsupportedVersion(0)"),
        (8, 2, "UnsupportedVersion(2)"),
    ]
    .into_iter()
    .chain([(12, 5, "BadChunkLog2(5)"), (12, 17, "BadChunkLog2(17)")])
    {
        let mut b = good.clone();
        b[at..at + 4].copy_from_slice(&u32::to_le_bytes(v));
        check(&b, want);
    }
    for cut in 0..HEADER_LEN {
        check(
            &good[..cut],
            &format!("Truncated {{ offset: 0, needed: 80, got: {cut} }}"),
        );
    }
}

#[test]
fn corrupted_records_are_detected() {
    let mut b = trace(10);
    let off = record_offset(5).unwrap() as usize;
    b[off] ^= 1;
    let mut r = open(&b).unwrap();
    assert_eq!(err(r.record(5)), "StepOutOfOrder { expected: 5, got: 4 }");
    assert_eq!(
        err(stream(&b, false)),
        "StepOutOfOrder { expected: 5, got: 4 }"
    );
    let mut b = trace(10);
    b[off + 8..off + 16].copy_from_slice(&0u64.to_le_bytes());
    let mut r = open(&b).unwrap();
    assert_eq!(r.record(5).unwrap().fuel, 0);
    let e = r.records(1, 10).unwrap().find_map(Result::err);
    let want = "FuelDecreased { step: 5, previous: 14, got: 0 }";
    assert_eq!(format!("{e:?}"), format!("Some({want})"));
    assert_eq!(err(stream(&b, false)), want);
}

#[test]
fn writer_rejects_gaps_repeats_and_fuel_decrease() {
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    let at = |step, fuel| TraceRecord {
        step,
        fuel,
        state_root: [1; 32],
    };
    assert_eq!(
        err(w.push(&at(0, 0))),
        "StepOutOfOrder { expected: 1, got: 0 }"
    );
    assert_eq!(
        err(w.push(&at(2, 0))),
        "StepOutOfOrder { expected: 1, got: 2 }"
    );
    w.push(&at(1, 10)).unwrap();
    assert_eq!(
        err(w.push(&at(1, 10))),
        "StepOutOfOrder { expected: 2, got: 1 }"
    );
    assert_eq!(
        err(w.push(&at(3, 10))),
        "StepOutOfOrder { expected: 2, got: 3 }"
    );
    let want = "FuelDecreased { step: 2, previous: 10, got: 9 }";
    assert_eq!(err(w.push(&at(2, 9))), want);
    assert_eq!(
        w.push(&at(2, 9)).unwrap_err().to_string(),
        "fuel decreased at step 2: 10 -> 9"
    );
    w.push(&at(2, 10)).unwrap();
    let bytes = w.finish().unwrap();
    assert_eq!(stream(&bytes, true).unwrap(), vec![at(1, 10), at(2, 10)]);
    for (v, c) in [(2, 10), (1, 5), (1, 17)] {
        let bad = TraceHeader {
            version: v,
            chunk_log2: c,
            ..header()
        };
        assert!(TraceWriter::new(Vec::new(), &bad).is_err());
    }
}

#[test]
fn json_uses_hex_hashes() {
    let j = serde_json::to_string(&rec(1)).unwrap();
    assert!(j.contains(&hex::encode(rec(1).state_root)), "{j}");
    assert_eq!(serde_json::from_str::<TraceRecord>(&j).unwrap(), rec(1));
    let j = serde_json::to_string(&header()).unwrap();
    assert_eq!(serde_json::from_str::<TraceHeader>(&j).unwrap(), header());
}

/// A 6-step run whose last record is the final state.
fn run() -> (TraceManifest, Vec<u8>) {
    let (step, fuel) = (6, rec(6).fuel);
    let (status, memory_root) = (Status::Halted, [3; 32]);
    let fin = StateFields {
        status,
        step,
        fuel,
        memory_pages: 1,
        memory_root,
    };
    let mut w = TraceWriter::new(Vec::new(), &header()).unwrap();
    (1..6).for_each(|k| w.push(&rec(k)).unwrap());
    w.push(&TraceRecord {
        state_root: fin.hash(),
        ..rec(6)
    })
    .unwrap();
    let ckpt = |step, state_root| CheckpointEntry {
        step,
        state_root,
        file: format!("{step}.ckpt"),
    };
    let cps = vec![ckpt(0, header().initial_root), ckpt(4, rec(4).state_root)];
    (
        TraceManifest::new(&header(), fin, "run.trace", 4, cps),
        w.finish().unwrap(),
    )
}

#[test]
fn manifest_round_trips_and_validates() {
    let m = run().0;
    let json = m.to_json_pretty();
    assert!(json.contains("\"format\": \"opml-trace\""), "{json}");
    assert_eq!(TraceManifest::from_json(&json).unwrap(), m);
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        f(&mut v);
        err(TraceManifest::from_json(&v.to_string()))
    };
    assert_eq!(
        edit(&|v| v["format"] = "x".into()),
        "BadManifestFormat(\"x\")"
    );
    assert_eq!(edit(&|v| v["version"] = 2.into()), "UnsupportedVersion(2)");
    assert_eq!(edit(&|v| v["chunk_log2"] = 99.into()), "BadChunkLog2(99)");
    assert!(edit(&|v| v["steps"] = 7.into()).starts_with("InvalidManifest"));
    assert!(edit(&|v| v["final_state"]["fuel"] = 1.into()).starts_with("InvalidManifest"));
    assert!(edit(&|v| v["checkpoints"][1]["step"] = 0.into()).starts_with("InvalidManifest"));
    assert!(edit(&|v| v["checkpoints"][1]["step"] = 7.into()).starts_with("InvalidManifest"));
    let root = hex::encode([1; 32]);
    assert!(
        edit(&|v| v["checkpoints"][0]["state_root"] = root.clone().into())
            .starts_with("InvalidManifest")
    );
    assert!(edit(&|v| v["code_hash"] = "zz".into()).starts_with("Json"));
    assert!(err(TraceManifest::from_json("{")).starts_with("Json"));
}

#[test]
fn manifest_checks_its_trace() {
    let (mut m, bytes) = run();
    m.check_trace(&mut open(&bytes).unwrap()).unwrap();
    assert!(m
        .check_trace(&mut open(&bytes[..bytes.len() - 1]).unwrap())
        .is_err());
    assert!(m.check_trace(&mut open(&trace(6)).unwrap()).is_err());
    m.code_hash = [0; 32];
    assert!(m.check_trace(&mut open(&bytes).unwrap()).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..600), raw: bool) {
        let bytes = if raw { tail } else { [&header().encode()[..], &tail].concat() };
        if let Ok(mut r) = open(&bytes) {
            let n = r.len();
            let _ = r.records(1, n).map(|it| it.count());
            for k in 0..=n + 1 { let _ = r.root_at(k); }
        }
        for strict in [false, true] {
            let _ = stream(&bytes, strict);
        }
    }
}
