//! The integer IR: tensors at fixed offsets of one memory image, and ops
//! with exactly specified integer semantics.
//!
//! # Types
//! Tensors are `i8`, `i16` or `i32`, little-endian, row-major (C order),
//! batch 1.
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    I8,
    I32,
    I16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> u32 {
        match self {
            DType::I8 => 1,
            DType::I16 => 2,
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
    requantize_wide(acc, multiplier, shift, zero_point, lo, hi) as i8
}

/// `requant` of the IR spec, for one accumulator, as an `i32` (for `i16`
/// outputs, whose clamp bounds lie in `i16`).
pub fn requantize_wide(
    acc: i32,
    multiplier: i32,
    shift: i32,
    zero_point: i32,
    lo: i32,
    hi: i32,
) -> i32 {
    let q = ((acc as i64 * multiplier as i64 + (1i64 << (shift - 1))) >> shift) + zero_point as i64;
    q.clamp(lo as i64, hi as i64) as i32
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
/// `out[i, j] = requant_j(bias[j] + sum_k a[i, k] * w[j, k])`, the sum taken
/// in order `k = 0, 1, ..` (wrapping `i32`, see above).
///
/// `a` and `out` are addressed through element strides: `a[i, k]` is
/// element `i * a_row + k * a_col` of tensor `a`, `out[i, j]` is element
/// `i * o_row + j * o_col` of tensor `output`. Row-major `a [M, K]` and
/// `out [M, N]` are `a_row = K, a_col = 1, o_row = N, o_col = 1`; a 1x1
/// convolution `out[oc, p] = sum_ic W[oc, ic] x[ic, p]` is the product with
/// `i = p`, `a_row = 1, a_col = M` (`x` is `[K, M]`) and `o_row = 1,
/// o_col = M` (`out` is `[N, M]`). The output layout must be one of those
/// two (so the op writes every element of `output` exactly once); `a` may
/// use any strides that stay inside it.
///
/// `a` and `output` are each `i8` or `i16` (strides count elements). An
/// `i16` output has clamp bounds in `i16`. With an `i16` input the sum is
/// still wrapping `i32`; the lowering bounds the input's values so that
/// `sum_k |a[i, k]| |w[j, k]| + |bias[j]| < 2^31`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatMul {
    /// `i8` or `i16`, `M*K` elements (any shape)
    pub a: TensorId,
    /// `i8 [N, K]`
    pub w: TensorId,
    /// `i32 [N]`
    pub bias: TensorId,
    /// `i8` or `i16`, `M*N` elements (any shape)
    pub output: TensorId,
    pub m: u32,
    pub k: u32,
    pub n: u32,
    /// Element strides of `a` along `i` and `k`.
    pub a_row: u32,
    pub a_col: u32,
    /// Element strides of `output` along `i` and `j`.
    pub o_row: u32,
    pub o_col: u32,
    pub requant: Requant,
}

impl MatMul {
    /// The row-major strides `(a_row, a_col, o_row, o_col)` of `a [m, k]`
    /// and `out [m, n]`.
    pub fn row_major(k: u32, n: u32) -> (u32, u32, u32, u32) {
        (k, 1, n, 1)
    }
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

/// Per-channel product of two activations, batch 1: `a` holds `C` rows of
/// `P` elements (`[1, C, H, W]` with `P = H * W`), `scale` one value per
/// row (`[1, C, 1, 1]`), and
///
/// ```text
/// out[c, p] = clamp(((a[c, p] * scale[c] * m + 2^(sh-1)) >> sh) + zp, lo, hi)
/// ```
///
/// in `i64` (`|a * scale| <= 2^14`, `0 <= m < 2^31`, `1 <= sh <= 62`, so
/// nothing overflows): one product, one rounding (half towards +infinity).
/// This is a squeeze-and-excitation block's `x * gate(x)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMul {
    /// `i8`, `C*P` elements
    pub a: TensorId,
    /// `i8`, `C` elements
    pub scale: TensorId,
    /// `i8`, `C*P` elements
    pub output: TensorId,
    pub channels: u32,
    pub inner: u32,
    pub multiplier: i32,
    pub shift: i32,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

/// Softmax over the last axis, batch 1: `input` holds `rows` rows of `len`
/// values; `table` is `i32 [256]` with `table[d]` in `0..=2^24` and
/// `table[0] >= 1` (the import uses `table[d] = round(2^20 exp(-d s_in))`).
/// Per row `r`, in `i64`:
///
/// ```text
/// mx     = max_l in[r, l]
/// e[l]   = table[mx - in[r, l]]                  (index 0..=255)
/// sum    = sum_l e[l]                            (>= table[0] >= 1)
/// out[l] = (254 * e[l] + sum) / (2 * sum)        (unsigned division)
/// ```
///
/// so `out = round_half_up(127 e / sum)` in `0..=127`, the probability in
/// units of `1/127`. With the import's table, against the exact softmax
/// `p` of the dequantized input: `|out / 127 - p| <= 1/254 + (len + 1) /
/// 2^21` (each entry `E'` is within 1/2 of `E = 2^20 exp(..)`, the sum `S'`
/// within `len / 2` of `S`, and `S' >= table[0] = 2^20`, so `|E'/S' - E/S|
/// <= (1 + len) / (2 S')`; the division rounds to the nearest 1/127).
/// Measured in `tests/softmax.rs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Softmax {
    /// `i8`, `rows * len` elements
    pub input: TensorId,
    /// `i32 [256]`
    pub table: TensorId,
    /// `i8`, `rows * len` elements
    pub output: TensorId,
    pub rows: u32,
    pub len: u32,
}

/// Table lookup: `out[i] = table[in[i] as u8]` with an `i8 [256]` table
/// (exact for any function of one `i8`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lut {
    pub input: TensorId,
    pub table: TensorId,
    pub output: TensorId,
}

