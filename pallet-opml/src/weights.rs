//! Weights of `pallet-opml`.
//!
//! PROVISIONAL: replaced by figures derived from the benchmarks (see the end
//! of this file for the method).

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
    fn finalize() -> Weight;
}

/// Weights for a RocksDB-backed chain.
pub struct SubstrateWeight;

impl WeightInfo for SubstrateWeight {
    fn register_model(c: u32) -> Weight {
        Weight::from_parts(50_000_000, 4_000)
            .saturating_add(Weight::from_parts(20_000, 1).saturating_mul(c.into()))
            .saturating_add(RocksDbWeight::get().reads_writes(2, 4))
    }
    fn request_task(i: u32) -> Weight {
        Weight::from_parts(50_000_000, 4_000)
            .saturating_add(Weight::from_parts(10_000, 1).saturating_mul(i.into()))
            .saturating_add(RocksDbWeight::get().reads_writes(3, 3))
    }
    fn submit_result(o: u32) -> Weight {
        Weight::from_parts(100_000_000, 8_000)
            .saturating_add(Weight::from_parts(10_000, 1).saturating_mul(o.into()))
            .saturating_add(RocksDbWeight::get().reads_writes(4, 3))
    }
    fn challenge() -> Weight {
        Weight::from_parts(50_000_000, 8_000)
            .saturating_add(RocksDbWeight::get().reads_writes(5, 3))
    }
    fn post_roots(r: u32) -> Weight {
        Weight::from_parts(30_000_000, 8_000)
            .saturating_add(Weight::from_parts(100_000, 32).saturating_mul(r.into()))
            .saturating_add(RocksDbWeight::get().reads_writes(2, 1))
    }
    fn pick_interval() -> Weight {
        Weight::from_parts(30_000_000, 8_000)
            .saturating_add(RocksDbWeight::get().reads_writes(1, 1))
    }
    fn submit_one_step_proof(c: u32, p: u32) -> Weight {
        Weight::from_parts(1_000_000_000, 8_000)
            .saturating_add(Weight::from_parts(50_000, 1).saturating_mul(c.into()))
            .saturating_add(Weight::from_parts(5_000, 0).saturating_mul(p.into()))
            .saturating_add(RocksDbWeight::get().reads_writes(5, 6))
    }
    fn timeout() -> Weight {
        Weight::from_parts(100_000_000, 8_000)
            .saturating_add(RocksDbWeight::get().reads_writes(5, 6))
    }
    fn finalize() -> Weight {
        Weight::from_parts(80_000_000, 8_000)
            .saturating_add(RocksDbWeight::get().reads_writes(4, 4))
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
    fn finalize() -> Weight {
        SubstrateWeight::finalize()
    }
}
