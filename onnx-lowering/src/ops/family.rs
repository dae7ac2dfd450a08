//! The op-family registry: from an IR op to its kernel, units, descriptor
//! and native implementation.

use crate::error::LowerError;
use crate::ir::{Op, Program};
use crate::ops::matmul;

/// How much work one step should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Target fuel of one unit (one step).
    pub unit_fuel: u64,
    /// Target bytes one unit touches (bounds the one-step proof).
    pub unit_bytes: u64,
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

/// Every kernel, in kernel-id order.
pub const KERNELS: &[&Kernel] = &[&matmul::KERNEL];

/// Kernel id of a kernel name.
pub fn kernel_id(name: &str) -> u32 {
    KERNELS.iter().position(|k| k.name == name).expect("registered kernel") as u32
}

/// Splits `op` into units and encodes its descriptor.
pub fn schedule(op: &Op, p: &Program, budget: &Budget) -> Result<Scheduled, LowerError> {
    match op {
        Op::MatMul(m) => Ok(matmul::schedule(m, p, budget)),
        other => Err(not_yet(other)),
    }
}

fn not_yet(op: &Op) -> LowerError {
    LowerError::InvalidProgram(format!("no kernel for {} yet", op.kind()))
}

/// Runs `op` natively on the memory image.
pub fn run_native(op: &Op, p: &Program, mem: &mut [u8]) -> Result<(), LowerError> {
    match op {
        Op::MatMul(m) => matmul::run_native(m, p, mem),
        other => return Err(not_yet(other)),
    }
    Ok(())
}
