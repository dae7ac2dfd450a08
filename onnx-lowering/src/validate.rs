//! Checks that a [`Program`] is well formed: every tensor id in range,
//! shapes and types consistent with each op's spec, parameters within the
//! IR's bounds, tensors inside memory, and the requantization constants
//! (read from the initial memory image) in range. A program read from disk
//! is hostile input: [`Program::validate`] runs before any engine touches it,
//! so the native kernels can index memory without further checks.

use crate::error::LowerError;
use crate::ir::{DType, Op, Program, Requant, TensorId};
use crate::ops::mem::read_i32;

fn eps_u128(e: i32) -> u128 {
    u128::from(e.unsigned_abs())
}

fn bad(node: &str, what: impl std::fmt::Display) -> LowerError {
    LowerError::InvalidProgram(format!("node {node}: {what}"))
}

/// Output size of a convolution or pooling window along one axis.
pub fn window_out(
    input: u32,
    kernel: u32,
    stride: u32,
    pad_a: u32,
    pad_b: u32,
    dilation: u32,
) -> Option<u32> {
    let span = dilation
        .checked_mul(kernel.checked_sub(1)?)?
        .checked_add(1)?;
    let padded = input.checked_add(pad_a)?.checked_add(pad_b)?;
    if stride == 0 || padded < span {
        return None;
    }
    Some((padded - span) / stride + 1)
}

impl Program {
    /// Validates the program against its initial memory image.
    pub fn validate(&self, image: &[u8]) -> Result<(), LowerError> {
        let mem = image.len() as u64;
        for t in &self.tensors {
            let elems = t
                .shape
                .iter()
                .try_fold(1u64, |a, d| a.checked_mul(u64::from(*d)));
            let end = elems
                .and_then(|e| e.checked_mul(u64::from(t.dtype.size())))
                .and_then(|b| b.checked_add(u64::from(t.offset)));
            if end.is_none_or(|e| e > mem) {
                return Err(LowerError::InvalidProgram(format!(
                    "tensor {} lies outside memory",
                    t.name
                )));
            }
        }
        for &id in self.inputs.iter().chain(&self.outputs) {
            self.get(id, "program", "input/output")?;
        }
        for c in &self.constants {
            let t = self.get(c.tensor, "program", "constant")?;
            if !c.bytes.is_empty() && c.bytes.len() != t.bytes() as usize {
                return Err(LowerError::InvalidProgram(format!(
                    "constant {} has the wrong size",
                    t.name
                )));
            }
        }
        if self.nodes.is_empty() {
            return Err(LowerError::InvalidProgram("program has no nodes".into()));
        }
        for n in &self.nodes {
            self.validate_op(&n.name, &n.op, image)?;
        }
        Ok(())
    }

    fn get(&self, id: TensorId, node: &str, what: &str) -> Result<&crate::ir::Tensor, LowerError> {
        self.tensors
            .get(id)
            .ok_or_else(|| bad(node, format!("{what} tensor {id} does not exist")))
    }

    fn expect(
        &self,
        node: &str,
        what: &str,
        id: TensorId,
        dtype: DType,
        len: u64,
    ) -> Result<(), LowerError> {
        let t = self.get(id, node, what)?;
        if t.dtype != dtype || u64::from(t.len()) != len {
            return Err(bad(
                node,
                format!(
                    "{what} {} must be {dtype:?} with {len} elements, is {:?} {:?}",
                    t.name, t.dtype, t.shape
                ),
            ));
        }
        Ok(())
    }

    fn expect_requant(
        &self,
        node: &str,
        r: &Requant,
        channels: u64,
        image: &[u8],
    ) -> Result<(), LowerError> {
        self.expect(node, "multiplier", r.multiplier, DType::I32, channels)?;
        self.expect(node, "shift", r.shift, DType::I32, channels)?;
        if !(-128..=127).contains(&r.lo) || !(-128..=127).contains(&r.hi) || r.lo > r.hi {
            return Err(bad(
                node,
                format!("clamp {}..={} is not an i8 range", r.lo, r.hi),
            ));
        }
        if !(-128..=127).contains(&r.zero_point) {
            return Err(bad(node, "zero point outside i8"));
        }
        let (m, s) = (
            self.tensors[r.multiplier].offset as usize,
            self.tensors[r.shift].offset as usize,
        );
        for c in 0..channels as usize {
            if read_i32(image, m + 4 * c) < 0 || !(1..=62).contains(&read_i32(image, s + 4 * c)) {
                return Err(bad(
                    node,
                    format!("requantization of channel {c} out of range"),
                ));
            }
        }
        Ok(())
    }

