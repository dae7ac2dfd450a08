//! Linear ops with constant weights: tract's `Conv`, `EinSum` and
//! `Reduce<Sum>`, plus the shape and constant helpers of the analysis.
//!
//! The weights of a linear op are kept as one row per output channel, so
//! that [`super::fold`] can fold the per-channel constants that follow.

use super::lower::MAX_TENSOR_BYTES;
use super::plan::Step;
use crate::error::LowerError;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PoolSpec};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// The error of a node that cannot be lowered.
pub fn unsupported(node: &TypedNode, reason: impl Into<String>) -> LowerError {
    LowerError::Unsupported {
        node: node.name.clone(),
        op: node.op.name().to_string(),
        reason: reason.into(),
    }
}

/// The concrete shape of an outlet.
pub fn shape(model: &TypedModel, o: OutletId) -> Result<Vec<usize>, LowerError> {
    let fact = model
        .outlet_fact(o)
        .map_err(|e| LowerError::Onnx(format!("{e:#}")))?;
    match fact.shape.as_concrete() {
        Some(s)
            if s.iter()
                .try_fold(1u64, |a, d| a.checked_mul(*d as u64))
                .is_none_or(|n| n > MAX_TENSOR_BYTES) =>
        {
            Err(unsupported(
                model.node(o.node),
                format!("tensor of shape {s:?} is too large"),
            ))
        }
        Some(s) if fact.datum_type == f32::datum_type() => Ok(s.to_vec()),
        Some(_) => Err(unsupported(
            model.node(o.node),
            format!(
                "tensor type {:?}: only f32 tensors are quantized",
                fact.datum_type
            ),
        )),
        None => Err(unsupported(model.node(o.node), "symbolic shape")),
    }
}

/// The value of a constant outlet as `f64`, with its shape.
pub fn konst(model: &TypedModel, o: OutletId) -> Option<(Vec<usize>, Vec<f64>)> {
    let t = model.outlet_fact(o).ok()?.konst.clone()?;
    let t = t.cast_to::<f32>().ok()?;
    let v = t
        .to_plain_array_view::<f32>()
        .ok()?
        .iter()
        .map(|x| f64::from(*x))
        .collect();
    Some((t.shape().to_vec(), v))
}

/// What kind of linear op.
#[derive(Clone, Debug)]
pub enum Kind {
    Conv {
        wshape: [usize; 4],
        stride: [usize; 2],
        pad: [usize; 4],
        dilation: [usize; 2],
        group: usize,
    },
    MatMul {
        m: usize,
        k: usize,
        n: usize,
        /// Element strides of the input along `i`, `k`.
        a_stride: [usize; 2],
        /// Element strides of the output along `i`, `j`.
        o_stride: [usize; 2],
    },
}

/// A linear op: `out[.., j, ..] = bias[j] + <row j of weight, input window>`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub kind: Kind,
    pub input: OutletId,
    /// `channels` rows of equal length.
    pub weight: Vec<f64>,
    pub bias: Vec<f64>,
    /// Output axes whose indices (row-major) give the channel.
    pub chan_axes: Vec<usize>,
}

impl Linear {
    pub fn channels(&self) -> usize {
        self.bias.len()
    }

    /// The plan step, once the inputs and output are values.
    pub fn step(self, name: String, input: usize, output: usize, relu: bool) -> Step {
        match self.kind {
            Kind::Conv {
                wshape,
                stride,
                pad,
                dilation,
                group,
            } => Step::Conv {
                name,
                input,
                output,
                weight: self.weight,
                wshape,
                bias: self.bias,
                stride,
                pad,
                dilation,
                group,
                relu,
            },
            Kind::MatMul {
                m,
                k,
                n,
                a_stride,
                o_stride,
            } => Step::MatMul {
                name,
                input,
                output,
                weight: self.weight,
                bias: self.bias,
                m,
                k,
                n,
                a_stride,
                o_stride,
                relu,
            },
        }
    }
}

pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Spatial geometry of a pool spec over an `[.., C, H, W]` input:
/// `(stride, pad [t, l, b, r], dilation, [OH, OW])`.
pub type Geometry = ([usize; 2], [usize; 4], [usize; 2], [usize; 2]);

pub fn geometry(node: &TypedNode, spec: &PoolSpec, hw: [usize; 2]) -> Result<Geometry, LowerError> {
    if spec.rank() != 2 || !matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW) {
        return Err(unsupported(
            node,
            "only 2-D, channels-first (NCHW) windows are supported",
        ));
    }
    let pads = spec.computed_padding(&hw);
    let (s, d) = (spec.strides(), spec.dilations());
    Ok((
        [s[0], s[1]],
        [
            pads[0].pad_before,
            pads[1].pad_before,
            pads[0].pad_after,
            pads[1].pad_after,
        ],
        [d[0], d[1]],
        [pads[0].convoluted, pads[1].convoluted],
    ))
}

/// The last three dimensions `[C, H, W]` of a rank-3 or batch-1 rank-4 shape.
pub fn chw(node: &TypedNode, s: &[usize]) -> Result<[usize; 3], LowerError> {
    match s {
        [c, h, w] | [1, c, h, w] => Ok([*c, *h, *w]),
        _ => Err(unsupported(
            node,
            format!("shape {s:?} is not [1, C, H, W]"),
        )),
    }
}

