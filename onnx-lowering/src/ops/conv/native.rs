//! The native implementation of the conv, bit-exact with the kernel:
//! per group, the input's patches (im2col) times the weights by the packed
//! integer product of [`crate::ops::native_gemm`]; and the direct loops as
//! the reference.

use super::schedule::Geom;
use crate::ir::{requantize, Conv, Program};
use crate::ops::mem::read_i32;
use crate::ops::native_gemm::{gemm, threads_for, Panel, MR, NR};

/// The valid taps `k0..k1` of a window starting at input position `start`
/// (possibly negative) with `k` taps `d` apart over an axis of `n` positions.
fn taps(start: isize, k: usize, d: usize, n: usize) -> (usize, usize) {
    let d = d as isize;
    let k0 = if start < 0 { (-start + d - 1) / d } else { 0 };
    let room = n as isize - start;
    let k1 = if room > 0 {
        ((room + d - 1) / d).min(k as isize)
    } else {
        0
    };
    (k0 as usize, k1.max(k0) as usize)
}

/// Output channels `oc0..` into `out` (whole `OH x OW` planes), reading
/// the memory image `mem`.
fn planes(op: &Conv, p: &Program, g: &Geom, mem: &[u8], oc0: usize, out: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (inp, wt, r) = (t(op.input), t(op.weight), &op.requant);
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dil;
    // Per kernel column: the output columns x0..x1 whose input column
    // x * sw + off lies inside the input.
    let cols: Vec<(usize, usize, usize)> = (0..g.kw)
        .map(|kx| {
            let base = (kx * dw) as isize - g.pad[1] as isize;
            let x0 = if base < 0 { (-base) as usize } else { 0 }.div_ceil(sw);
            let room = g.w as isize - base;
            let x1 = if room > 0 {
                (room as usize).div_ceil(sw).min(g.ow)
            } else {
                0
            };
            if x0 >= x1 {
                (0, 0, 0)
            } else {
                (x0, x1, (base + (x0 * sw) as isize) as usize)
            }
        })
        .collect();
    let mut acc = vec![0i32; g.ow];
    for (i, plane) in out.chunks_mut(g.oh * g.ow).enumerate() {
        let oc = oc0 + i;
        let ch0 = oc / g.ocpg * g.cg;
        let bias = read_i32(mem, t(op.bias) + 4 * oc);
        let mul = read_i32(mem, t(r.multiplier) + 4 * oc);
        let shift = read_i32(mem, t(r.shift) + 4 * oc);
        for (y, row) in plane.chunks_mut(g.ow).enumerate() {
            acc.fill(bias);
            let iy0 = (y * sh) as isize - g.pad[0] as isize;
            let (ky0, ky1) = taps(iy0, g.kh, dh, g.h);
            for ic in 0..g.cg {
                let chan = inp + (ch0 + ic) * g.h * g.w;
                let wrow = wt + (oc * g.cg + ic) * g.kh * g.kw;
                for ky in ky0..ky1 {
                    let irow = &mem[chan + (iy0 + (ky * dh) as isize) as usize * g.w..][..g.w];
                    for (kx, &(x0, x1, off)) in cols.iter().enumerate() {
                        let wv = mem[wrow + ky * g.kw + kx] as i8 as i32;
                        let acc = &mut acc[x0..x1];
                        if sw == 1 {
                            for (a, v) in acc.iter_mut().zip(&irow[off..]) {
                                *a = a.wrapping_add(*v as i8 as i32 * wv);
                            }
                        } else {
                            for (a, v) in acc.iter_mut().zip(irow[off..].iter().step_by(sw)) {
                                *a = a.wrapping_add(*v as i8 as i32 * wv);
                            }
                        }
                    }
                }
            }
            for (o, a) in row.iter_mut().zip(&acc) {
                *o = requantize(*a, mul, shift, r.zero_point, r.lo, r.hi) as u8;
            }
        }
    }
}

/// The direct loops of the IR's definition (output channels split over
/// threads when the node is large): the reference of [`run_native`] in
/// tests and benchmarks.
pub fn run_reference(op: &Conv, p: &Program, mem: &mut [u8]) {
    let g = Geom::new(op, p);
    let plane = g.oh * g.ow;
    let mut out = vec![0u8; g.oc * plane];
    if out.is_empty() {
        return;
    }
    let macs = out.len() * g.per_oc();
    let threads = if macs < 1 << 20 {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(g.oc)
    };
    let src: &[u8] = mem;
    if threads <= 1 {
        planes(op, p, &g, src, 0, &mut out);
    } else {
        let per = g.oc.div_ceil(threads);
        std::thread::scope(|s| {
            for (i, chunk) in out.chunks_mut(per * plane).enumerate() {
                let g = &g;
                s.spawn(move || planes(op, p, g, src, i * per, chunk));
            }
        });
    }
    let at = p.tensors[op.output].offset as usize;
    mem[at..at + out.len()].copy_from_slice(&out);
}

