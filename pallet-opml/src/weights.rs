//! Weights of `pallet-opml`.
//!
//! There is no node here to run the benchmark CLI, so the figures come from
//! `measure.rs`, which sets each call up exactly as its benchmark in
//! `benchmarking.rs` does (the digits fixture; the one-step proof of the
//! run's largest proof; `MaxOpenDisputes` games when a claim is settled) and
//! times the dispatch alone:
//!
//! ```text
//! cargo test -p pallet-opml --features runtime-benchmarks -- --ignored --nocapture measure_weights
//! ```
//!
//! Method:
//! - `ref_time`: the larger of two runs' medians of 15, in a debug build of
//!   the pallet (wasmi and sha2 at opt-level 3, as the workspace's dev
//!   profile sets) on a shared 2-core machine, in picoseconds. Debug code
//!   overestimates a release runtime; no extra margin is added.
//! - Size-dependent calls were measured at one size (digits: code 12 158 B,
//!   proof 3 842 B, input 64 B, output 10 B), the one-step proof also at the
//!   largest proof `MaxProofLen` allows (`submit_one_step_proof_largest`).
//!   Per-byte slopes attribute the *whole* of a measurement to one size
//!   dimension: conservative, not a fit.
//! - `proof_size`: the PoV bound by `MaxEncodedLen` ("max encoded len" mode
//!   of the benchmark CLI): the sum of `max_size` of every storage item the
//!   call reads (printed by `measure_weights` for the mock's `Config`, which
//!   uses the values the README suggests: MaxCodeLen 64 KiB, MaxNodes 256,
//!   MaxOpenDisputes 4), plus 1 200 B per account whose balance or holds it
//!   touches. A chain with other bounds re-runs `measure_weights`.
//! - DB reads and writes are counted from the code and charged with
//!   `RocksDbWeight`.
//!
//! Measured (ns): register_model 1 935 527, request_task 1 250 891,
//! submit_result 1 460 422, challenge 1 454 041, post_roots 314 717,
//! pick_interval 212 636, submit_one_step_proof 20 926 056 (other runs:
//! 11 989 743 to 15 860 668) and at the largest proof 7 375 916, timeout
//! 5 265 212, cancel_task 734 158, finalize 1 699 356.

use frame_support::weights::{constants::RocksDbWeight, Weight};

/// Weight functions needed by the pallet.
pub trait WeightInfo {
    fn register_model(c: u32) -> Weight;
    fn request_task(i: u32) -> Weight;
    fn submit_result(o: u32) -> Weight;
    fn challenge() -> Weight;
    fn post_roots(r: u32) -> Weight;
    fn pick_interval() -> Weight;
    fn submit_one_step_proof(c: u32, p: u32) -> Weight;
    fn timeout() -> Weight;
    fn settle_due(n: u32) -> Weight;
    fn cancel_task() -> Weight;
    fn finalize() -> Weight;
}

/// Bytes of proof per account touched (System account + Balances holds).
const ACCOUNT: u64 = 1_200;

/// `max_size` of a `Commitments` item: 16 B of `Blake2_128Concat` hash and
/// 4 B of key, plus the core's `ModelCommitment::max_encoded_len()` (57 603 B,
/// checked by a test).
pub const COMMITMENT: u64 = 20 + 57_603;

/// `max_size` of a `DueGames` item (the mock: 16 B key, 4 entries of a task
/// and an 8-byte account), read and written by every call that opens a
/// game or moves it on (checked by a test).
pub const DUE: u64 = 16 + 1 + 4 * 16;

fn db(reads: u64, writes: u64) -> Weight {
    RocksDbWeight::get().reads_writes(reads, writes)
}

/// Weights for a RocksDB-backed chain with the README's bounds.
pub struct SubstrateWeight;

