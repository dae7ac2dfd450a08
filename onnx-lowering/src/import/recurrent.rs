//! Import rules for ONNX `LSTM`: tract turns the node into a `Scan` loop
//! (its body: `h_{t-1} R^T` with a constant `R [4H, H]`, plus the input
//! projection `x_t W^T` that declutter hoists out of the loop as one
//! `EinSum` over all timesteps, plus the bias, then an `LstmEpilogue` on
//! the gates in ONNX order `i, o, f, c`). With the sequence length fixed
//! the loop is unrolled into existing plan steps, gate by gate, so that no
//! gate needs slicing and calibration gives every timestep its own scales:
//!
//! ```text
//! xw_g     = x W_g^T + (Wb_g + Rb_g)          one matmul over all timesteps
//! z_g[t]   = xw_g[t] + h_{t-1} R_g^T          view of row t, matmul, sum
//! i, o, f  = sigmoid(z_i, z_o, z_f),  g = tanh(z_c)       tables
//! c_t      = f * c_{t-1} + i * g                          products, sum
//! h_t      = o * tanh(c_t)                                table, product
//! ```
//!
//! A zero initial state drops the terms it multiplies. The per-timestep
//! rows `xw_g[t]` are views ([`Step::Slice`]) and the outputs `h_t` are
//! written straight into `Y` ([`Step::Stack`]); both views lie at `t * H`
//! bytes, so the hidden size must be a multiple of 8 (tensor offsets are
//! 8-byte aligned). The `h_t` share `Y`'s scale (one tensor); the gates,
//! sums and `c_t` have one scale per timestep.
//!
//! tract ignores some LSTM attributes (`activations`, `clip`,
//! `input_forget`, `direction = reverse`), so [`check_onnx_lstm`] rejects
//! them on the protobuf, before tract sees the model.

use super::analyze::Walker;
use super::linear::{self, konst, shape, unsupported, Kind};
use super::plan::{Expr, Step, UnFn, ValueId};
use crate::error::LowerError;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::lstm_cell::LstmEpilogue;
use tract_onnx::tract_core::ops::scan::{InputMapping, Scan};
use tract_onnx::tract_core::ops::source::TypedSource;

/// Whether the cell state `c_t` (and `tanh(c_t)`) is `i16` rather than `i8`.
const WIDE_CELL: bool = true;

fn lstm_err(node: &str, reason: impl Into<String>) -> LowerError {
    LowerError::Unsupported {
        node: node.into(),
        op: "LSTM".into(),
        reason: reason.into(),
    }
}

/// Rejects the `LSTM` attributes and inputs that tract ignores or that the
/// lowering does not cover: `direction` other than `forward`, non-default
/// `activations`, `clip`, `input_forget`, peepholes (`P`).
pub fn check_onnx_lstm(g: &pb::GraphProto) -> Result<(), LowerError> {
    for n in g.node.iter().filter(|n| n.op_type == "LSTM") {
        let name = if n.name.is_empty() {
            n.output.first().cloned().unwrap_or_default()
        } else {
            n.name.clone()
        };
        for a in &n.attribute {
            match a.name.as_str() {
                "direction" if a.s != b"forward" => {
                    return Err(lstm_err(
                        &name,
                        format!(
                            "direction {:?}: only forward LSTMs are lowered",
                            String::from_utf8_lossy(&a.s)
                        ),
                    ))
                }
                "activations" => {
                    let acts: Vec<String> = a
                        .strings
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                        .collect();
                    if acts != ["sigmoid", "tanh", "tanh"] {
                        return Err(lstm_err(
                            &name,
                            format!("activations {acts:?}: only the default sigmoid, tanh, tanh"),
                        ));
                    }
                }
                "clip" => return Err(lstm_err(&name, "cell clipping (clip) is not lowered")),
                "input_forget" if a.i != 0 => {
                    return Err(lstm_err(
                        &name,
                        "input_forget (coupled gates) is not lowered",
                    ))
                }
                _ => {}
            }
        }
        if n.input.get(7).is_some_and(|p| !p.is_empty()) {
            return Err(lstm_err(&name, "peepholes (input P) are not lowered"));
        }
    }
    Ok(())
}

/// The LSTM `Scan` of a node, if it is one.
fn lstm_scan(node: &TypedNode) -> Option<&Scan> {
    node.op_as::<Scan>()
        .filter(|s| s.body.nodes().iter().any(|n| n.op_is::<LstmEpilogue>()))
}

/// What the loop body computes, by the `Scan`'s input and output slots.
struct Body {
    hidden: usize,
    /// `[4H, H]`, gates `i, o, f, c`.
    r: Vec<f64>,
    /// `[4H]`: `Wb + Rb`.
    bias: Vec<f64>,
    h_slot: usize,
    c_slot: usize,
    x_slot: usize,
    /// Outer outlets of `Y`, `Y_h`, `Y_c`.
    y: Option<usize>,
    y_h: Option<usize>,
    y_c: Option<usize>,
}