/// Embedding lookup: `out[i, :] = table[clamp(idx[i], 0, rows - 1), :]`
/// (`table` `i8 [rows, width]`, `indices` `i32 [n]`, `output` `i8 [n,
/// width]`); the clamp makes every index valid without a branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gather {
    pub table: TensorId,
    pub indices: TensorId,
    pub output: TensorId,
    pub rows: u32,
    pub width: u32,
    pub n: u32,
}

/// Layer normalization over the last axis of the sum of two `i8` tensors,
/// batch 1 (`rows` rows of `len` values). Per row, in `i64` (the lowering
/// keeps every intermediate below `2^62`, see `import::lower`):
///
/// ```text
/// x[l]  = a[l] * wa[l] + b[l] * wb[l]
/// sum   = sum_l x[l]
/// d[l]  = len * x[l] - sum
/// S     = max(isqrt(sum_l d[l]^2 + eps), 1)        (floor square root)
/// N[l]  = d[l] * gamma[l] + beta[l] * S
/// q[l]  = floor((N[l] + S * 2^(k-1)) / (S * 2^k))  (round half up)
/// out[l] = clamp(q[l], -128, 127)
/// ```
///
/// so `out ~ (gamma' * (x - mean) / std + beta') ` with `gamma[l] =
/// gamma'[l] sqrt(len) 2^k / s_out` and `beta[l] = beta'[l] 2^k / s_out`.
/// Per-column `wa`, `wb` let inputs and outputs have per-column scales
/// (`gamma`, `beta` divide by the output column's scale). A single input is
/// `wb = 0`.
///
/// `a`, `b` and `output` may instead all be `i16` (a transformer's `i16`
/// residual stream). Then the deviations are rounded to `T = (61 -
/// bitlen(len)) / 2` bits before they are squared, so that the variance
/// sum stays below `2^62` however large the weights (per row, in `i64`):
///
/// ```text
/// m      = max(len * max_l x[l] - sum, sum - len * min_l x[l])   (max |d[l]|)
/// sh     = max(bitlen(m) - T, 0)        (bitlen(m) = 64 - leading zeros)
/// dv[l]  = (d[l] + 2^sh / 2) >> sh       (2^sh / 2 = 0 when sh = 0)
/// S      = max(isqrt(sum_l dv[l]^2 + (eps >> min(2 sh, 63))), 1)
/// N[l]   = dv[l] * gamma[l] + beta[l] * S
/// q[l]   = floor((N[l] + S * 2^(k-1)) / (S * 2^k))
/// out[l] = clamp(q[l], -32768, 32767)
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerNorm {
    /// `i8` (or `i16`), `rows * len` elements
    pub a: TensorId,
    /// `i8` (or `i16`), `rows * len` elements
    pub b: TensorId,
    /// `i8` (or `i16`), `rows * len` elements
    pub output: TensorId,
    /// `i32 [len]`
    pub gamma: TensorId,
    /// `i32 [len]`
    pub beta: TensorId,
    pub rows: u32,
    pub len: u32,
    /// `i32 [len]`
    pub wa: TensorId,
    /// `i32 [len]`
    pub wb: TensorId,
    /// `>= 0`
    pub eps: i32,
    /// `1..=30`
    pub k: i32,
}