impl WeightInfo for SubstrateWeight {
    /// 1.94 ms at 12 158 B of code (hash, admission, input-proof check).
    fn register_model(c: u32) -> Weight {
        Weight::from_parts(1_940_000_000, 4 + ACCOUNT)
            .saturating_add(Weight::from_parts(160_000, 0).saturating_mul(c.into()))
            .saturating_add(db(3, 7))
    }
    /// 1.25 ms at 64 B of input, plus an allowance (not measured) per byte.
    fn request_task(i: u32) -> Weight {
        Weight::from_parts(1_260_000_000, 108 + 8 + ACCOUNT)
            .saturating_add(Weight::from_parts(1_000, 1).saturating_mul(i.into()))
            .saturating_add(db(4, 4))
    }
    /// 1.46 ms (initial root and output proof); reads the commitment, whose
    /// `MaxEncodedLen` (COMMITMENT, 57 623 B) is set by the game core's
    /// bounds. Plus an allowance (not measured) per output byte.
    fn submit_result(o: u32) -> Weight {
        Weight::from_parts(1_470_000_000, 4_151 + COMMITMENT + ACCOUNT)
            .saturating_add(Weight::from_parts(10_000, 1).saturating_mul(o.into()))
            .saturating_add(db(4, 4))
    }
    /// 1.45 ms.
    fn challenge() -> Weight {
        Weight::from_parts(1_460_000_000, 4_151 + 4_326 + 763 + 2_070 + DUE + ACCOUNT)
            .saturating_add(db(7, 5))
    }
    /// 0.31 ms measured with 3 roots, plus an allowance (not measured) of
    /// 0.1 ms and 32 B per root.
    fn post_roots(r: u32) -> Weight {
        Weight::from_parts(320_000_000, 4_151 + 4_326 + 763 + 2_070 + DUE)
            .saturating_add(Weight::from_parts(100_000_000, 32).saturating_mul(r.into()))
            .saturating_add(db(5, 3))
    }
    /// 0.21 ms.
    fn pick_interval() -> Weight {
        Weight::from_parts(220_000_000, 763 + DUE).saturating_add(db(2, 3))
    }
    /// 20.9 ms at 12 158 B of code and a 3 842 B proof (digits): admission,
    /// instrumentation and compilation of the code, the multiproof, one step
    /// in wasmi; then settling with `MaxOpenDisputes` games. 7.4 ms at the
    /// largest proof the mock's `MaxProofLen` allows (64 871 B, synthetic
    /// module of 229 B touching 125 chunks). Base = the larger measurement;
    /// per code byte = digits time / its code; per proof byte = largest-proof
    /// time / its proof (each measurement attributed whole to one dimension).
    ///
    /// The digits step ran far below its fuel cap; the cap (`MaxStepFuel`,
    /// 4 000 000 in the README) is charged on top at an allowance of 2 ns per
    /// unit of wasmi fuel (not measured here): 8 ms.
    fn submit_one_step_proof(c: u32, p: u32) -> Weight {
        Weight::from_parts(
            20_930_000_000 + 8_000_000_000,
            4_151 + 4_326 + 4 * 763 + 65_560 + 8 + 6 * ACCOUNT,
        )
        .saturating_add(Weight::from_parts(1_722_000, 1).saturating_mul(c.into()))
        .saturating_add(Weight::from_parts(115_000, 1).saturating_mul(p.into()))
        .saturating_add(db(12, 14))
    }
    /// 5.27 ms with `MaxOpenDisputes` games to close.
    fn timeout() -> Weight {
        Weight::from_parts(5_270_000_000, 4_326 + 4_151 + 4 * 763 + 8 + 6 * ACCOUNT)
            .saturating_add(db(12, 14))
    }
    /// `on_initialize` settling `n` due games: the queue's read and removal,
    /// and a `timeout` for each (not measured separately: an entry whose
    /// game moved on costs only its game's read, charged as a timeout).
    fn settle_due(n: u32) -> Weight {
        Weight::from_parts(0, DUE)
            .saturating_add(db(1, 1))
            .saturating_add(Self::timeout().saturating_mul(n.into()))
    }
    /// 0.73 ms.
    fn cancel_task() -> Weight {
        Weight::from_parts(740_000_000, 4_151 + ACCOUNT).saturating_add(db(3, 3))
    }
    /// 1.70 ms (measured when it still rewrote the task instead of
    /// removing it and the claim).
    fn finalize() -> Weight {
        Weight::from_parts(1_700_000_000, 4_151 + 4_326 + 2 * ACCOUNT).saturating_add(db(6, 6))
    }
}

impl WeightInfo for () {
    fn register_model(c: u32) -> Weight {
        SubstrateWeight::register_model(c)
    }
    fn request_task(i: u32) -> Weight {
        SubstrateWeight::request_task(i)
    }
    fn submit_result(o: u32) -> Weight {
        SubstrateWeight::submit_result(o)
    }
    fn challenge() -> Weight {
        SubstrateWeight::challenge()
    }
    fn post_roots(r: u32) -> Weight {
        SubstrateWeight::post_roots(r)
    }
    fn pick_interval() -> Weight {
        SubstrateWeight::pick_interval()
    }
    fn submit_one_step_proof(c: u32, p: u32) -> Weight {
        SubstrateWeight::submit_one_step_proof(c, p)
    }
    fn timeout() -> Weight {
        SubstrateWeight::timeout()
    }
    fn settle_due(n: u32) -> Weight {
        SubstrateWeight::settle_due(n)
    }
    fn cancel_task() -> Weight {
        SubstrateWeight::cancel_task()
    }
    fn finalize() -> Weight {
        SubstrateWeight::finalize()
    }
}