/// The patches of group `grp`: one row per output pixel `(y, x)`, the
/// `cg * kh * kw` input values under the window (zero outside the input).
fn patches(op: &Conv, p: &Program, g: &Geom, mem: &[u8], grp: usize) -> Panel {
    let inp = p.tensors[op.input].offset as usize + grp * g.cg * g.h * g.w;
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dil;
    let per = g.per_oc();
    // Per kernel column kx, the output columns x0..x1 inside the input and
    // the input column of x0 (as in `planes`).
    let cols: Vec<(usize, usize, usize)> = (0..g.kw)
        .map(|kx| {
            let base = (kx * dw) as isize - g.pad[1] as isize;
            let x0 = if base < 0 { (-base) as usize } else { 0 }.div_ceil(sw);
            let room = g.w as isize - base;
            let x1 = if room > 0 {
                (room as usize).div_ceil(sw).min(g.ow)
            } else {
                0
            };
            if x0 >= x1 {
                (0, 0, 0)
            } else {
                (x0, x1, (base + (x0 * sw) as isize) as usize)
            }
        })
        .collect();
    let mut panel = Panel::new(g.oh * g.ow, per, MR, |_, _| {});
    for y in 0..g.oh {
        let iy0 = (y * sh) as isize - g.pad[0] as isize;
        let (ky0, ky1) = taps(iy0, g.kh, dh, g.h);
        for ic in 0..g.cg {
            let chan = inp + ic * g.h * g.w;
            for ky in ky0..ky1 {
                let irow = &mem[chan + (iy0 + (ky * dh) as isize) as usize * g.w..][..g.w];
                for (kx, &(x0, x1, off)) in cols.iter().enumerate() {
                    let col = (ic * g.kh + ky) * g.kw + kx;
                    for (x, v) in (x0..x1).zip(irow[off..].iter().step_by(sw)) {
                        panel.set(y * g.ow + x, col, i16::from(*v as i8));
                    }
                }
            }
        }
    }
    panel
}

/// The whole convolution on the memory image.
pub fn run_native(op: &Conv, p: &Program, mem: &mut [u8]) {
    let g = Geom::new(op, p);
    let plane = g.oh * g.ow;
    if g.oc * plane == 0 {
        return;
    }
    if g.cg == 1 && g.ocpg < NR {
        return run_depthwise(op, p, &g, mem);
    }
    let t = |id: usize| p.tensors[id].offset as usize;
    let (wt, r) = (t(op.weight), &op.requant);
    let per = g.per_oc();
    let out = t(op.output);
    // Every group reads the input before any output is written.
    let sums: Vec<_> = (0..g.group)
        .map(|grp| {
            let a = patches(op, p, &g, mem, grp);
            let w = Panel::from_i8(mem, wt + grp * g.ocpg * per, g.ocpg, per, per, 1, NR);
            let macs = (plane * g.ocpg * per) as u64;
            gemm(&a, &w, threads_for(macs, g.ocpg.div_ceil(NR)))
        })
        .collect();
    for (grp, sums) in sums.iter().enumerate() {
        let oc0 = grp * g.ocpg;
        for j in 0..g.ocpg {
            let oc = oc0 + j;
            let bias = read_i32(mem, t(op.bias) + 4 * oc);
            let mul = read_i32(mem, t(r.multiplier) + 4 * oc);
            let shift = read_i32(mem, t(r.shift) + 4 * oc);
            let dst = &mut mem[out + oc * plane..out + (oc + 1) * plane];
            for (o, s) in dst.iter_mut().zip(sums.column(j)) {
                let acc = bias.wrapping_add(*s);
                *o = requantize(acc, mul, shift, r.zero_point, r.lo, r.hi) as u8;
            }
        }
    }
}

/// Depthwise convolutions (one input channel per group, fewer output
/// channels per group than one GEMM block): per output channel, its input
/// plane zero-padded once, then one pass over each output row per tap (no
/// bounds inside, contiguous for stride 1). A GEMM per group would pack
/// patches for a single output column.
fn run_depthwise(op: &Conv, p: &Program, g: &Geom, mem: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (inp, wt, r) = (t(op.input), t(op.weight), &op.requant);
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dil;
    let (pt, pl) = (g.pad[0], g.pad[1]);
    // The padded rows and columns the outputs reach.
    let ph = (g.oh - 1) * sh + (g.kh - 1) * dh + 1;
    let pw = (g.ow - 1) * sw + (g.kw - 1) * dw + 1;
    let mut padded = vec![0i32; ph * pw];
    let mut out = vec![0u8; g.oc * g.oh * g.ow];
    let mut acc = vec![0i32; g.ow];
    for (oc, plane) in out.chunks_mut(g.oh * g.ow).enumerate() {
        let chan = inp + (oc / g.ocpg) * g.h * g.w;
        padded.fill(0);
        for iy in 0..g.h.min(ph.saturating_sub(pt)) {
            let row = &mem[chan + iy * g.w..][..g.w];
            let dst = &mut padded[(iy + pt) * pw..][..pw];
            for (d, v) in dst.iter_mut().skip(pl).zip(row) {
                *d = i32::from(*v as i8);
            }
        }
        let w = &mem[wt + oc * g.kh * g.kw..][..g.kh * g.kw];
        let bias = read_i32(mem, t(op.bias) + 4 * oc);
        let mul = read_i32(mem, t(r.multiplier) + 4 * oc);
        let shift = read_i32(mem, t(r.shift) + 4 * oc);
        for (y, orow) in plane.chunks_mut(g.ow).enumerate() {
            acc.fill(bias);
            for ky in 0..g.kh {
                let prow = &padded[(y * sh + ky * dh) * pw..][..pw];
                for kx in 0..g.kw {
                    let wv = i32::from(w[ky * g.kw + kx] as i8);
                    let from = &prow[kx * dw..];
                    if sw == 1 {
                        for (a, v) in acc.iter_mut().zip(from) {
                            *a = a.wrapping_add(v.wrapping_mul(wv));
                        }
                    } else {
                        for (a, v) in acc.iter_mut().zip(from.iter().step_by(sw)) {
                            *a = a.wrapping_add(v.wrapping_mul(wv));
                        }
                    }
                }
            }
            for (o, a) in orow.iter_mut().zip(&acc) {
                *o = requantize(*a, mul, shift, r.zero_point, r.lo, r.hi) as u8;
            }
        }
    }
    let at = t(op.output);
    mem[at..at + out.len()].copy_from_slice(&out);
}