/// Batched product of two activations:
///
/// ```text
/// out[t, i, j] = clamp(((sum_k a[t, i, k] * b[t, j, k]) * m + 2^(s-1)) >> s, -128, 127)
/// ```
///
/// with `a[t, i, k]` element `t * a_stride[0] + i * a_stride[1] + k *
/// a_stride[2]` of `a` (likewise `b[t, j, k]` and `out[t, i, j]`); the sum
/// in wrapping `i32` (`k * 128 * 128 < 2^31`), the rescale in `i64`. An
/// `i32` output holds the sums themselves (`multiplier`, `shift` unused;
/// attention scores kept exact for the softmax). The output strides must
/// address every element of `output` exactly once.
///
/// `a` and `b` may instead both be `i16`, with an `i16` output (attention's
/// `P V` with probabilities in units of `1/32767`; the rescale clamped to
/// `-32767..=32767`) or an `i32` one (exact scores of `i16` `Q`, `K`): the
/// same sum in wrapping `i32`, which the lowering keeps from wrapping
/// (`sum_k |a[t, i, k]| <= 32767 + k / 2` for probabilities, operands
/// within `sqrt(2^31 / k)` for scores).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActMatMul {
    pub a: TensorId,
    pub b: TensorId,
    pub output: TensorId,
    pub batch: u32,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub a_stride: [u32; 3],
    pub b_stride: [u32; 3],
    pub o_stride: [u32; 3],
    pub multiplier: i32,
    pub shift: i32,
}

/// [`Softmax`] over the last axis with a mask shared by all rows:
/// `mask` is `i32 [len]`, and element `l` takes part iff `mask[l] != 0`.
/// Per row: `mx` = max of the unmasked inputs (`-128` if none), `e[l] =
/// mask[l] != 0 ? table[mx - in[r, l]] : 0`, `sum = max(sum_l e[l], 1)`,
/// `out[l] = (254 e[l] + sum) / (2 sum)`. A fully masked row is all 0
/// (the ONNX graphs' `Where(IsNaN(softmax), 0, softmax)`). An `i16`
/// output holds `out[l] = (65534 e[l] + sum) / (2 sum)`, the probability in
/// units of `1/32767`.
///
/// The input is `i8` or `i32`. The table index is, in `i64`,
/// `min((min(mx - x, dmax) m) >> shift, 255)` with `m = multiplier`,
/// `0 <= m < 2^31`, `0 <= shift <= 54` and `0 <= dmax < 2^31` (so the
/// product stays below 2^62); an `i8` input uses `m = 1`, `shift = 0`,
/// `dmax = 255`, i.e. the index `mx - x`.
///
/// With an `i16` output the table may instead hold 257 knots (`i32
/// [257]`, entries in `0..=2^24`), interpolated linearly: the index has 8
/// fractional bits, `j = min((min(mx - x, dmax) m) >> shift, 255 * 256)`,
/// `h = j >> 8`, and `e[l] = t[h] + (((t[h + 1] - t[h]) (j & 255) + 128)
/// >> 8)` (the import's knots are `round(2^20 exp(-h / 16))`: a relative
/// error below `1/2048` instead of a step of `1/16` in the exponent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedSoftmax {
    pub input: TensorId,
    pub mask: TensorId,
    pub table: TensorId,
    pub output: TensorId,
    pub rows: u32,
    pub len: u32,
    pub multiplier: i32,
    pub shift: i32,
    pub dmax: i32,
}

/// A function of an `i16` by linear interpolation in a table of 1025
/// `i32` knots, one every 64 input steps. In `i64`:
///
/// ```text
/// u      = in[i] + 32768                       (0..=65535)
/// h      = u >> 6,  f = u & 63
/// out[i] = clamp(t[h] + (((t[h + 1] - t[h]) * f + 32) >> 6), lo, hi)
/// ```
///
/// (`>>` arithmetic: the interpolation rounds half towards +infinity).
/// The import uses `t[h] = round(f((64 h - 32768) s_in) / s_out)`, so for a
/// function with `|f''| <= c` the error is at most `c (64 s_in)^2 / 8`
/// output units' worth plus one rounding. `lo..=hi` lies in `i16`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interp {
    /// `i16`
    pub input: TensorId,
    /// `i32 [1025]`
    pub table: TensorId,
    /// `i16`, as many elements as `input`
    pub output: TensorId,
    pub lo: i32,
    pub hi: i32,
}

