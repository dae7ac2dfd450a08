//! The float plan: what the analysis of the tract model finds, before
//! quantization. Every step maps to one IR node (or, for an alias, to
//! none); weights are `f64` copies of the model's `f32` constants with any
//! absorbed per-channel scaling and offsets applied.

use super::mathfn;
use std::collections::BTreeMap;

/// Index of a value in [`Plan::values`].
pub type ValueId = usize;

/// A tensor of the plan.
#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub shape: Vec<usize>,
    /// Raw integers (token ids, masks): an `i32` tensor without a scale.
    pub integer: bool,
}

impl Value {
    pub fn len(&self) -> usize {
        self.shape.iter().fold(1, |a, d| a.saturating_mul(*d))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One step of the plan.
#[derive(Clone, Debug)]
pub enum Step {
    /// 2-D convolution, weights `[OC, C/group, KH, KW]`.
    Conv {
        name: String,
        input: ValueId,
        output: ValueId,
        weight: Vec<f64>,
        wshape: [usize; 4],
        bias: Vec<f64>,
        stride: [usize; 2],
        /// top, left, bottom, right
        pad: [usize; 4],
        dilation: [usize; 2],
        group: usize,
        relu: bool,
    },
    /// `out[i, j] = bias[j] + sum_k a[i, k] w[j, k]`, weights `[n, k]`;
    /// `a[i, k]` is element `i * a_stride[0] + k * a_stride[1]` of the
    /// input, `out[i, j]` element `i * o_stride[0] + j * o_stride[1]` of
    /// the output (`[k, 1]` and `[n, 1]` when row-major).
    MatMul {
        name: String,
        input: ValueId,
        output: ValueId,
        weight: Vec<f64>,
        bias: Vec<f64>,
        m: usize,
        k: usize,
        n: usize,
        a_stride: [usize; 2],
        o_stride: [usize; 2],
        relu: bool,
    },
    /// Max pooling over the last two axes (padding ignored).
    MaxPool {
        name: String,
        input: ValueId,
        output: ValueId,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 4],
    },
    /// `out = a + sign * b`.
    Add {
        name: String,
        a: ValueId,
        b: ValueId,
        output: ValueId,
        negate_b: bool,
        relu: bool,
    },
    /// `out[c, p] = a[c, p] * s[c]`: `a` holds `channels` rows of `inner`
    /// values, `s` one value per row.
    ChannelMul {
        name: String,
        a: ValueId,
        s: ValueId,
        output: ValueId,
        channels: usize,
        inner: usize,
    },
    /// Softmax over each of `rows` rows of `len` values.
    Softmax {
        name: String,
        input: ValueId,
        output: ValueId,
        rows: usize,
        len: usize,
    },
    /// An element-wise function of one tensor.
    Pointwise {
        name: String,
        input: ValueId,
        output: ValueId,
        expr: Expr,
    },
    /// The same bytes with another shape.
    Alias { input: ValueId, output: ValueId },
    /// Embedding lookup: `out[i, :] = table[clamp(idx[i]), :]`, `table`
    /// `[rows, width]`, `indices` an integer value.
    Gather {
        name: String,
        indices: ValueId,
        output: ValueId,
        table: Vec<f64>,
        rows: usize,
        width: usize,
    },
    /// A constant tensor read as an activation (e.g. position embeddings).
    Const {
        name: String,
        output: ValueId,
        data: Vec<f64>,
    },
    /// Layer normalization of `a` (plus `b`) over the last axis.
    LayerNorm {
        name: String,
        a: ValueId,
        b: Option<ValueId>,
        output: ValueId,
        gamma: Vec<f64>,
        beta: Vec<f64>,
        eps: f64,
        rows: usize,
        len: usize,
    },
    /// `out[t, i, j] = sum_k a[t, i, k] b[t, j, k]` with element strides
    /// (batch, row, k), (batch, column, k) and (batch, row, column);
    /// `dims` is `[batch, m, n, k]`.
    ActMatMul {
        name: String,
        a: ValueId,
        b: ValueId,
        output: ValueId,
        dims: [usize; 4],
        a_stride: [usize; 3],
        b_stride: [usize; 3],
        o_stride: [usize; 3],
    },
    /// Softmax over rows of `len` values, column `l` taking part iff
    /// `mask[l] != 0` (an all-masked row is 0).
    MaskedSoftmax {
        name: String,
        input: ValueId,
        mask: ValueId,
        output: ValueId,
        rows: usize,
        len: usize,
    },
    /// `out = input[offset..offset + len(out)]` (flat elements): a view of
    /// the same bytes (an unrolled loop's per-timestep input, see
    /// [`super::recurrent`]).
    Slice {
        input: ValueId,
        output: ValueId,
        offset: usize,
    },
    /// `out` = the inputs one after another (flat): the inputs are views
    /// of `out`'s bytes, so this is no IR node (an unrolled loop's
    /// per-timestep outputs).
    Stack {
        inputs: Vec<ValueId>,
        output: ValueId,
    },
    /// `out = sum over terms of a * b` (element-wise, equal shapes, one or
    /// two terms): an LSTM cell's products; `wide` asks for an `i16`
    /// output (the cell state).
    Products {
        name: String,
        terms: Vec<(ValueId, ValueId)>,
        output: ValueId,
        wide: bool,
    },
    /// Data movement (see [`MovePart`]): `fill` where no part's window is.
    Move {
        name: String,
        inputs: Vec<ValueId>,
        output: ValueId,
        parts: Vec<MovePart>,
        fill: f64,
    },
    /// Broadcasting element-wise op of `a` and `b` (and the condition `c`
    /// of a select); operand `k` of output element `o` is element `sum_d
    /// o[d] strides[k][d]` (output axes).
    Binary {
        name: String,
        kind: crate::ir::BinaryKind,
        /// `a - b` for `Add`.
        negate_b: bool,
        a: ValueId,
        b: ValueId,
        c: Option<ValueId>,
        output: ValueId,
        strides: [Vec<usize>; 3],
    },
    /// Average pooling over the last two axes.
    AvgPool {
        name: String,
        input: ValueId,
        output: ValueId,
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 4],
        count_include_pad: bool,
        /// `false`: the window sum (tract's `SumPool` without normalize).
        normalize: bool,
    },
}

