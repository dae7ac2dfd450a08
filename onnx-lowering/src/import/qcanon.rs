//! Pre-quantized ONNX models brought to one canonical form, on the
//! protobuf, before tract reads it.
//!
//! * QOperator ops become `DequantizeLinear` -> float op -> `QuantizeLinear`:
//!   `QLinearConv`, `QLinearMatMul` and `com.microsoft.QGemm` (the `i32`
//!   bias dequantized with the scale `s_x * s_w[c]`, computed in `f32` as
//!   onnxruntime does).
//! * Dynamic quantization (`DynamicQuantizeLinear` -> `MatMulInteger` /
//!   `ConvInteger` -> `Cast` -> `Mul` by `s_x * s_w`) becomes the float
//!   `MatMul` / `Conv` of the unquantized input with the dequantized
//!   weights: its activation scales are computed at run time from the
//!   data, which a fixed integer program cannot do, so they are calibrated
//!   like a float model's.
//! * Constant weights, `DequantizeLinear(int8 initializer)` and
//!   `Mul(Cast(int8 initializer), scale initializer)`, are folded to `f32`
//!   initializers here (`f32((q - zp) * s)`, the value onnxruntime
//!   computes; tract does not fold large ones), and their scales are
//!   recorded as [`WeightScales`], with which [`super::prequant`] finds the
//!   int8 values back in the lowered weights.
//!
//! Activation `QuantizeLinear` / `DequantizeLinear` stay (tract reads them
//! as element-wise ops); their scale and zero point must be constant
//! initializers, per tensor, and the zero point `0` (`int8`) or `128`
//! (`uint8`, the same values shifted by 128): anything else is
//! [`LowerError::Unsupported`] naming the node.

use crate::error::LowerError;
use std::collections::HashMap;
use tract_onnx::pb::{self, attribute_proto::AttributeType, tensor_proto::DataType};

/// The per-channel scales of one constant int8 weight of `len` elements
/// (one scale for a per-tensor weight).
#[derive(Clone, Debug, PartialEq)]
pub struct WeightScales {
    pub len: usize,
    pub scales: Vec<f32>,
}

fn unsupported(n: &pb::NodeProto, reason: impl Into<String>) -> LowerError {
    let op = if n.domain.is_empty() || n.domain == "ai.onnx" {
        n.op_type.clone()
    } else {
        format!("{}.{}", n.domain, n.op_type)
    };
    LowerError::Unsupported {
        node: n.name.clone(),
        op,
        reason: reason.into(),
    }
}

/// The integer values of an integer tensor.
fn ints(t: &pb::TensorProto) -> Option<Vec<i64>> {
    let raw = &t.raw_data;
    let dt = DataType::try_from(t.data_type).ok()?;
    let v: Vec<i64> = match dt {
        DataType::Int8 if !raw.is_empty() => raw.iter().map(|b| i64::from(*b as i8)).collect(),
        DataType::Uint8 if !raw.is_empty() => raw.iter().map(|b| i64::from(*b)).collect(),
        DataType::Int32 if !raw.is_empty() => raw
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        DataType::Int8 | DataType::Uint8 | DataType::Int32 => {
            t.int32_data.iter().map(|v| i64::from(*v)).collect()
        }
        _ => return None,
    };
    (v.len() as u64 == elements(t)).then_some(v)
}

/// The values of an `f32` tensor.
fn floats(t: &pb::TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::Float as i32 {
        return None;
    }
    let v: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    (v.len() as u64 == elements(t)).then_some(v)
}

fn elements(t: &pb::TensorProto) -> u64 {
    t.dims
        .iter()
        .fold(1u64, |a, d| a.saturating_mul((*d).max(0) as u64))
}

fn f32_tensor(name: &str, dims: &[i64], v: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, name: String, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name,
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn with_axis(mut n: pb::NodeProto, axis: i64) -> pb::NodeProto {
    n.attribute.push(pb::AttributeProto {
        name: "axis".into(),
        r#type: AttributeType::Int as i32,
        i: axis,
        ..Default::default()
    });
    n
}

fn attr_i(n: &pb::NodeProto, name: &str, default: i64) -> i64 {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.i)
}

