//! The op-family registry: from an IR op to its kernel, units, descriptor
//! and native implementation.

use crate::error::LowerError;
use crate::ir::{Op, Program};
use crate::ops::{
    act_matmul, avg_pool, binary, channel_mul, col_add, conv, elementwise, gather, interp,
    layer_norm, masked_softmax, matmul, pool, product_sum, rearrange, softmax,
};
use std::sync::LazyLock;

/// How much work one step should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Budget {
    /// Target fuel of one unit (one step).
    pub unit_fuel: u64,
    /// Target bytes one unit touches (bounds the one-step proof).
    pub unit_bytes: u64,
}

impl Budget {
    /// How many of `rows` rows one unit takes, for kernels that work row by
    /// row: as many as fit both the fuel (`fuel_per_row` each) and the bytes
    /// (`fixed_bytes` once, plus `bytes_per_row` each), at least one.
    pub fn rows_per_unit(
        &self,
        rows: u64,
        fuel_per_row: u64,
        fixed_bytes: u64,
        bytes_per_row: u64,
    ) -> u64 {
        let by_fuel = self.unit_fuel / fuel_per_row.max(1);
        let by_bytes = self.unit_bytes.saturating_sub(fixed_bytes) / bytes_per_row.max(1);
        by_fuel.min(by_bytes).clamp(1, rows.max(1))
    }
}

/// A Wasm kernel: the name of its function and its WAT text.
#[derive(Debug)]
pub struct Kernel {
    pub name: &'static str,
    pub wat: &'static str,
}

/// An op split into units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub kernel: &'static str,
    pub units: u32,
    pub descriptor: Vec<u32>,
}

/// Every kernel, in kernel-id order (conv's text is generated on first use).
pub static KERNELS: LazyLock<[&Kernel; 25]> = LazyLock::new(|| {
    [
        &matmul::KERNEL,
        &conv::KERNEL,
        &pool::KERNEL,
        &elementwise::ADD_KERNEL,
        &elementwise::LUT_KERNEL,
        &channel_mul::KERNEL,
        &softmax::KERNEL,
        &gather::KERNEL,
        &layer_norm::KERNEL,
        &act_matmul::KERNEL,
        &masked_softmax::KERNEL,
        &matmul::KERNEL_A16,
        &matmul::KERNEL_O16,
        &matmul::KERNEL_A16O16,
        &interp::KERNEL,
        &masked_softmax::KERNEL_16,
        &act_matmul::KERNEL_16,
        &col_add::KERNEL,
        &product_sum::KERNEL,
        &layer_norm::KERNEL_16,
        &col_add::KERNEL_16,
        &masked_softmax::KERNEL_16I,
        &rearrange::KERNEL,
        &binary::KERNEL,
        &avg_pool::KERNEL,
    ]
});

/// Kernel id of a kernel name.
pub fn kernel_id(name: &str) -> u32 {
    KERNELS
        .iter()
        .position(|k| k.name == name)
        .expect("registered kernel") as u32
}

/// Splits `op` into units and encodes its descriptor.
pub fn schedule(op: &Op, p: &Program, budget: &Budget) -> Result<Scheduled, LowerError> {
    match op {
        Op::MatMul(o) => Ok(matmul::schedule(o, p, budget)),
        Op::Conv(o) => Ok(conv::schedule(o, p, budget)),
        Op::MaxPool(o) => Ok(pool::schedule(o, p, budget)),
        Op::Add(o) => Ok(elementwise::schedule_add(o, p, budget)),
        Op::Lut(o) => Ok(elementwise::schedule_lut(o, p, budget)),
        Op::ChannelMul(o) => Ok(channel_mul::schedule(o, p, budget)),
        Op::Softmax(o) => Ok(softmax::schedule(o, p, budget)),
        Op::Gather(o) => Ok(gather::schedule(o, p, budget)),
        Op::LayerNorm(o) => Ok(layer_norm::schedule(o, p, budget)),
        Op::ActMatMul(o) => Ok(act_matmul::schedule(o, p, budget)),
        Op::MaskedSoftmax(o) => Ok(masked_softmax::schedule(o, p, budget)),
        Op::Interp(o) => Ok(interp::schedule(o, p, budget)),
        Op::ColAdd(o) => Ok(col_add::schedule(o, p, budget)),
        Op::ProductSum(o) => Ok(product_sum::schedule(o, p, budget)),
        Op::Rearrange(o) => Ok(rearrange::schedule(o, p, budget)),
        Op::Binary(o) => Ok(binary::schedule(o, p, budget)),
        Op::AvgPool(o) => Ok(avg_pool::schedule(o, p, budget)),
    }
}

/// Runs `op` natively on the memory image.
pub fn run_native(op: &Op, p: &Program, mem: &mut [u8]) -> Result<(), LowerError> {
    match op {
        Op::MatMul(o) => matmul::run_native(o, p, mem),
        Op::Conv(o) => conv::run_native(o, p, mem),
        Op::MaxPool(o) => pool::run_native(o, p, mem),
        Op::Add(o) => elementwise::run_add(o, p, mem),
        Op::Lut(o) => elementwise::run_lut(o, p, mem),
        Op::ChannelMul(o) => channel_mul::run_native(o, p, mem),
        Op::Softmax(o) => softmax::run_native(o, p, mem),
        Op::Gather(o) => gather::run_native(o, p, mem),
        Op::LayerNorm(o) => layer_norm::run_native(o, p, mem),
        Op::ActMatMul(o) => act_matmul::run_native(o, p, mem),
        Op::MaskedSoftmax(o) => masked_softmax::run_native(o, p, mem),
        Op::Interp(o) => interp::run_native(o, p, mem),
        Op::ColAdd(o) => col_add::run_native(o, p, mem),
        Op::ProductSum(o) => product_sum::run_native(o, p, mem),
        Op::Rearrange(o) => rearrange::run_native(o, p, mem),
        Op::Binary(o) => binary::run_native(o, p, mem),
        Op::AvgPool(o) => avg_pool::run_native(o, p, mem),
    }
    Ok(())
}