/// Follows axis ops back to a body input; its index.
fn source_slot(body: &TypedModel, mut o: OutletId) -> Option<usize> {
    loop {
        let n = body.node(o.node);
        if n.op_is::<TypedSource>() {
            return body.input_outlets().ok()?.iter().position(|i| *i == o);
        }
        if !n.op_is::<AxisOp>() || n.inputs.len() != 1 {
            return None;
        }
        o = n.inputs[0];
    }
}

/// Follows axis ops back to any other outlet.
fn through_axes(body: &TypedModel, mut o: OutletId) -> OutletId {
    loop {
        let n = body.node(o.node);
        if !n.op_is::<AxisOp>() || n.inputs.len() != 1 {
            return o;
        }
        o = n.inputs[0];
    }
}

fn parse_body(node: &TypedNode, scan: &Scan) -> Result<Body, LowerError> {
    let bad = |why: &str| unsupported(node, format!("LSTM loop body in an unexpected form: {why}"));
    let body = &scan.body;
    let epi: Vec<&TypedNode> = body
        .nodes()
        .iter()
        .filter(|n| n.op_is::<LstmEpilogue>())
        .collect();
    let [e] = epi[..] else {
        return Err(bad("several LSTM cells in one loop"));
    };
    let hidden = e.op_as::<LstmEpilogue>().map_or(0, |l| l.hidden);
    if e.inputs.len() != 2 || hidden == 0 {
        return Err(bad("cell inputs"));
    }
    let c_slot = source_slot(body, e.inputs[1]).ok_or_else(|| bad("cell state input"))?;
    // The pre-activation: a sum of the input term, `h R^T` and constants.
    let (mut r, mut bias, mut h_slot, mut x_slot) = (None, vec![0.0; 4 * hidden], None, None);
    let mut todo = vec![e.inputs[0]];
    while let Some(o) = todo.pop() {
        let n = body.node(o.node);
        if let Some((_, c)) = konst(body, o) {
            if c.len() != 4 * hidden {
                return Err(bad("bias shape"));
            }
            bias.iter_mut().zip(&c).for_each(|(b, v)| *b += v);
        } else if n.op_as::<TypedBinOp>().is_some_and(|b| b.0.name() == "Add") {
            todo.extend(n.inputs.iter().copied());
        } else if let Some(es) = n.op_as::<EinSum>() {
            let lin = linear::einsum(body, n, es)?;
            let ok = matches!(lin.kind, Kind::MatMul { m: 1, k, n, .. } if k == hidden && n == 4 * hidden);
            if !ok || r.is_some() {
                return Err(bad("recurrent product"));
            }
            h_slot = Some(source_slot(body, lin.input).ok_or_else(|| bad("hidden state input"))?);
            r = Some(lin.weight);
        } else if let (Some(s), None) = (source_slot(body, o), x_slot) {
            x_slot = Some(s);
        } else {
            return Err(bad("pre-activation term"));
        }
    }
    let (Some(r), Some(h_slot), Some(x_slot)) = (r, h_slot, x_slot) else {
        return Err(bad("missing recurrent product or input term"));
    };
    let state = |s: usize| matches!(scan.input_mapping.get(s), Some(InputMapping::State));
    if !state(h_slot) || !state(c_slot) || h_slot == c_slot {
        return Err(bad("state inputs"));
    }
    match scan.input_mapping.get(x_slot) {
        Some(InputMapping::Scan(info)) if info.chunk == 1 => {}
        Some(InputMapping::Scan(_)) => {
            return Err(unsupported(
                node,
                "LSTM running backwards (reverse direction)",
            ))
        }
        _ => return Err(bad("sequence input")),
    }
    if scan.skip != 0 {
        return Err(bad("skipped iterations"));
    }
    let (mut y, mut y_h, mut y_c) = (None, None, None);
    let outs = body
        .output_outlets()
        .map_err(|e| LowerError::Onnx(format!("{e:#}")))?;
    for (i, o) in outs.iter().enumerate() {
        let src = through_axes(body, *o);
        let m = &scan.output_mapping[i];
        if src.node != e.id {
            return Err(bad("loop output"));
        }
        if src.slot == 0 {
            if let Some((slot, info)) = m.scan {
                if info.chunk != 1 {
                    return Err(bad("sequence output"));
                }
                y = Some(slot);
            }
            y_h = m.last_value_slot;
        } else {
            if m.scan.is_some() {
                return Err(bad("sequence of cell states"));
            }
            y_c = m.last_value_slot;
        }
    }
    Ok(Body {
        hidden,
        r,
        bias,
        h_slot,
        c_slot,
        x_slot,
        y,
        y_h,
        y_c,
    })
}