/// One strided copy of a [`Step::Move`], in the output's axes: the output
/// elements in the window `start[d] <= o[d] < start[d] + extent[d]` read
/// element `base + sum_d (o[d] - start[d]) stride[d]` of input number
/// `input` of the step.
#[derive(Clone, Debug)]
pub struct MovePart {
    pub input: usize,
    pub base: usize,
    pub stride: Vec<usize>,
    pub start: Vec<usize>,
    pub extent: Vec<usize>,
}

impl Step {
    pub fn output(&self) -> ValueId {
        match self {
            Step::Conv { output, .. }
            | Step::MatMul { output, .. }
            | Step::MaxPool { output, .. }
            | Step::Add { output, .. }
            | Step::ChannelMul { output, .. }
            | Step::Softmax { output, .. }
            | Step::Pointwise { output, .. }
            | Step::Alias { output, .. }
            | Step::Gather { output, .. }
            | Step::Const { output, .. }
            | Step::LayerNorm { output, .. }
            | Step::ActMatMul { output, .. }
            | Step::MaskedSoftmax { output, .. }
            | Step::Slice { output, .. }
            | Step::Stack { output, .. }
            | Step::Products { output, .. } => *output,
            Step::Move { output, .. }
            | Step::Binary { output, .. }
            | Step::AvgPool { output, .. } => *output,
        }
    }

    pub fn inputs(&self) -> Vec<ValueId> {
        match self {
            Step::Conv { input, .. }
            | Step::MatMul { input, .. }
            | Step::MaxPool { input, .. }
            | Step::Pointwise { input, .. }
            | Step::Softmax { input, .. }
            | Step::Alias { input, .. }
            | Step::Slice { input, .. } => vec![*input],
            Step::Stack { inputs, .. } => inputs.clone(),
            Step::Products { terms, .. } => terms.iter().flat_map(|(a, b)| [*a, *b]).collect(),
            Step::Add { a, b, .. } => vec![*a, *b],
            Step::ChannelMul { a, s, .. } => vec![*a, *s],
            Step::Gather { indices, .. } => vec![*indices],
            Step::Const { .. } => vec![],
            Step::LayerNorm { a, b, .. } => std::iter::once(*a).chain(*b).collect(),
            Step::ActMatMul { a, b, .. } => vec![*a, *b],
            Step::MaskedSoftmax { input, mask, .. } => vec![*input, *mask],
            Step::Move { inputs, .. } => inputs.clone(),
            Step::Binary { a, b, c, .. } => [*a, *b].into_iter().chain(*c).collect(),
            Step::AvgPool { input, .. } => vec![*input],
        }
    }
}