    fn validate_op(&self, node: &str, op: &Op, image: &[u8]) -> Result<(), LowerError> {
        let shape = |id: TensorId, what: &str| -> Result<Vec<u64>, LowerError> {
            Ok(self
                .get(id, node, what)?
                .shape
                .iter()
                .map(|d| u64::from(*d))
                .collect())
        };
        match op {
            Op::MatMul(o) => {
                let (m, k, n) = (u64::from(o.m), u64::from(o.k), u64::from(o.n));
                if k == 0 || m == 0 || n == 0 || k * 127 * 127 > i32::MAX as u64 / 2 {
                    return Err(bad(node, "matmul dimensions out of range"));
                }
                let (ar, ac) = (u64::from(o.a_row), u64::from(o.a_col));
                let (or, oc) = (u64::from(o.o_row), u64::from(o.o_col));
                // `a` is read inside its M*K elements.
                if (m - 1) * ar + (k - 1) * ac >= m * k {
                    return Err(bad(node, "matmul input strides leave the tensor"));
                }
                // `out` is row-major or column-major: every element once.
                let dense = |r: u64, c: u64| (m == 1 || or == r) && (n == 1 || oc == c);
                if !dense(n, 1) && !dense(1, m) {
                    return Err(bad(node, "matmul output strides are not a dense layout"));
                }
                let narrow = |id| -> Result<DType, LowerError> {
                    let dt = self.get(id, node, "matmul operand")?.dtype;
                    Ok(if dt == DType::I16 { dt } else { DType::I8 })
                };
                let (da, dout) = (narrow(o.a)?, narrow(o.output)?);
                self.expect(node, "input", o.a, da, m * k)?;
                self.expect(node, "weight", o.w, DType::I8, n * k)?;
                self.expect(node, "bias", o.bias, DType::I32, n)?;
                self.expect(node, "output", o.output, dout, m * n)?;
                if dout == DType::I16 {
                    let mut r = o.requant.clone();
                    let ok = (-32768..=32767).contains(&r.lo) && (-32768..=32767).contains(&r.hi);
                    if !ok || r.lo > r.hi {
                        return Err(bad(node, "clamp is not an i16 range"));
                    }
                    // The rest of the requantization as for an i8 output.
                    (r.lo, r.hi) = (-128, 127);
                    return self.expect_requant(node, &r, n, image);
                }
                self.expect_requant(node, &o.requant, n, image)
            }
            Op::Conv(o) => {
                let (i, w) = (shape(o.input, "input")?, shape(o.weight, "weight")?);
                let out = shape(o.output, "output")?;
                if i.len() != 4 || w.len() != 4 || out.len() != 4 || i[0] != 1 || out[0] != 1 {
                    return Err(bad(node, "conv tensors must be 4-D with batch 1"));
                }
                let g = u64::from(o.group);
                if g == 0 || i[1] % g != 0 || w[0] % g != 0 || w[1] * g != i[1] || out[1] != w[0] {
                    return Err(bad(node, "conv channels and groups do not match"));
                }
                let oh = window_out(
                    i[2] as u32,
                    w[2] as u32,
                    o.stride[0],
                    o.pad[0],
                    o.pad[2],
                    o.dilation[0],
                );
                let ow = window_out(
                    i[3] as u32,
                    w[3] as u32,
                    o.stride[1],
                    o.pad[1],
                    o.pad[3],
                    o.dilation[1],
                );
                if oh.map(u64::from) != Some(out[2])
                    || ow.map(u64::from) != Some(out[3])
                    || o.dilation.contains(&0)
                {
                    return Err(bad(
                        node,
                        "conv output shape does not follow from input, kernel and strides",
                    ));
                }
                if w[1] * w[2] * w[3] * 127 * 127 > i32::MAX as u64 / 2 {
                    return Err(bad(node, "conv reduction too long for i32 accumulation"));
                }
                self.expect(node, "input", o.input, DType::I8, i.iter().product())?;
                self.expect(node, "weight", o.weight, DType::I8, w.iter().product())?;
                self.expect(node, "bias", o.bias, DType::I32, w[0])?;
                self.expect(node, "output", o.output, DType::I8, out.iter().product())?;
                self.expect_requant(node, &o.requant, w[0], image)
            }
            Op::MaxPool(o) => {
                let (i, out) = (shape(o.input, "input")?, shape(o.output, "output")?);
                if i.len() != 4 || out.len() != 4 || i[0] != 1 || out[0] != 1 || i[1] != out[1] {
                    return Err(bad(
                        node,
                        "maxpool tensors must be 4-D with batch 1 and equal channels",
                    ));
                }
                if o.pad[0] >= o.kernel[0]
                    || o.pad[2] >= o.kernel[0]
                    || o.pad[1] >= o.kernel[1]
                    || o.pad[3] >= o.kernel[1]
                {
                    return Err(bad(node, "maxpool padding must be smaller than the kernel"));
                }
                let oh = window_out(i[2] as u32, o.kernel[0], o.stride[0], o.pad[0], o.pad[2], 1);
                let ow = window_out(i[3] as u32, o.kernel[1], o.stride[1], o.pad[1], o.pad[3], 1);
                if oh.map(u64::from) != Some(out[2]) || ow.map(u64::from) != Some(out[3]) {
                    return Err(bad(
                        node,
                        "maxpool output shape does not follow from input and kernel",
                    ));
                }
                self.expect(node, "input", o.input, DType::I8, i.iter().product())?;
                self.expect(node, "output", o.output, DType::I8, out.iter().product())
            }
            Op::Add(o) => {
                let n = u64::from(self.get(o.output, node, "output")?.len());
                self.expect(node, "a", o.a, DType::I8, n)?;
                self.expect(node, "b", o.b, DType::I8, n)?;
                self.expect(node, "output", o.output, DType::I8, n)?;
                if !(1..=62).contains(&o.shift)
                    || o.lo > o.hi
                    || !(-128..=127).contains(&o.lo)
                    || !(-128..=127).contains(&o.hi)
                {
                    return Err(bad(node, "add shift or clamp out of range"));
                }
                Ok(())
            }
            Op::ChannelMul(o) => {
                let (c, p) = (u64::from(o.channels), u64::from(o.inner));
                if c == 0 || p == 0 || c * p > u64::from(u32::MAX) {
                    return Err(bad(node, "channel_mul dimensions out of range"));
                }
                self.expect(node, "a", o.a, DType::I8, c * p)?;
                self.expect(node, "scale", o.scale, DType::I8, c)?;
                self.expect(node, "output", o.output, DType::I8, c * p)?;
                if o.multiplier < 0
                    || !(1..=62).contains(&o.shift)
                    || o.lo > o.hi
                    || !(-128..=127).contains(&o.lo)
                    || !(-128..=127).contains(&o.hi)
                    || !(-128..=127).contains(&o.zero_point)
                {
                    return Err(bad(node, "channel_mul requantization out of range"));
                }
                Ok(())
            }
            Op::Softmax(o) => {
                let (r, l) = (u64::from(o.rows), u64::from(o.len));
                if r == 0 || l == 0 || l > 1 << 20 || r * l > u64::from(u32::MAX) {
                    return Err(bad(node, "softmax dimensions out of range"));
                }
                self.expect(node, "input", o.input, DType::I8, r * l)?;
                self.expect(node, "output", o.output, DType::I8, r * l)?;
                self.expect(node, "table", o.table, DType::I32, 256)?;
                let at = self.tensors[o.table].offset as usize;
                let entries: Vec<i32> = (0..256).map(|d| read_i32(image, at + 4 * d)).collect();
                if entries[0] < 1 || entries.iter().any(|e| !(0..=1 << 24).contains(e)) {
                    return Err(bad(node, "softmax table entries out of range"));
                }
                Ok(())
            }
            Op::Gather(o) => {
                let (n, w, rows) = (u64::from(o.n), u64::from(o.width), u64::from(o.rows));
                if n == 0 || w == 0 || rows == 0 || rows > i32::MAX as u64 {
                    return Err(bad(node, "gather dimensions out of range"));
                }
                self.expect(node, "table", o.table, DType::I8, rows * w)?;
                self.expect(node, "indices", o.indices, DType::I32, n)?;
                self.expect(node, "output", o.output, DType::I8, n * w)
            }
            Op::LayerNorm(o) => {
                let (r, l) = (u64::from(o.rows), u64::from(o.len));
                if r == 0 || l == 0 || l > 1 << 16 || r * l > u64::from(u32::MAX) {
                    return Err(bad(node, "layer_norm dimensions out of range"));
                }
                let wide = self.get(o.output, node, "output")?.dtype == DType::I16;
                let dt = if wide { DType::I16 } else { DType::I8 };
                for (what, id) in [("a", o.a), ("b", o.b), ("output", o.output)] {
                    self.expect(node, what, id, dt, r * l)?;
                }
                self.expect(node, "gamma", o.gamma, DType::I32, l)?;
                self.expect(node, "beta", o.beta, DType::I32, l)?;
                if o.eps < 0 || !(1..=30).contains(&o.k) {
                    return Err(bad(node, "layer_norm eps or k out of range"));
                }
                // sum d^2 + eps < 2^62 for every input, so that the square
                // root is below 2^31 and S * 2^k never wraps to 0.
                self.expect(node, "wa", o.wa, DType::I32, l)?;
                self.expect(node, "wb", o.wb, DType::I32, l)?;
                let (pa, pb) = (
                    self.tensors[o.wa].offset as usize,
                    self.tensors[o.wb].offset as usize,
                );
                // |d[l]| = |(len - 1) x[l] - sum_{m != l} x[m]| <= 128 (len
                // c[l] + C) with c = |wa| + |wb| and C = sum_m c[m].
                let c: Vec<u128> = (0..l as usize)
                    .map(|c| {
                        u128::from(read_i32(image, pa + 4 * c).unsigned_abs())
                            + u128::from(read_i32(image, pb + 4 * c).unsigned_abs())
                    })
                    .collect();
                let total: u128 = c.iter().sum();
                let l = u128::from(o.len);
                if wide {
                    // The i16 variant rounds d before squaring: only |d[l]|
                    // <= 32768 (len c[l] + C) < 2^61 is needed.
                    let cmax = c.iter().copied().max().unwrap_or(0);
                    if 32768 * (l * cmax + total) >= 1 << 61 {
                        return Err(bad(node, "layer_norm weights too large for i64"));
                    }
                    return Ok(());
                }
                let var: u128 = c
                    .iter()
                    .map(|c| {
                        let d = 128 * (l * c + total);
                        d * d
                    })
                    .sum();
                if var + eps_u128(o.eps) >= 1 << 62 {
                    return Err(bad(node, "layer_norm weights too large for i64"));
                }
                Ok(())
            }
            Op::ActMatMul(o) => {
                let (b, m, n, k) = (
                    u64::from(o.batch),
                    u64::from(o.m),
                    u64::from(o.n),
                    u64::from(o.k),
                );
                if b == 0 || m == 0 || n == 0 || k == 0 || k > 1 << 16 {
                    return Err(bad(node, "act_matmul dimensions out of range"));
                }
                let reach = |st: [u32; 3], dims: [u64; 3]| -> u64 {
                    st.iter()
                        .zip(dims)
                        .map(|(s, d)| u64::from(*s) * (d - 1))
                        .sum::<u64>()
                        + 1
                };
                // i8 operands with an i8 or i32 output, or i16 operands
                // with an i16 or i32 output.
                let half = self.get(o.a, node, "a")?.dtype == DType::I16;
                let len = |id: TensorId, what: &str| -> Result<u64, LowerError> {
                    let t = self.get(id, node, what)?;
                    if half {
                        if t.dtype != DType::I16 && !(what == "output" && t.dtype == DType::I32) {
                            return Err(bad(node, format!("{what} must be i16")));
                        }
                    } else if t.dtype != DType::I8 && !(what == "output" && t.dtype == DType::I32) {
                        return Err(bad(node, format!("{what} must be i8")));
                    }
                    Ok(u64::from(t.len()))
                };
                if reach(o.a_stride, [b, m, k]) > len(o.a, "a")?
                    || reach(o.b_stride, [b, n, k]) > len(o.b, "b")?
                {
                    return Err(bad(node, "act_matmul operand strides leave the tensor"));
                }
                // The output strides must be a mixed radix of [b, m, n].
                let mut axes: Vec<(u64, u64)> = o
                    .o_stride
                    .iter()
                    .zip([b, m, n])
                    .filter(|(_, d)| *d > 1)
                    .map(|(s, d)| (u64::from(*s), d))
                    .collect();
                axes.sort();
                let mut expect = 1u64;
                for (s, d) in axes {
                    if s != expect {
                        return Err(bad(node, "act_matmul output strides are not a layout"));
                    }
                    expect *= d;
                }
                if expect != len(o.output, "output")? {
                    return Err(bad(node, "act_matmul output size"));
                }
                if o.multiplier < 0 || !(1..=62).contains(&o.shift) {
                    return Err(bad(node, "act_matmul requantization out of range"));
                }
                Ok(())
            }
            Op::MaskedSoftmax(o) => {
                let (r, l) = (u64::from(o.rows), u64::from(o.len));
                if r == 0 || l == 0 || l > 1 << 20 || r * l > u64::from(u32::MAX) {
                    return Err(bad(node, "masked_softmax dimensions out of range"));
                }
                let wide = self.get(o.input, node, "input")?.dtype == DType::I32;
                let dt = if wide { DType::I32 } else { DType::I8 };
                self.expect(node, "input", o.input, dt, r * l)?;
                let half = self.get(o.output, node, "output")?.dtype == DType::I16;
                let dout = if half { DType::I16 } else { DType::I8 };
                self.expect(node, "output", o.output, dout, r * l)?;
                self.expect(node, "mask", o.mask, DType::I32, l)?;
                if o.multiplier < 0 || !(0..=54).contains(&o.shift) || o.dmax < 0 {
                    return Err(bad(node, "masked_softmax index scaling out of range"));
                }
                // 257 knots: the interpolated table of the i16 output.
                let knots = if half && self.get(o.table, node, "table")?.len() == 257 {
                    257
                } else {
                    256
                };
                self.expect(node, "table", o.table, DType::I32, knots)?;
                let at = self.tensors[o.table].offset as usize;
                if (0..knots as usize)
                    .any(|d| !(0..=1 << 24).contains(&read_i32(image, at + 4 * d)))
                {
                    return Err(bad(node, "softmax table entries out of range"));
                }
                Ok(())
            }
            Op::Lut(o) => {
                let n = u64::from(self.get(o.output, node, "output")?.len());
                self.expect(node, "input", o.input, DType::I8, n)?;
                self.expect(node, "output", o.output, DType::I8, n)?;
                self.expect(node, "table", o.table, DType::I8, 256)
            }
            Op::ColAdd(o) => {
                let (r, l) = (u64::from(o.rows), u64::from(o.len));
                if r == 0 || l == 0 || r * l > u64::from(u32::MAX) {
                    return Err(bad(node, "col_add dimensions out of range"));
                }
                for (what, id) in [("a", o.a), ("b", o.b)] {
                    self.expect(node, what, id, DType::I8, r * l)?;
                }
                let wide = self.get(o.output, node, "output")?.dtype == DType::I16;
                let dt = if wide { DType::I16 } else { DType::I8 };
                self.expect(node, "output", o.output, dt, r * l)?;
                for (what, id) in [
                    ("a multiplier", o.a_multiplier),
                    ("b multiplier", o.b_multiplier),
                    ("shift", o.shift),
                ] {
                    self.expect(node, what, id, DType::I32, l)?;
                }
                let at = self.tensors[o.shift].offset as usize;
                if (0..l as usize).any(|c| !(1..=62).contains(&read_i32(image, at + 4 * c))) {
                    return Err(bad(node, "col_add shift out of range"));
                }
                let range = if wide { -32768..=32767 } else { -128..=127 };
                if !range.contains(&o.lo) || !range.contains(&o.hi) || o.lo > o.hi {
                    return Err(bad(node, "col_add clamp is not in the output's type"));
                }
                Ok(())
            }
            Op::ProductSum(o) => {
                let n = u64::from(o.n);
                let narrow = |id| -> Result<DType, LowerError> {
                    let dt = self.get(id, node, "product_sum operand")?.dtype;
                    Ok(if dt == DType::I16 { dt } else { DType::I8 })
                };
                for (what, id) in [("a", o.a), ("b", o.b), ("c", o.c), ("d", o.d)] {
                    self.expect(node, what, id, narrow(id)?, n)?;
                }
                let dout = narrow(o.output)?;
                self.expect(node, "output", o.output, dout, n)?;
                let top = if dout == DType::I16 { 32767 } else { 127 };
                let in_type = |v: i32| (-top - 1..=top).contains(&v);
                if n == 0
                    || o.a_multiplier == i32::MIN
                    || o.c_multiplier == i32::MIN
                    || !(1..=62).contains(&o.shift)
                    || !in_type(o.lo)
                    || !in_type(o.hi)
                    || o.lo > o.hi
                {
                    return Err(bad(node, "product_sum rescaling or clamp out of range"));
                }
                Ok(())
            }
            Op::Rearrange(o) => crate::ops::rearrange::validate(self, node, o),
            Op::Binary(o) => crate::ops::binary::validate(self, node, o),
            Op::AvgPool(o) => crate::ops::avg_pool::validate(self, node, o, image),
            Op::Interp(o) => {
                let n = u64::from(self.get(o.output, node, "output")?.len());
                self.expect(node, "input", o.input, DType::I16, n)?;
                self.expect(node, "output", o.output, DType::I16, n)?;
                self.expect(node, "table", o.table, DType::I32, 1025)?;
                let ok = (-32768..=32767).contains(&o.lo) && (-32768..=32767).contains(&o.hi);
                if !ok || o.lo > o.hi {
                    return Err(bad(node, "interp clamp is not an i16 range"));
                }
                Ok(())
            }
        }
    }
}