/// An initial state: zero (its terms dropped) or a value.
#[derive(Clone, Copy)]
enum State {
    Zero,
    Value(ValueId),
}

impl Walker<'_> {
    /// Handles an LSTM `Scan` and the input projection feeding it; `false`
    /// for other nodes.
    pub(super) fn recurrent_node(&mut self, node: &TypedNode) -> Result<bool, LowerError> {
        if let Some(scan) = node.op_as::<Scan>() {
            if lstm_scan(node).is_none() {
                return Err(unsupported(node, "Scan loop that is not an LSTM"));
            }
            self.lstm(node, scan)?;
            return Ok(true);
        }
        // The hoisted input projection: read by the loop's lowering.
        let feeds_lstm_only = node.op_is::<EinSum>()
            && node.outputs.len() == 1
            && !self.outputs.contains(&OutletId::new(node.id, 0))
            && !node.outputs[0].successors.is_empty()
            && node.outputs[0]
                .successors
                .iter()
                .all(|s| lstm_scan(self.model.node(s.node)).is_some());
        Ok(feeds_lstm_only)
    }

    /// The initial state at outer input `o`: zero, a constant or a value.
    fn initial_state(
        &mut self,
        node: &TypedNode,
        o: OutletId,
        hidden: usize,
        what: &str,
    ) -> Result<State, LowerError> {
        let name = format!("{}.{what}0", node.name);
        match konst(self.model, o) {
            Some((_, c)) if c.len() != hidden => Err(unsupported(
                node,
                "initial state of another shape than [1, 1, hidden]",
            )),
            Some((_, c)) if c.iter().all(|v| *v == 0.0) => Ok(State::Zero),
            Some((_, c)) => {
                let output = self.plan.value(&name, &[1, hidden]);
                self.plan.steps.push(Step::Const {
                    name,
                    output,
                    data: c,
                });
                Ok(State::Value(output))
            }
            None => {
                let v = self.need(o)?;
                if self.plan.values[v].len() != hidden {
                    return Err(unsupported(
                        node,
                        "initial state with a batch larger than 1",
                    ));
                }
                Ok(State::Value(v))
            }
        }
    }

    fn lstm(&mut self, node: &TypedNode, scan: &Scan) -> Result<(), LowerError> {
        let b = parse_body(node, scan)?;
        let hid = b.hidden;
        // The hoisted input projection `x W^T` over all timesteps.
        let xo = node.inputs[b.x_slot];
        let proj = self.model.node(xo.node);
        let Some(es) = proj.op_as::<EinSum>() else {
            return Err(unsupported(
                node,
                "LSTM whose input projection tract did not hoist",
            ));
        };
        if self.values.contains_key(&xo) {
            return Err(unsupported(
                proj,
                "LSTM input projection read by other ops too",
            ));
        }
        let lin = linear::einsum(self.model, proj, es)?;
        let Kind::MatMul {
            m: seq,
            k,
            n,
            a_stride,
            o_stride,
        } = lin.kind
        else {
            return Err(unsupported(proj, "LSTM input projection"));
        };
        let xs = shape(self.model, xo)?;
        let axis = match &scan.input_mapping[b.x_slot] {
            InputMapping::Scan(info) => info.axis,
            _ => unreachable!("checked by parse_body"),
        };
        let batch_one = xs.get(axis) == Some(&seq) && xs[..axis].iter().all(|d| *d == 1);
        if n != 4 * hid
            || o_stride != [n, 1]
            || !batch_one
            || xs.iter().product::<usize>() != seq * n
        {
            return Err(unsupported(node, "LSTM with a batch larger than 1"));
        }
        if !hid.is_multiple_of(8) {
            return Err(unsupported(
                node,
                format!(
                    "LSTM hidden size {hid} is not a multiple of 8 (per-timestep views need 8-byte aligned offsets)"
                ),
            ));
        }
        let x = self.need(lin.input)?;
        let name = node.name.clone();
        let gates = ["i", "o", "f", "g"];
        let bias: Vec<f64> = lin.bias.iter().zip(&b.bias).map(|(a, c)| a + c).collect();
        let mut xw = Vec::new();
        for (g, gate) in gates.iter().enumerate() {
            let sname = format!("{name}.{gate}.xw");
            let output = self.plan.value(&sname, &[seq, hid]);
            self.plan.steps.push(Step::MatMul {
                name: sname,
                input: x,
                output,
                weight: lin.weight[g * hid * k..(g + 1) * hid * k].to_vec(),
                bias: bias[g * hid..(g + 1) * hid].to_vec(),
                m: seq,
                k,
                n: hid,
                a_stride,
                o_stride: [hid, 1],
                relu: false,
            });
            xw.push(output);
        }
        let mut h = self.initial_state(node, node.inputs[b.h_slot], hid, "h")?;
        let mut c = self.initial_state(node, node.inputs[b.c_slot], hid, "c")?;
        let mut hs = Vec::new();
        // Values of one role at every timestep share one scale.
        let mut roles: Vec<(String, ValueId)> = Vec::new();
        for t in 0..seq {
            let p = format!("{name}.t{t}");
            let mut act = Vec::new();
            for (g, gate) in gates.iter().enumerate() {
                let row = self.plan.value(&format!("{p}.{gate}.xw"), &[1, hid]);
                self.plan.steps.push(Step::Slice {
                    input: xw[g],
                    output: row,
                    offset: t * hid,
                });
                let z = match h {
                    State::Zero => row,
                    State::Value(hv) => {
                        let r = &b.r[g * hid * hid..(g + 1) * hid * hid];
                        let hr = self.matmul_r(&format!("{p}.{gate}.hr"), hv, r, hid);
                        let z = self.add(&format!("{p}.{gate}.z"), row, hr, hid);
                        roles.extend([(format!("{gate}.hr"), hr), (format!("{gate}.z"), z)]);
                        z
                    }
                };
                let f = if g == 3 { UnFn::Tanh } else { UnFn::Sigmoid };
                act.push(self.apply(&format!("{p}.{gate}"), z, f, hid));
                roles.push((gate.to_string(), act[g]));
            }
            let mut terms = vec![(act[0], act[3])];
            if let State::Value(cv) = c {
                terms.insert(0, (act[2], cv));
            }
            let ct = self.products(&format!("{p}.c"), terms, hid, WIDE_CELL);
            let tc = self.apply(&format!("{p}.tanh_c"), ct, UnFn::Tanh, hid);
            let ht = self.products(&format!("{p}.h"), vec![(act[1], tc)], hid, false);
            roles.extend([("c".into(), ct), ("tanh_c".into(), tc), ("h".into(), ht)]);
            hs.push(ht);
            (h, c) = (State::Value(ht), State::Value(ct));
        }
        let mut keys: Vec<&String> = roles.iter().map(|(k, _)| k).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let mut group: Vec<ValueId> = roles
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| *v)
                .collect();
            group.dedup();
            self.plan.shared_scales.push(group);
        }
        if let Some(slot) = b.y {
            let output = self.define(OutletId::new(node.id, slot), &format!("{name}.Y"))?;
            if self.plan.values[output].len() != seq * hid {
                return Err(unsupported(node, "LSTM output Y of an unexpected shape"));
            }
            self.plan.steps.push(Step::Stack { inputs: hs, output });
        }
        for (slot, state) in [(b.y_h, h), (b.y_c, c)] {
            let (Some(slot), State::Value(input)) = (slot, state) else {
                continue;
            };
            let output = self.define(OutletId::new(node.id, slot), &format!("{name}.out{slot}"))?;
            if self.plan.values[output].len() != hid {
                return Err(unsupported(
                    node,
                    "LSTM state output of an unexpected shape",
                ));
            }
            self.plan.steps.push(Step::Alias { input, output });
        }
        Ok(())
    }

    /// `h R_g^T` for one gate (`r` is `[H, H]`).
    fn matmul_r(&mut self, name: &str, input: ValueId, r: &[f64], hid: usize) -> ValueId {
        let output = self.plan.value(name, &[1, hid]);
        self.plan.steps.push(Step::MatMul {
            name: name.into(),
            input,
            output,
            weight: r.to_vec(),
            bias: vec![0.0; hid],
            m: 1,
            k: hid,
            n: hid,
            a_stride: [hid, 1],
            o_stride: [hid, 1],
            relu: false,
        });
        output
    }

    fn add(&mut self, name: &str, a: ValueId, b: ValueId, hid: usize) -> ValueId {
        let output = self.plan.value(name, &[1, hid]);
        self.plan.steps.push(Step::Add {
            name: name.into(),
            a,
            b,
            output,
            negate_b: false,
            relu: false,
        });
        output
    }

    fn apply(&mut self, name: &str, input: ValueId, f: UnFn, hid: usize) -> ValueId {
        let output = self.plan.value(name, &[1, hid]);
        self.plan.steps.push(Step::Pointwise {
            name: name.into(),
            input,
            output,
            expr: Expr::Un(f, Box::new(Expr::Var)),
        });
        output
    }

    /// `sum over terms of a * b` (element-wise).
    fn products(
        &mut self,
        name: &str,
        terms: Vec<(ValueId, ValueId)>,
        hid: usize,
        wide: bool,
    ) -> ValueId {
        let output = self.plan.value(name, &[1, hid]);
        self.plan.steps.push(Step::Products {
            name: name.into(),
            terms,
            output,
            wide,
        });
        output
    }
}
