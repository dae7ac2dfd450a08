//! The integer IR: tensors at fixed offsets of one memory image, and ops
//! with exactly specified integer semantics.
//!
//! # Types
//! Tensors are `i8` or `i32`, little-endian, row-major (C order), batch 1.
//! Every tensor lives at a fixed byte offset of the module's linear memory,
//! for the whole run: constants (weights, biases, requantization parameters,
//! lookup tables) in data segments, inputs, activations and outputs in an
//! arena. A reshape is not an op: the reshaped tensor aliases the same bytes.
//!
//! # Arithmetic
//! Products and sums of `i8` values accumulate in `i32` with wrapping
//! arithmetic (the lowering keeps sums small enough that they never wrap:
//! `K * 127 * 127 + |bias| < 2^31`). Requantization takes an `i32`
//! accumulator to `i8` with a per-channel multiplier `m` (`0 <= m < 2^31`)
//! and shift `s` (`1 <= s <= 62`), an output zero point `zp` and clamp bounds
//! `lo..=hi`:
//!
//! ```text
//! requant(acc) = clamp(((acc as i64 * m + 2^(s-1)) >> s) + zp, lo, hi)
//! ```
//!
//! `>>` is the arithmetic shift, so the one rounding rule is *round half
//! towards positive infinity*. `lo = zp` fuses a ReLU.
//!
//! # Ops
//! See each op's docs; every op writes exactly its output tensor and nothing
//! else, so the memory image after a node is a function of the image before.

use serde::{Deserialize, Serialize};

/// Element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    I8,
    I32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> u32 {
        match self {
            DType::I8 => 1,
            DType::I32 => 4,
        }
    }
}

/// Index of a tensor in [`Program::tensors`].
pub type TensorId = usize;

/// What a tensor is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorKind {
    /// Written by the host before step 0.
    Input,
    /// Read by the host after the run.
    Output,
    /// Written once by data segments.
    Constant,
    /// Written by one node, read by later ones.
    Activation,
}

/// A tensor of the memory image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<u32>,
    /// Byte offset in linear memory (8-byte aligned).
    pub offset: u32,
    pub kind: TensorKind,
    /// Real value = scale * (q - zero_point); `f32` bits, host-side only
    /// (never executed in the sandbox). `None` for raw integer tensors.
    pub scale_bits: Option<u32>,
    pub zero_point: i32,
}

impl Tensor {
    pub fn len(&self) -> u32 {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> u32 {
        self.len() * self.dtype.size()
    }

    pub fn end(&self) -> u32 {
        self.offset + self.bytes()
    }

    pub fn scale(&self) -> Option<f32> {
        self.scale_bits.map(f32::from_bits)
    }
}

/// Requantization parameters of an op with `channels` output channels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requant {
    /// `i32 [channels]`: multipliers, each in `0..2^31`.
    pub multiplier: TensorId,
    /// `i32 [channels]`: shifts, each in `1..=62`.
    pub shift: TensorId,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

/// `requant` of the IR spec, for one accumulator.
pub fn requantize(acc: i32, multiplier: i32, shift: i32, zero_point: i32, lo: i32, hi: i32) -> i8 {
    let q = ((acc as i64 * multiplier as i64 + (1i64 << (shift - 1))) >> shift) + zero_point as i64;
    q.clamp(lo as i64, hi as i64) as i8
}

/// 2-D convolution, batch 1, zero padding, input zero point 0:
///
/// ```text
/// out[oc, y, x] = requant_oc(bias[oc] + sum over ic < C/group, ky, kx of
///     in[g*C/group + ic, y*sh - pt + ky*dh, x*sw - pl + kx*dw] * w[oc, ic, ky, kx])
/// ```
/// where `g = oc / (OC/group)` and out-of-range input positions contribute 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv {
    /// `i8 [1, C, H, W]`
    pub input: TensorId,
    /// `i8 [OC, C/group, KH, KW]`
    pub weight: TensorId,
    /// `i32 [OC]`
    pub bias: TensorId,
    /// `i8 [1, OC, OH, OW]`
    pub output: TensorId,
    pub stride: [u32; 2],
    /// top, left, bottom, right
    pub pad: [u32; 4],
    pub dilation: [u32; 2],
    pub group: u32,
    pub requant: Requant,
}

/// Matrix product with constant, transposed weights:
/// `out[i, j] = requant_j(bias[j] + sum_k a[i, k] * w[j, k])`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatMul {
    /// `i8 [M, K]` (any shape whose product is M*K)
    pub a: TensorId,
    /// `i8 [N, K]`
    pub w: TensorId,
    /// `i32 [N]`
    pub bias: TensorId,
    /// `i8 [M, N]`
    pub output: TensorId,
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub requant: Requant,
}

/// Max pooling, batch 1: `out[c, y, x]` = max of `in[c, y*sh - pt + ky,
/// x*sw - pl + kx]` over the kernel positions inside the input (padding is
/// ignored; every window holds at least one input position).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxPool {
    /// `i8 [1, C, H, W]`
    pub input: TensorId,
    /// `i8 [1, C, OH, OW]`
    pub output: TensorId,
    pub kernel: [u32; 2],
    pub stride: [u32; 2],
    /// top, left, bottom, right
    pub pad: [u32; 4],
}

/// Element-wise sum of two equally shaped `i8` tensors, rescaled:
/// `out[i] = clamp(((a[i] * ma + b[i] * mb + 2^(s-1)) >> s) + zp, lo, hi)`
/// in `i64`, with `|ma|, |mb| < 2^31` and `1 <= s <= 62`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Add {
    pub a: TensorId,
    pub b: TensorId,
    pub output: TensorId,
    pub a_multiplier: i32,
    pub b_multiplier: i32,
    pub shift: i32,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

/// Table lookup: `out[i] = table[in[i] as u8]` with an `i8 [256]` table
/// (exact for any function of one `i8`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lut {
    pub input: TensorId,
    pub table: TensorId,
    pub output: TensorId,
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Conv(Conv),
    MatMul(MatMul),
    MaxPool(MaxPool),
    Add(Add),
    Lut(Lut),
}

impl Op {
    /// The tensor the op writes.
    pub fn output(&self) -> TensorId {
        match self {
            Op::Conv(o) => o.output,
            Op::MatMul(o) => o.output,
            Op::MaxPool(o) => o.output,
            Op::Add(o) => o.output,
            Op::Lut(o) => o.output,
        }
    }

    /// Op type name, as in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(_) => "conv",
            Op::MatMul(_) => "matmul",
            Op::MaxPool(_) => "maxpool",
            Op::Add(_) => "add",
            Op::Lut(_) => "lut",
        }
    }
}

/// A node of the program: one op with the name of the ONNX node(s) it
/// comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub op: Op,
}

/// Constant bytes of one tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constant {
    pub tensor: TensorId,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// A whole integer program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub tensors: Vec<Tensor>,
    pub constants: Vec<Constant>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<TensorId>,
    pub outputs: Vec<TensorId>,
}
