//! Reading the ONNX file: the protobuf (for the report and safety checks),
//! then tract's typed, decluttered model with concrete input shapes.

use crate::error::LowerError;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// Largest input tensor accepted, in elements.
const MAX_INPUT_ELEMENTS: usize = 1 << 26;

/// A loaded model.
pub struct Loaded {
    pub model: TypedModel,
    pub onnx_ops: BTreeMap<String, usize>,
    pub parameters: u64,
    /// Scales of the model's constant int8 weights (pre-quantized models).
    pub weight_scales: Vec<super::qcanon::WeightScales>,
}

fn onnx_err(e: impl std::fmt::Display) -> LowerError {
    LowerError::Onnx(format!("{e:#}"))
}

/// Runs `f`, turning a panic into an error (the file is untrusted input and
/// a panic deep in a dependency must not take the caller down).
pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, LowerError>) -> Result<T, LowerError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(LowerError::Onnx(format!("{what} failed: {msg}")))
        }
    }
}

/// Rejects tensors stored outside the file: resolving their paths would let
/// a hostile model read files of the machine that lowers it.
fn check_tensor(t: &pb::TensorProto) -> Result<(), LowerError> {
    if !t.external_data.is_empty() || t.data_location == Some(1) {
        return Err(LowerError::Onnx(format!(
            "tensor {:?} uses external data, which is not accepted",
            t.name
        )));
    }
    Ok(())
}

fn check_graph(g: &pb::GraphProto, depth: usize) -> Result<(), LowerError> {
    if depth > 16 {
        return Err(LowerError::Onnx("subgraphs nested too deeply".into()));
    }
    g.initializer.iter().try_for_each(check_tensor)?;
    for n in &g.node {
        for a in &n.attribute {
            a.t.iter().chain(&a.tensors).try_for_each(check_tensor)?;
            for sub in a.g.iter().chain(&a.graphs) {
                check_graph(sub, depth + 1)?;
            }
        }
    }
    Ok(())
}

fn elements(dims: &[i64]) -> u64 {
    dims.iter()
        .fold(1u64, |acc, d| acc.saturating_mul((*d).max(0) as u64))
}

/// Op type counts of the main graph (`domain.op` outside the default domain).
fn count_ops(g: &pb::GraphProto) -> BTreeMap<String, usize> {
    let mut ops = BTreeMap::new();
    for n in &g.node {
        let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
            n.op_type.clone()
        } else {
            format!("{}.{}", n.domain, n.op_type)
        };
        *ops.entry(key).or_insert(0) += 1;
    }
    ops
}

/// Elements of the main graph's initializers and `Constant` node tensors.
fn count_parameters(g: &pb::GraphProto) -> u64 {
    let init = g.initializer.iter().map(|t| elements(&t.dims));
    let consts = g
        .node
        .iter()
        .filter(|n| n.op_type == "Constant")
        .flat_map(|n| n.attribute.iter().filter_map(|a| a.t.as_ref()))
        .map(|t| elements(&t.dims));
    init.chain(consts).fold(0u64, u64::saturating_add)
}

/// The concrete shape of input `ix`: the override if any, else the model's
/// shape with an unknown first (batch) dimension set to 1.
fn input_shape(
    model: &InferenceModel,
    ix: usize,
    overrides: &[(String, Vec<usize>)],
) -> Result<Vec<usize>, LowerError> {
    let name = &model.node(model.inputs[ix].node).name;
    if let Some((_, s)) = overrides.iter().find(|(n, _)| n == name) {
        return Ok(s.clone());
    }
    let fact = model.input_fact(ix).map_err(onnx_err)?;
    if fact.shape.is_open() {
        return Err(LowerError::Onnx(format!(
            "input {name:?} has an unknown rank: give its shape in input_shapes"
        )));
    }
    let mut shape = Vec::new();
    for (i, d) in fact.shape.dims().enumerate() {
        match d.concretize().and_then(|d| d.to_i64().ok()) {
            Some(v) if v >= 0 => shape.push(v as usize),
            _ if i == 0 => shape.push(1),
            _ => {
                return Err(LowerError::Onnx(format!(
                    "input {name:?} has an unknown dimension {i}: give its shape in input_shapes"
                )))
            }
        }
    }
    Ok(shape)
}

/// Reads, checks and simplifies the model at `path`.
pub fn load(path: &Path, overrides: &[(String, Vec<usize>)]) -> Result<Loaded, LowerError> {
    let bytes = std::fs::read(path)?;
    guarded("reading the ONNX model", || {
        let onnx = tract_onnx::onnx();
        let mut proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(onnx_err)?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| LowerError::Onnx("the model has no graph".into()))?;
        check_graph(graph, 0)?;
        super::recurrent::check_onnx_lstm(graph)?;
        let onnx_ops = count_ops(graph);
        let parameters = count_parameters(graph);
        let weight_scales = super::qcanon::canonicalize(&mut proto)?;
        // Exporters' `value_info` may name symbolic dimensions that clash
        // with the concrete input shapes set below; tract infers them anyway.
        let onnx = onnx.with_ignore_value_info(true);
        let parsed = onnx.parse(&proto, None).map_err(onnx_err)?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(LowerError::Onnx(format!(
                "unresolved inputs {:?}",
                parsed.unresolved_inputs
            )));
        }
        let mut model = parsed.model;
        let names: Vec<String> = model
            .inputs
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        if let Some((n, _)) = overrides.iter().find(|(n, _)| !names.contains(n)) {
            return Err(LowerError::BadInput(format!(
                "no model input is called {n:?} (inputs: {names:?})"
            )));
        }
        for (ix, name) in names.iter().enumerate() {
            let shape = input_shape(&model, ix, overrides)?;
            let n = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
            if !matches!(n, Some(n) if n > 0 && n <= MAX_INPUT_ELEMENTS) {
                return Err(LowerError::Unsupported {
                    node: name.clone(),
                    op: "Source".into(),
                    reason: format!("input shape {shape:?} is empty or too large"),
                });
            }
            let dt = model
                .input_fact(ix)
                .map_err(onnx_err)?
                .datum_type
                .concretize();
            // f32 inputs are quantized; integer inputs (token ids, masks)
            // are read as raw i32.
            let dt = match dt {
                None => f32::datum_type(),
                Some(dt) if dt == f32::datum_type() || dt == i64::datum_type() => dt,
                Some(dt) if dt == i32::datum_type() => dt,
                Some(dt) => {
                    return Err(LowerError::Unsupported {
                        node: name.clone(),
                        op: "Source".into(),
                        reason: format!("input type {dt:?}: only f32, i64 and i32 inputs"),
                    })
                }
            };
            model
                .set_input_fact(ix, InferenceFact::dt_shape(dt, shape))
                .map_err(onnx_err)?;
        }
        let model = model
            .into_typed()
            .map_err(onnx_err)?
            .into_decluttered()
            .map_err(onnx_err)?;
        Ok(Loaded {
            model,
            onnx_ops,
            parameters,
            weight_scales,
        })
    })
}
