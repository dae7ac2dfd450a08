//! ONNX import: an `f32` ONNX model quantized to the integer IR.
//!
//! [`import`] loads the model with tract (concrete input shapes, typed,
//! decluttered), maps tract's ops onto a float plan, calibrates it on
//! sample inputs, quantizes it (symmetric `i8`, per-channel weights) and
//! builds the [`crate::ir::Program`]. See [`api`] for the pipeline and its
//! rules, [`analyze`] for the ops covered.

pub mod analyze;
pub mod api;
pub mod calibrate;
pub mod fold;
pub mod general;
pub mod linear;
pub mod load;
pub mod lower;
pub mod mathfn;
pub mod movement;
pub mod plan;
pub mod prequant;
pub mod qcanon;
pub mod quantize;
pub mod recurrent;
pub mod report;
pub mod transformer;

pub use api::{dequantize_output, import, quantize_input, ImportOptions, Imported};
pub use report::ImportReport;