/// Input `i` of `n`, if present and not empty.
fn input(n: &pb::NodeProto, i: usize) -> Option<&str> {
    n.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
}

struct Canon<'a> {
    g: &'a mut pb::GraphProto,
    inits: HashMap<String, usize>,
}

impl Canon<'_> {
    fn init(&self, name: &str) -> Option<&pb::TensorProto> {
        self.inits.get(name).map(|i| &self.g.initializer[*i])
    }

    fn add_init(&mut self, t: pb::TensorProto) {
        self.inits.insert(t.name.clone(), self.g.initializer.len());
        self.g.initializer.push(t);
    }

    /// The `f32` values of initializer `name`, or an error naming `n`.
    fn scale(&self, n: &pb::NodeProto, name: Option<&str>) -> Result<Vec<f32>, LowerError> {
        let s = name
            .and_then(|s| self.init(s))
            .and_then(floats)
            .ok_or_else(|| unsupported(n, "a scale that is not a constant f32 initializer"))?;
        if s.is_empty() || s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(unsupported(n, "a scale that is not finite and positive"));
        }
        Ok(s)
    }

    /// The bias of a QOperator op dequantized with `s_x * s_w[c]`: a new
    /// scale initializer and the `DequantizeLinear` node.
    fn bias(
        &mut self,
        n: &pb::NodeProto,
        bias: &str,
        sx: Option<&str>,
        sw: Option<&str>,
    ) -> Result<(pb::NodeProto, String), LowerError> {
        let (sx, sw) = (self.scale(n, sx)?, self.scale(n, sw)?);
        if sx.len() != 1 {
            return Err(unsupported(n, "a per-axis input scale"));
        }
        let bs: Vec<f32> = sw.iter().map(|w| sx[0] * w).collect();
        let sname = format!("{}/bias_scale", n.name);
        self.add_init(f32_tensor(&sname, &[bs.len() as i64], &bs));
        let out = format!("{}/bias_f", n.name);
        let dq = node(
            "DequantizeLinear",
            format!("{}.bias", n.name),
            &[bias, &sname],
            &out,
        );
        Ok((with_axis(dq, 0), out))
    }

    /// `DequantizeLinear(x, s, zp)` of input `x` of `n` into a new tensor;
    /// per-axis on `axis` when `s` has several values.
    fn dq(
        &self,
        n: &pb::NodeProto,
        tag: &str,
        x: usize,
        s: usize,
        zp: usize,
        axis: i64,
    ) -> (pb::NodeProto, String) {
        let out = format!("{}/{tag}_f", n.name);
        let mut ins = vec![input(n, x).unwrap_or(""), input(n, s).unwrap_or("")];
        if let Some(z) = input(n, zp) {
            ins.push(z);
        }
        let per_axis = input(n, s)
            .and_then(|s| self.init(s))
            .is_some_and(|t| elements(t) > 1);
        let d = node("DequantizeLinear", format!("{}.{tag}", n.name), &ins, &out);
        (if per_axis { with_axis(d, axis) } else { d }, out)
    }

    /// One QOperator node as DequantizeLinear -> float op -> QuantizeLinear.
    fn qoperator(&mut self, n: &pb::NodeProto) -> Result<Option<Vec<pb::NodeProto>>, LowerError> {
        let ms = n.domain == "com.microsoft";
        let (float_op, w_axis, bias_ix, y) = match (n.op_type.as_str(), ms) {
            ("QLinearConv", false) => ("Conv", 0, Some(8), Some((6, 7))),
            ("QLinearMatMul", false) => ("MatMul", -1, None, Some((6, 7))),
            ("QGemm", true) => {
                let axis = if attr_i(n, "transB", 0) != 0 { 0 } else { 1 };
                ("Gemm", axis, Some(6), input(n, 7).map(|_| (7, 8)))
            }
            _ => return Ok(None),
        };
        let (dx, x) = self.dq(n, "x", 0, 1, 2, 1);
        let (dw, w) = self.dq(n, "w", 3, 4, 5, w_axis);
        let mut nodes = vec![dx, dw];
        let mut ins = vec![x.clone(), w.clone()];
        if let Some(b) = bias_ix.and_then(|i| input(n, i)) {
            let (db, bf) = self.bias(n, b, input(n, 1), input(n, 4))?;
            nodes.push(db);
            ins.push(bf);
        }
        let out = n.output.first().cloned().unwrap_or_default();
        let yf = if y.is_some() {
            format!("{}/y_f", n.name)
        } else {
            out.clone()
        };
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        let mut op = node(float_op, n.name.clone(), &ins, &yf);
        op.attribute = n
            .attribute
            .iter()
            .filter(|a| float_op != "MatMul" && a.name != "beta")
            .cloned()
            .collect();
        nodes.push(op);
        if let Some((s, z)) = y {
            let mut qi = vec![yf.as_str(), input(n, s).unwrap_or("")];
            if let Some(z) = input(n, z) {
                qi.push(z);
            }
            nodes.push(node("QuantizeLinear", format!("{}.y", n.name), &qi, &out));
        }
        Ok(Some(nodes))
    }

    /// Rewrites the QOperator nodes in place.
    fn rewrite_qoperators(&mut self) -> Result<(), LowerError> {
        let old = std::mem::take(&mut self.g.node);
        let mut nodes = Vec::with_capacity(old.len());
        for n in old {
            match self.qoperator(&n)? {
                Some(new) => nodes.extend(new),
                None => nodes.push(n),
            }
        }
        self.g.node = nodes;
        Ok(())
    }

    /// `DynamicQuantizeLinear` -> `MatMulInteger`/`ConvInteger` -> `Cast`
    /// -> `Mul(., Mul(s_x, s_w))` as the float op of the unquantized input
    /// and `DequantizeLinear(w, s_w)`.
    fn rewrite_dynamic(&mut self) {
        let consumers = |g: &pb::GraphProto, t: &str| -> Vec<usize> {
            (0..g.node.len())
                .filter(|i| g.node[*i].input.iter().any(|x| x == t))
                .collect()
        };
        let producer = |g: &pb::GraphProto, t: &str| {
            g.node.iter().position(|n| n.output.iter().any(|o| o == t))
        };
        let mut i = 0;
        while i < self.g.node.len() {
            let n = self.g.node[i].clone();
            i += 1;
            let float_op = match n.op_type.as_str() {
                "MatMulInteger" => "MatMul",
                "ConvInteger" => "Conv",
                _ => continue,
            };
            let (Some(a), Some(w)) = (input(&n, 0), input(&n, 1)) else {
                continue;
            };
            let Some(d) =
                producer(self.g, a).filter(|d| self.g.node[*d].op_type == "DynamicQuantizeLinear")
            else {
                continue;
            };
            let dq = self.g.node[d].clone();
            let out = n.output.first().cloned().unwrap_or_default();
            let [c] = consumers(self.g, &out)[..] else {
                continue;
            };
            let cast = self.g.node[c].clone();
            if cast.op_type != "Cast" || attr_i(&cast, "to", 0) != DataType::Float as i64 {
                continue;
            }
            let [m] = consumers(self.g, &cast.output[0])[..] else {
                continue;
            };
            let mul = self.g.node[m].clone();
            let Some(other) = mul.input.iter().find(|x| **x != cast.output[0]) else {
                continue;
            };
            let Some(s) = producer(self.g, other).filter(|s| self.g.node[*s].op_type == "Mul")
            else {
                continue;
            };
            let smul = self.g.node[s].clone();
            let Some(ws) = smul
                .input
                .iter()
                .find(|x| Some(x.as_str()) != dq.output.get(1).map(String::as_str))
            else {
                continue;
            };
            if self.init(ws).is_none() || self.init(w).is_none() {
                continue;
            }
            let wf = format!("{}/w_f", n.name);
            let mut ins = vec![w, ws.as_str()];
            if let Some(z) = input(&n, 3) {
                ins.push(z);
            }
            let per_axis = self.init(ws).is_some_and(|t| elements(t) > 1);
            let dw = node("DequantizeLinear", format!("{}.w", n.name), &ins, &wf);
            let dw = if per_axis {
                with_axis(dw, if float_op == "Conv" { 0 } else { -1 })
            } else {
                dw
            };
            let mut op = node(
                float_op,
                n.name.clone(),
                &[&dq.input[0], &wf],
                &mul.output[0],
            );
            op.attribute = n.attribute.clone();
            // Replace the integer op by the two new nodes and drop the
            // Cast and Mul (and the scale product and the dynamic
            // quantization once nothing else reads them).
            let ix = i - 1;
            self.g.node.splice(ix..=ix, [dw, op]);
            self.g.node.retain(|x| {
                let is_cast = x.op_type == "Cast" && x.output == cast.output;
                let is_mul = x.op_type == "Mul" && x.output == mul.output;
                !(is_cast || is_mul)
            });
            let unused = |g: &pb::GraphProto, outs: &[String]| {
                outs.iter()
                    .all(|o| consumers(g, o).is_empty() && !g.output.iter().any(|v| &v.name == o))
            };
            if unused(self.g, &smul.output) {
                self.g.node.retain(|x| x.output != smul.output);
            }
            if unused(self.g, &dq.output) {
                self.g.node.retain(|x| x.output != dq.output);
            }
            i = 0;
        }
    }

    /// Checks the scale and zero point of every activation
    /// `QuantizeLinear` / `DequantizeLinear` (see the module docs).
    fn check_activation_qdq(&self) -> Result<(), LowerError> {
        for n in &self.g.node {
            if !matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear") {
                continue;
            }
            let s = self.scale(n, input(n, 1))?;
            if input(n, 0).is_some_and(|x| self.init(x).is_some()) {
                continue; // a constant weight, folded below
            }
            if s.len() != 1 {
                return Err(unsupported(n, "per-axis quantization of an activation"));
            }
            let zp = match input(n, 2) {
                None => None,
                Some(z) => Some(self.init(z).ok_or_else(|| {
                    unsupported(n, "a zero point that is not a constant initializer")
                })?),
            };
            let (dt, v) = match zp {
                // The ONNX default: uint8 with zero point 0.
                None => (DataType::Uint8 as i32, 0),
                Some(t) => match ints(t).as_deref() {
                    Some([v]) => (t.data_type, *v),
                    _ => return Err(unsupported(n, "a zero point that is not one integer")),
                },
            };
            let ok = (dt == DataType::Int8 as i32 && v == 0)
                || (dt == DataType::Uint8 as i32 && v == 128);
            if !ok {
                return Err(unsupported(
                    n,
                    format!(
                        "activation zero point {v} ({:?}): only symmetric activations (int8 zero point 0, or uint8 zero point 128)",
                        DataType::try_from(dt).map_or("?".into(), |d| format!("{d:?}"))
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Folds `DequantizeLinear(initializer)` and `Mul(Cast(int
    /// initializer), f32 initializer)` to `f32` initializers.
    fn fold_weights(&mut self) -> Vec<WeightScales> {
        let mut found = Vec::new();
        let mut i = 0;
        while i < self.g.node.len() {
            let n = self.g.node[i].clone();
            i += 1;
            let folded = match n.op_type.as_str() {
                "DequantizeLinear" => self.fold_dq(&n),
                "Cast" => self.fold_cast_mul(&n),
                _ => None,
            };
            let Some((t, remove, scales)) = folded else {
                continue;
            };
            found.extend(scales);
            self.add_init(t);
            self.g.node.retain(|x| !remove.contains(&x.output));
            i = 0;
        }
        found
    }

    fn fold_dq(
        &self,
        n: &pb::NodeProto,
    ) -> Option<(pb::TensorProto, Vec<Vec<String>>, Option<WeightScales>)> {
        let x = self.init(input(n, 0)?)?;
        let q = ints(x)?;
        let s = floats(self.init(input(n, 1)?)?)?;
        let zp = match input(n, 2) {
            Some(z) => ints(self.init(z)?)?,
            None => vec![0],
        };
        let rank = x.dims.len() as i64;
        let mut axis = attr_i(n, "axis", 1);
        if axis < 0 {
            axis += rank;
        }
        let per_axis = s.len() > 1;
        if per_axis && !(0..rank).contains(&axis) {
            return None;
        }
        let (c, inner) = if per_axis {
            let a = axis as usize;
            let inner: i64 = x.dims[a + 1..].iter().product();
            (x.dims[a] as usize, inner.max(1) as usize)
        } else {
            (1, 1)
        };
        if s.len() != c || (zp.len() != 1 && zp.len() != c) {
            return None;
        }
        let v: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let ch = (i / inner) % c;
                ((q - zp[ch.min(zp.len() - 1)]) as f32) * s[ch]
            })
            .collect();
        let small = matches!(
            DataType::try_from(x.data_type),
            Ok(DataType::Int8 | DataType::Uint8)
        );
        let ws = small.then(|| WeightScales {
            len: q.len(),
            scales: s.clone(),
        });
        Some((
            f32_tensor(&n.output[0], &x.dims, &v),
            vec![n.output.clone()],
            ws,
        ))
    }

    fn fold_cast_mul(
        &self,
        n: &pb::NodeProto,
    ) -> Option<(pb::TensorProto, Vec<Vec<String>>, Option<WeightScales>)> {
        if attr_i(n, "to", 0) != DataType::Float as i64 {
            return None;
        }
        let x = self.init(input(n, 0)?)?;
        let q = ints(x)?;
        let out = n.output.first()?;
        let users: Vec<&pb::NodeProto> = self
            .g
            .node
            .iter()
            .filter(|m| m.input.contains(out))
            .collect();
        let [mul] = users[..] else { return None };
        if mul.op_type != "Mul"
            || mul.input.len() != 2
            || self.g.output.iter().any(|o| &o.name == out)
        {
            return None;
        }
        let other = mul.input.iter().find(|i| *i != out)?;
        let st = self.init(other)?;
        let s = floats(st)?;
        // The scale varies along at most one axis of the weight.
        let (xd, sd) = (&x.dims, &st.dims);
        let off = xd.len().checked_sub(sd.len())?;
        let axes: Vec<usize> = (0..sd.len()).filter(|i| sd[*i] != 1).collect();
        let (c, inner) = match axes[..] {
            [] => (1, 1),
            [a] if sd[a] == xd[off + a] => {
                let inner: i64 = xd[off + a + 1..].iter().product();
                (sd[a] as usize, inner.max(1) as usize)
            }
            _ => return None,
        };
        if s.len() != c {
            return None;
        }
        let v: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, q)| (*q as f32) * s[(i / inner) % c])
            .collect();
        let small = matches!(
            DataType::try_from(x.data_type),
            Ok(DataType::Int8 | DataType::Uint8)
        );
        let ws = small.then(|| WeightScales {
            len: q.len(),
            scales: s.clone(),
        });
        Some((
            f32_tensor(&mul.output[0], &x.dims, &v),
            vec![n.output.clone(), mul.output.clone()],
            ws,
        ))
    }
}

/// Brings the model's main graph to the canonical form (module docs) and
/// returns the scales of its constant int8 weights.
pub fn canonicalize(model: &mut pb::ModelProto) -> Result<Vec<WeightScales>, LowerError> {
    let Some(g) = model.graph.as_mut() else {
        return Ok(Vec::new());
    };
    let inits = g
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut c = Canon { g, inits };
    c.rewrite_qoperators()?;
    c.rewrite_dynamic();
    c.check_activation_qdq()?;
    Ok(c.fold_weights())
}
