//! The memory layout every generated module shares.
//!
//! ```text
//! 0        node counter (u32): index of the node the next step works on
//! 4        unit counter (u32): index of that node's next work unit
//! 8..64    reserved, zero
//! 64..     tensors (constants, inputs, activations, outputs), 8-aligned
//! sched    schedule: per node 16 bytes [kernel id, units, descriptor offset, 0]
//! desc     descriptors: per node the u32 words its kernel reads
//! ```
//!
//! The schedule and descriptors follow the last tensor and are data
//! segments, like the constants: weights and schedule are data, so the code
//! does not grow with the model.

/// Byte offset of the node counter.
pub const NODE_COUNTER: u32 = 0;
/// Byte offset of the unit counter.
pub const UNIT_COUNTER: u32 = 4;
/// First byte of the tensor area.
pub const TENSOR_BASE: u32 = 64;
/// Bytes of one schedule entry.
pub const SCHED_ENTRY: u32 = 16;