/// Element-wise sum of two equally shaped `i8` tensors of `rows` rows of
/// `len` values, rescaled per column `l`: in `i64`,
/// `out[r, l] = clamp(((a[r, l] * ma[l] + b[r, l] * mb[l] + 2^(s[l]-1)) >> s[l]), lo, hi)`
/// with `ma`, `mb`, `s` `i32 [len]`, `1 <= s[l] <= 62`, `lo..=hi` in
/// `i8` (a transformer's embedding sum with per-column scales). The
/// output may be `i16` instead, with `lo..=hi` in `i16`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColAdd {
    pub a: TensorId,
    pub b: TensorId,
    pub output: TensorId,
    pub a_multiplier: TensorId,
    pub b_multiplier: TensorId,
    pub shift: TensorId,
    pub rows: u32,
    pub len: u32,
    pub lo: i32,
    pub hi: i32,
}

/// Sum of two element-wise products of `n` elements, rescaled: in `i64`,
///
/// ```text
/// out[j] = clamp((a[j] b[j] ma + c[j] d[j] mc + 2^(s-1)) >> s, lo, hi)
/// ```
///
/// with every operand and the output `i8` or `i16` (each its own),
/// `|ma|, |mc| < 2^31`, `1 <= s <= 62` and `lo..=hi` in the output's type;
/// `|a b| <= 2^30`, so the sum stays below `2^62`. An LSTM's `i16` cell
/// update `c_t = f c_{t-1} + i g` and its `h_t = o tanh(c_t)` (`mc = 0`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSum {
    pub a: TensorId,
    pub b: TensorId,
    pub c: TensorId,
    pub d: TensorId,
    pub output: TensorId,
    pub n: u32,
    pub a_multiplier: i32,
    pub c_multiplier: i32,
    pub shift: i32,
    pub lo: i32,
    pub hi: i32,
}

/// One strided copy of a [`Rearrange`]: the output elements whose index
/// `o` (the output shape right-aligned to 6 axes, missing leading axes 1)
/// lies in the window `start[d] <= o[d] < start[d] + extent[d]` are read
/// from element `base + sum_d (o[d] - start[d]) * stride[d]` of `input`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyPart {
    pub input: TensorId,
    /// Element offset in `input` of the window's first element.
    pub base: u32,
    /// Element strides of `input` along the 6 output axes (0 repeats an
    /// element: broadcasting).
    pub stride: [u32; 6],
    pub start: [u32; 6],
    /// `>= 1` on every axis.
    pub extent: [u32; 6],
}

/// Data movement: `out[o] = input_p[base_p + sum_d (o[d] - start_p[d])
/// stride_p[d]]` for the part `p` whose window holds `o`, and `fill` where
/// no window does. The windows are disjoint and inside the output, so
/// every element is written once. Inputs and output share one element
/// type (`i8`, `i16` or `i32`); `fill` lies in it. Transpose, Slice,
/// Split, Expand, Gather with constant indices (one part), Pad (one part
/// plus `fill`) and Concat (one part per input).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rearrange {
    pub output: TensorId,
    pub parts: Vec<CopyPart>,
    pub fill: i32,
}

/// What a [`Binary`] computes from `x = a[..]`, `y = b[..]` (`i8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryKind {
    /// `v = x ma + y mb` (Sub: a negative `mb`)
    Add,
    /// `v = x y ma`
    Mul,
    /// `v = max(x ma, y mb)`
    Max,
    /// `v = min(x ma, y mb)`
    Min,
    /// `v = c != 0 ? x ma : y mb` (ONNX `Where`)
    Select,
    /// `out = (x ma == y mb) as i8`, raw 0/1
    Equal,
    /// `out = (x ma < y mb) as i8`, raw 0/1 (Greater: swapped operands)
    Less,
    /// `out = (x ma <= y mb) as i8`, raw 0/1
    LessOrEqual,
    /// `out = (x != 0 && y != 0) as i8`
    And,
    /// `out = (x != 0 || y != 0) as i8`
    Or,
    /// `out = ((x != 0) != (y != 0)) as i8`
    Xor,
}