/// The whole plan.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub values: Vec<Value>,
    pub steps: Vec<Step>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Groups of values quantized with one scale, that of the group's
    /// largest range (an unrolled loop's per-timestep values of one role).
    pub shared_scales: Vec<Vec<ValueId>>,
    /// Pre-quantized models: scales the model fixes (its `QuantizeLinear`
    /// nodes), instead of calibrated ones (see [`super::prequant`]).
    pub fixed_scales: BTreeMap<ValueId, f32>,
    /// Pre-quantized models: the model's own int8 weights and per-row
    /// scales of linear steps, by step name.
    pub int_weights: BTreeMap<String, (Vec<i8>, Vec<f64>)>,
}

impl Plan {
    pub fn value(&mut self, name: &str, shape: &[usize]) -> ValueId {
        self.values.push(Value {
            name: name.into(),
            shape: shape.to_vec(),
            integer: false,
        });
        self.values.len() - 1
    }

    /// A new raw-integer value.
    pub fn int_value(&mut self, name: &str, shape: &[usize]) -> ValueId {
        let v = self.value(name, shape);
        self.values[v].integer = true;
        v
    }
}

/// A function of one real number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnFn {
    Sigmoid,
    Tanh,
    Exp,
    Ln,
    Erf,
    Gelu,
    GeluTanh(i32),
    Silu,
    HardSwish,
    LeakyRelu(f64),
    Abs,
    Neg,
    Square,
    Sqrt,
    Recip,
    Rsqrt,
    Floor,
    Ceil,
    /// Half away from zero.
    Round,
    RoundEven,
    Sign,
    Pow(f64),
}

/// A function of two real numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinFn {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

/// An element-wise expression of one variable.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Var,
    Const(f64),
    Un(UnFn, Box<Expr>),
    Bin(BinFn, Box<Expr>, Box<Expr>),
}

fn round_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

impl UnFn {
    pub fn eval(self, x: f64) -> f64 {
        match self {
            UnFn::Sigmoid => mathfn::sigmoid(x),
            UnFn::Tanh => mathfn::tanh(x),
            UnFn::Exp => mathfn::exp(x),
            UnFn::Ln => mathfn::ln(x),
            UnFn::Erf => mathfn::erf(x),
            UnFn::Gelu => mathfn::gelu(x),
            UnFn::GeluTanh(p) => mathfn::gelu_tanh(x, p),
            UnFn::Silu => x * mathfn::sigmoid(x),
            UnFn::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            UnFn::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            UnFn::Abs => x.abs(),
            UnFn::Neg => -x,
            UnFn::Square => x * x,
            UnFn::Sqrt => x.sqrt(),
            UnFn::Recip => 1.0 / x,
            UnFn::Rsqrt => 1.0 / x.sqrt(),
            UnFn::Floor => x.floor(),
            UnFn::Ceil => x.ceil(),
            UnFn::Round => x.round(),
            UnFn::RoundEven => round_even(x),
            UnFn::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            UnFn::Pow(e) => mathfn::pow(x, e),
        }
    }
}

impl BinFn {
    pub fn eval(self, a: f64, b: f64) -> f64 {
        match self {
            BinFn::Add => a + b,
            BinFn::Sub => a - b,
            BinFn::Mul => a * b,
            BinFn::Div => a / b,
            BinFn::Max => a.max(b),
            BinFn::Min => a.min(b),
            BinFn::Pow => mathfn::pow(a, b),
        }
    }
}

impl Expr {
    pub fn eval(&self, x: f64) -> f64 {
        match self {
            Expr::Var => x,
            Expr::Const(c) => *c,
            Expr::Un(f, e) => f.eval(e.eval(x)),
            Expr::Bin(f, a, b) => f.eval(a.eval(x), b.eval(x)),
        }
    }

    /// Number of nodes of the expression tree.
    pub fn size(&self) -> usize {
        match self {
            Expr::Var | Expr::Const(_) => 1,
            Expr::Un(_, e) => 1 + e.size(),
            Expr::Bin(_, a, b) => 1 + a.size() + b.size(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_rules() {
        assert_eq!(round_even(2.5), 2.0);
        assert_eq!(round_even(-2.5), -2.0);
        assert_eq!(round_even(3.5), 4.0);
        assert_eq!(round_even(-0.4), -0.0);
        assert_eq!(UnFn::Round.eval(-2.5), -3.0);
    }
}
