//! The conv's split into units and its descriptor.

use super::KERNEL;
use crate::ir::{Conv, Program};
use crate::ops::family::{Budget, Scheduled};

/// Bytes of a memory chunk with the default `CodegenOptions::chunk_log2`.
const CHUNK: u64 = 512;

/// The shapes and hyper-parameters of a conv, as `usize`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) oc: usize,
    pub(super) cg: usize,
    pub(super) ocpg: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) stride: [usize; 2],
    pub(super) pad: [usize; 4],
    pub(super) dil: [usize; 2],
    pub(super) group: usize,
}

impl Geom {
    pub(super) fn new(op: &Conv, p: &Program) -> Self {
        let last = |id: usize, n: usize| {
            let s = &p.tensors[id].shape;
            assert!(
                s.len() >= n,
                "conv tensor {} has shape {s:?}",
                p.tensors[id].name
            );
            s[s.len() - n..]
                .iter()
                .map(|v| *v as usize)
                .collect::<Vec<_>>()
        };
        let (i, w, o) = (last(op.input, 3), last(op.weight, 4), last(op.output, 3));
        let group = op.group.max(1) as usize;
        debug_assert!(i[0] % group == 0 && o[0] % group == 0 && w[1] * group == i[0]);
        let u = |v: u32| v as usize;
        Self {
            c: i[0],
            h: i[1],
            w: i[2],
            oc: o[0],
            cg: w[1],
            ocpg: (o[0] / group).max(1),
            kh: w[2],
            kw: w[3],
            oh: o[1],
            ow: o[2],
            stride: op.stride.map(u),
            pad: op.pad.map(u),
            dil: op.dilation.map(u),
            group,
        }
    }

    /// Weight bytes of one output channel.
    pub(super) fn per_oc(&self) -> usize {
        self.cg * self.kh * self.kw
    }
}

/// Splits the conv into blocks of output channels, rows and columns that
/// stay within the budget.
pub fn schedule(op: &Conv, p: &Program, budget: &Budget) -> Scheduled {
    let g = Geom::new(op, p);
    let (oc, oh, ow) = (g.oc as u64, g.oh as u64, g.ow as u64);
    let (cg, kk) = (g.cg as u64, (g.kh * g.kw) as u64);
    // Input channel innermost when there are at least as many channels as
    // kernel columns, except for unit-dilation rows of four or more taps:
    // those run faster a row at a time with constant load offsets.
    let mode = g.cg >= g.kw && !(g.dil[1] == 1 && g.kw >= 4);
    // Fuel of one output element, an upper bound for every path of the
    // kernel (measured before the faster paths): ~11 per product, ~25 per
    // run of the innermost loop, ~150 for the window and the requantization.
    let per_elem = 11 * cg * kk + 25 * (g.kh * g.kw.min(g.cg)) as u64 + 150;
    let span = |n: u64, s: usize, k: usize, d: usize, full: usize| {
        ((n - 1) * s as u64 + ((k - 1) * d) as u64 + 1).min(full as u64)
    };
    let in_ch = |ob: u64| (cg * (ob.div_ceil(g.ocpg as u64) + 1)).min(g.c as u64);
    let weights = |ob: u64| ob * cg * kk;
    // A channel's rows start a new memory chunk (512 bytes by default) unless
    // the channels are small enough to share chunks.
    let input = |ob: u64, rb: u64, xb: u64| {
        let window =
            span(rb, g.stride[0], g.kh, g.dil[0], g.h) * span(xb, g.stride[1], g.kw, g.dil[1], g.w);
        in_ch(ob) * (window + CHUNK).min((g.h * g.w) as u64)
    };
    let (mut ob, mut rb, mut xb) = (oc.max(1), oh.max(1), ow.max(1));
    loop {
        let over_fuel = ob * rb * xb * per_elem > budget.unit_fuel;
        let bytes = weights(ob) + input(ob, rb, xb) + ob * rb * xb + 12 * ob;
        if !over_fuel && bytes <= budget.unit_bytes {
            break;
        }
        // Splitting columns saves fuel but hardly any memory chunks.
        if ob > 1 && (weights(ob) >= input(ob, rb, xb) || rb == 1) {
            ob = ob.div_ceil(2);
        } else if rb > 1 {
            rb = rb.div_ceil(2);
        } else if over_fuel && xb > 1 {
            xb = xb.div_ceil(2);
        } else {
            break;
        }
    }
    // Same number of blocks, evenly sized.
    let even = |n: u64, b: u64| n.div_ceil(n.div_ceil(b).max(1)).max(1);
    let (ob, rb, xb) = (even(oc, ob), even(oh, rb), even(ow, xb));
    let (nob, nyb, nxb) = (oc.div_ceil(ob), oh.div_ceil(rb), ow.div_ceil(xb));
    // Columns whose whole window lies inside the input: xi0..xi1.
    let xi0 = g.pad[1].div_ceil(g.stride[1]);
    let last = (g.w + g.pad[1]) as isize - 1 - ((g.kw - 1) * g.dil[1]) as isize;
    let xi1 = if last < 0 {
        0
    } else {
        (last as usize / g.stride[1] + 1).min(g.ow)
    };
    let t = |id: usize| p.tensors[id].offset;
    let r = &op.requant;
    let (hw, dh_w) = ((g.h * g.w) as u32, (g.dil[0] * g.w) as u32);
    let (kw, kk, dw) = (g.kw as u32, kk as u32, g.dil[1] as u32);
    // Strides (input, weight) of the outer, middle and inner loops.
    let strides = if mode {
        [dh_w, kw, dw, 1, hw, kk] // ky, kx, ic
    } else {
        [hw, kk, dh_w, kw, dw, 1] // ic, ky, kx
    };
    let mut descriptor = vec![
        t(op.input),
        t(op.weight),
        t(op.bias),
        t(op.output),
        t(r.multiplier),
        t(r.shift),
        g.h as u32,
        g.w as u32,
        g.kh as u32,
        kw,
        g.cg as u32,
        g.per_oc() as u32,
        g.ocpg as u32,
        g.oc as u32,
        g.oh as u32,
        g.ow as u32,
        g.stride[0] as u32,
        g.stride[1] as u32,
        g.pad[0] as u32,
        g.pad[1] as u32,
        g.dil[0] as u32,
        dw,
        ob as u32,
        rb as u32,
        xb as u32,
        nyb as u32,
        nxb as u32,
    ];
    descriptor.extend(strides);
    descriptor.extend([
        mode as u32,
        r.zero_point as u32,
        r.lo as u32,
        r.hi as u32,
        g.c as u32,
        g.group as u32,
        g.pad[2] as u32,
        g.pad[3] as u32,
        (g.cg * g.h * g.w) as u32,
        xi0 as u32,
        (xi1.max(xi0) - xi0) as u32,
    ]);
    Scheduled {
        kernel: KERNEL.name,
        units: (nob * nyb * nxb) as u32,
        descriptor,
    }
}