impl BinaryKind {
    /// Whether the output is the raw `0`/`1` of a predicate (no rescale).
    pub fn is_predicate(self) -> bool {
        !matches!(
            self,
            BinaryKind::Add
                | BinaryKind::Mul
                | BinaryKind::Max
                | BinaryKind::Min
                | BinaryKind::Select
        )
    }
}

/// Element-wise op of two `i8` tensors with numpy broadcasting, batch 1:
/// the output (shape right-aligned to 6 axes) is written in row-major
/// order, and its element `o` reads `x = a[sum_d o[d] a_stride[d]]`, `y =
/// b[sum_d o[d] b_stride[d]]` (and `c[sum_d o[d] c_stride[d]]` for
/// [`BinaryKind::Select`]; a broadcast axis has stride 0). The rescaling
/// kinds give, in `i64`, `out = clamp((v + 2^(s-1)) >> s, lo, hi)` with `v`
/// of [`BinaryKind`] (`|ma|, |mb| < 2^31`, `1 <= s <= 62`); the predicates
/// give `0` or `1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binary {
    pub kind: BinaryKind,
    pub a: TensorId,
    pub b: TensorId,
    /// The condition of `Select` (`i8`); ignored (any tensor) otherwise.
    pub c: TensorId,
    pub output: TensorId,
    pub a_stride: [u32; 6],
    pub b_stride: [u32; 6],
    pub c_stride: [u32; 6],
    pub a_multiplier: i32,
    pub b_multiplier: i32,
    pub shift: i32,
    pub lo: i32,
    pub hi: i32,
}

/// Average pooling, batch 1: `out[c, y, x] = requant_n(sum of in[c, y*sh -
/// pt + ky, x*sw - pl + kx])` over the window positions inside the input,
/// where `n` is the window's count: its positions inside the input, or
/// (`count_include_pad`) inside the padded input `[-pt, H + pb) x [-pl, W +
/// pr)`. `multiplier` and `shift` are `i32 [KH * KW + 1]`, indexed by `n`
/// (the import: `m[n] 2^-s[n] = s_in / (n s_out)`); `requant` as in the
/// spec above with zero point 0 and clamp `lo..=hi` in `i8`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvgPool {
    /// `i8 [1, C, H, W]`
    pub input: TensorId,
    /// `i8 [1, C, OH, OW]`
    pub output: TensorId,
    pub kernel: [u32; 2],
    pub stride: [u32; 2],
    /// top, left, bottom, right
    pub pad: [u32; 4],
    pub count_include_pad: bool,
    pub multiplier: TensorId,
    pub shift: TensorId,
    pub lo: i32,
    pub hi: i32,
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
    ChannelMul(ChannelMul),
    Softmax(Softmax),
    Gather(Gather),
    LayerNorm(LayerNorm),
    ActMatMul(ActMatMul),
    MaskedSoftmax(MaskedSoftmax),
    Interp(Interp),
    ColAdd(ColAdd),
    ProductSum(ProductSum),
    Rearrange(Rearrange),
    Binary(Binary),
    AvgPool(AvgPool),
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
            Op::ChannelMul(o) => o.output,
            Op::Softmax(o) => o.output,
            Op::Gather(o) => o.output,
            Op::LayerNorm(o) => o.output,
            Op::ActMatMul(o) => o.output,
            Op::MaskedSoftmax(o) => o.output,
            Op::Interp(o) => o.output,
            Op::ColAdd(o) => o.output,
            Op::ProductSum(o) => o.output,
            Op::Rearrange(o) => o.output,
            Op::Binary(o) => o.output,
            Op::AvgPool(o) => o.output,
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
            Op::ChannelMul(_) => "channel_mul",
            Op::Softmax(_) => "softmax",
            Op::Gather(_) => "gather",
            Op::LayerNorm(_) => "layer_norm",
            Op::ActMatMul(_) => "act_matmul",
            Op::MaskedSoftmax(_) => "masked_softmax",
            Op::Interp(_) => "interp",
            Op::ColAdd(_) => "col_add",
            Op::ProductSum(_) => "product_sum",
            Op::Rearrange(_) => "rearrange",
            Op::Binary(_) => "binary",
            Op::AvgPool(_) => "avg_pool",
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
