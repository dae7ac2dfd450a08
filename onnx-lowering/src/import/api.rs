//! The import pipeline and the host-side conversions of inputs and outputs.
//!
//! 1. [`load`](super::load): the file is read as protobuf (op counts and
//!    parameters for the report; tensors with external data are refused),
//!    then by tract with concrete input shapes (the overrides, else the
//!    model's with an unknown batch dimension set to 1), typed and
//!    decluttered, so that shape arithmetic folds away.
//! 2. [`analyze`](super::analyze): tract's ops become a float plan.
//! 3. [`calibrate`]: the plan runs in `f64` on the
//!    calibration samples (by default [`calibrate::default_samples`]: 8
//!    inputs uniform in `[0, 1)` from a fixed-seed splitmix64 stream) and
//!    `max |x|` of every tensor is recorded.
//! 4. [`lower`](super::lower): symmetric `i8` quantization with
//!    `scale = max |x| / 127`, per-channel weights, and the integer program.
//!
//! Every float computation is done by this crate with basic IEEE
//! operations in a fixed order (tract only parses and simplifies), so the
//! same file and calibration data give the same program, and the same
//! artifact hash, on every machine, thread count and build profile.
//! One caveat: tract's decluttering folds constant subgraphs with its own
//! kernels. The folds of usual models are exact IEEE arithmetic (e.g.
//! BatchNormalization's `gamma / sqrt(var + eps)`), but constants passed
//! through a transcendental function or a product of two constants would
//! be folded by CPU-specific kernels.
//! A hostile file yields an error, never a panic: panics of tract (or
//! bugs of this module) are caught and reported as [`LowerError::Onnx`].

use super::calibrate;
use super::load::{guarded, load};
use super::report::ImportReport;
use crate::error::LowerError;
use crate::ir::Program;
use std::path::Path;

/// Options of [`import`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Input shapes by input name, overriding the model's.
    pub input_shapes: Vec<(String, Vec<usize>)>,
    /// Calibration samples: samples x model inputs x flat (row-major)
    /// values. `None` uses [`calibrate::default_samples`].
    pub calibration: Option<Vec<Vec<Vec<f32>>>>,
}

/// An imported model.
#[derive(Clone, Debug)]
pub struct Imported {
    pub program: Program,
    pub report: ImportReport,
    /// With calibration data: the float (f64) outputs of every calibration
    /// sample (samples x outputs x values), for accuracy reports.
    pub reference: Option<Vec<Vec<Vec<f64>>>>,
}

/// Imports the ONNX model at `model_path`.
pub fn import(model_path: &Path, opts: &ImportOptions) -> Result<Imported, LowerError> {
    let loaded = load(model_path, &opts.input_shapes)?;
    guarded("lowering the model", || {
        let mut plan = super::analyze::analyze(&loaded.model)?;
        super::prequant::attach_int_weights(&mut plan, &loaded.weight_scales);
        super::prequant::fuse_relu_tables(&mut plan);
        super::lower::check_size(&plan)?;
        let default;
        let samples = match &opts.calibration {
            Some(s) => s.as_slice(),
            None => {
                default = calibrate::default_samples(&plan);
                &default
            }
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ranges = calibrate::calibrate_full(&plan, samples, threads)?;
        // With real calibration data, keep the float outputs so that callers
        // can report the integer model's agreement with f32 on it.
        let reference = match &opts.calibration {
            Some(s) => Some(
                s.iter()
                    .map(|x| calibrate::evaluate(&plan, x))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let lowered = super::lower::lower(&plan, &ranges)?;
        let report = ImportReport {
            onnx_ops: loaded.onnx_ops.clone(),
            parameters: loaded.parameters,
            ir_nodes: lowered
                .program
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.op.kind().to_string()))
                .collect(),
            calibration_samples: samples.len(),
        };
        Ok(Imported {
            program: lowered.program,
            report,
            reference,
        })
    })
}

/// The `i8` bytes of input `idx` ([`crate::quant::quantize`] with the
/// input tensor's scale).
pub fn quantize_input(
    imported: &Imported,
    idx: usize,
    values: &[f32],
) -> Result<Vec<u8>, LowerError> {
    let p = &imported.program;
    let t = p
        .inputs
        .get(idx)
        .ok_or_else(|| LowerError::BadInput(format!("the model has no input {idx}")))?;
    crate::quant::quantize(&p.tensors[*t], values)
}

/// The real values of output `idx` ([`crate::quant::dequantize`]).
pub fn dequantize_output(
    imported: &Imported,
    idx: usize,
    bytes: &[u8],
) -> Result<Vec<f32>, LowerError> {
    let p = &imported.program;
    let t = p
        .outputs
        .get(idx)
        .ok_or_else(|| LowerError::BadInput(format!("the model has no output {idx}")))?;
    Ok(crate::quant::dequantize(&p.tensors[*t], bytes))
}