/// A `Conv` with constant kernel and bias.
pub fn conv(model: &TypedModel, node: &TypedNode, op: &Conv) -> Result<Linear, LowerError> {
    if op.q_params.is_some() || node.inputs.len() != 3 {
        return Err(unsupported(node, "quantized convolution"));
    }
    let (Some((ks, kv)), Some((_, bv))) =
        (konst(model, node.inputs[1]), konst(model, node.inputs[2]))
    else {
        return Err(unsupported(node, "the kernel and bias must be constants"));
    };
    let [c, h, w] = chw(node, &shape(model, node.inputs[0])?)?;
    let [oc, oh, ow] = chw(node, &shape(model, OutletId::new(node.id, 0))?)?;
    let g = op.group;
    if ks.len() != 4 || g == 0 || (g != 1 && op.kernel_fmt != KernelFormat::OIHW) {
        return Err(unsupported(
            node,
            format!("kernel {ks:?} in {:?} with group {g}", op.kernel_fmt),
        ));
    }
    // Axis positions of o, i, h, w in the stored kernel.
    let axes: [usize; 4] = match op.kernel_fmt {
        KernelFormat::OIHW => [0, 1, 2, 3],
        KernelFormat::HWIO => [3, 2, 0, 1],
        KernelFormat::OHWI => [0, 3, 1, 2],
    };
    let wshape = axes.map(|a| ks[a]);
    if wshape[0] != oc || oc % g != 0 || c % g != 0 || wshape[1] * g != c {
        return Err(unsupported(
            node,
            format!("kernel {ks:?} does not match {c} -> {oc} channels"),
        ));
    }
    let st = strides(&ks);
    let mut weight = Vec::with_capacity(kv.len());
    for o in 0..wshape[0] {
        for i in 0..wshape[1] {
            for y in 0..wshape[2] {
                for x in 0..wshape[3] {
                    let idx = [o, i, y, x];
                    weight.push(kv[(0..4).map(|d| idx[d] * st[axes[d]]).sum::<usize>()]);
                }
            }
        }
    }
    let bias = match bv.len() {
        1 => vec![bv[0]; oc],
        n if n == oc => bv,
        n => {
            return Err(unsupported(
                node,
                format!("bias of {n} values for {oc} channels"),
            ))
        }
    };
    let (stride, pad, dilation, out) = geometry(node, &op.pool_spec, [h, w])?;
    if out != [oh, ow] || stride.contains(&0) || dilation.contains(&0) {
        return Err(unsupported(node, "inconsistent convolution geometry"));
    }
    let rank = shape(model, OutletId::new(node.id, 0))?.len();
    Ok(Linear {
        kind: Kind::Conv {
            wshape,
            stride,
            pad,
            dilation,
            group: g,
        },
        input: node.inputs[0],
        weight,
        bias,
        chan_axes: vec![rank - 3],
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    M,
    K,
    N,
}

/// One axis of size > 1 of a product: its role, its positions in the
/// activation `A`, the output and the constant `B`, and its size.
#[derive(Clone, Copy, Debug)]
struct Ax {
    role: Role,
    a: Option<usize>,
    o: Option<usize>,
    b: Option<usize>,
    size: usize,
}

/// Offsets into `B` of every index over `axes`, row-major.
fn offsets(axes: &[Ax], bst: &[usize]) -> Vec<usize> {
    let mut offs = vec![0usize];
    for a in axes {
        let st = a.b.map_or(0, |p| bst[p]);
        offs = offs
            .iter()
            .flat_map(|o| (0..a.size).map(move |i| o + i * st))
            .collect();
    }
    offs
}

/// An `EinSum` of an activation `A` and a constant `B` that is a matrix
/// product in memory: `A` is `[M axes.., K axes..]` or `[K axes.., M
/// axes..]`, the output `[M axes.., N axes..]` or `[N axes.., M axes..]`
/// (size-1 axes anywhere; the M axes in the same order in both). The
/// second forms are a 1x1 convolution as tract writes it (`out[oc, p] =
/// sum_ic W[oc, ic] x[ic, p]`), lowered with strided `a` and `out`.
pub fn einsum(model: &TypedModel, node: &TypedNode, op: &EinSum) -> Result<Linear, LowerError> {
    if op.q_params.is_some() || node.inputs.len() != 2 || op.operating_dt != f32::datum_type() {
        return Err(unsupported(node, "only f32 products of two tensors"));
    }
    let (ai, bi, (bs, bv)) = match (konst(model, node.inputs[0]), konst(model, node.inputs[1])) {
        (None, Some(b)) => (0, 1, b),
        (Some(b), None) => (1, 0, b),
        _ => {
            return Err(unsupported(
                node,
                "needs one activation and one constant operand",
            ))
        }
    };
    let a_shape = shape(model, node.inputs[ai])?;
    let o_shape = shape(model, OutletId::new(node.id, 0))?;
    let mut axes = Vec::new();
    for ax in op.axes.iter_all_axes() {
        let (pa, pb, po) = (&ax.inputs[ai], &ax.inputs[bi], &ax.outputs[0]);
        if pa.len() > 1 || pb.len() > 1 || po.len() > 1 {
            return Err(unsupported(
                node,
                format!("axis {} repeats in one operand", ax.repr),
            ));
        }
        let (a, b, o) = (
            pa.first().copied(),
            pb.first().copied(),
            po.first().copied(),
        );
        let size = a
            .map(|p| a_shape[p])
            .or(b.map(|p| bs[p]))
            .or(o.map(|p| o_shape[p]));
        if size.unwrap_or(1) == 1 {
            continue;
        }
        let role = match (a.is_some(), b.is_some(), o.is_some()) {
            (true, true, false) => Role::K,
            (true, false, true) => Role::M,
            (false, true, true) => Role::N,
            _ => {
                return Err(unsupported(
                    node,
                    format!("axis {} is not a product axis", ax.repr),
                ))
            }
        };
        axes.push(Ax {
            role,
            a,
            o,
            b,
            size: size.unwrap_or(1),
        });
    }
    let mut in_a: Vec<Ax> = axes.iter().filter(|x| x.a.is_some()).copied().collect();
    in_a.sort_by_key(|x| x.a);
    let mut in_o: Vec<Ax> = axes.iter().filter(|x| x.o.is_some()).copied().collect();
    in_o.sort_by_key(|x| x.o);
    let pick = |v: &[Ax], r: Role| {
        v.iter()
            .filter(|x| x.role == r)
            .copied()
            .collect::<Vec<_>>()
    };
    // M axes all before (`true`) or all after (`false`) the other axes.
    let m_side = |v: &[Ax]| {
        let first = v
            .windows(2)
            .all(|w| w[0].role == Role::M || w[1].role != Role::M);
        let last = v
            .windows(2)
            .all(|w| w[0].role != Role::M || w[1].role == Role::M);
        if first {
            Some(true)
        } else if last {
            Some(false)
        } else {
            None
        }
    };
    let m_pos = |v: &[Ax]| pick(v, Role::M).iter().map(|x| x.a).collect::<Vec<_>>();
    let (Some(a_first), Some(o_first)) = (m_side(&in_a), m_side(&in_o)) else {
        return Err(unsupported(
            node,
            "needs a transpose of the activation or the output",
        ));
    };
    if m_pos(&in_a) != m_pos(&in_o) {
        return Err(unsupported(
            node,
            "needs a transpose of the activation or the output",
        ));
    }
    let (m_axes, k_axes, n_axes) = (
        pick(&in_a, Role::M),
        pick(&in_a, Role::K),
        pick(&in_o, Role::N),
    );
    let size = |v: &[Ax]| v.iter().map(|x| x.size).product::<usize>();
    let (m, k, n) = (size(&m_axes), size(&k_axes), size(&n_axes));
    let bst = strides(&bs);
    let (ko, no) = (offsets(&k_axes, &bst), offsets(&n_axes, &bst));
    let weight = no
        .iter()
        .flat_map(|j| ko.iter().map(move |kk| j + kk))
        .map(|i| bv[i])
        .collect();
    // `A` is `[M, K]` or `[K, M]` in memory, the output `[M, N]` or `[N, M]`.
    let a_stride = if a_first { [k, 1] } else { [1, m] };
    let o_stride = if o_first { [n, 1] } else { [1, m] };
    Ok(Linear {
        kind: Kind::MatMul {
            m,
            k,
            n,
            a_stride,
            o_stride,
        },
        input: node.inputs[ai],
        weight,
        bias: vec![0.0; n],
        chan_axes: n_axes.iter().filter_map(|x| x.o).collect(),
    })
}

/// Whether the reduced axes are the trailing axes of size > 1; returns
/// `(outer, reduced)` element counts.
pub fn trailing_reduction(input: &[usize], axes: &[usize]) -> Option<(usize, usize)> {
    let nt: Vec<usize> = (0..input.len()).filter(|a| input[*a] > 1).collect();
    let first = nt.iter().position(|a| axes.contains(a)).unwrap_or(nt.len());
    if nt[first..].iter().any(|a| !axes.contains(a)) {
        return None;
    }
    let outer = nt[..first].iter().map(|a| input[*a]).product();
    Some((outer, nt[first..].iter().map(|a| input[*a]).product()))
}

/// A `Reduce<Sum>` over the trailing axes (global average pooling's sum)
/// as a product with a row of ones.
pub fn reduce_sum(
    model: &TypedModel,
    node: &TypedNode,
    axes: &[usize],
) -> Result<Linear, LowerError> {
    let input = shape(model, node.inputs[0])?;
    let Some((m, k)) = trailing_reduction(&input, axes) else {
        return Err(unsupported(node, "only reductions over the trailing axes"));
    };
    Ok(Linear {
        kind: Kind::MatMul {
            m,
            k,
            n: 1,
            a_stride: [k, 1],
            o_stride: [1, 1],
        },
        input: node.inputs[0],
        weight: vec![1.0; k],
        bias: vec![0.0],
        chan_axes: vec![],
    })
}
