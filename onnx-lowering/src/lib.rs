//! # opml-lowering
//!
//! ONNX models lowered to integer-only Wasm for the opml sandbox, and the
//! bit-exact native executor of the same integer program.
//!
//! The pipeline: an integer [`ir::Program`] (tensors at fixed offsets of one
//! memory image, ops with exactly specified integer semantics) is turned by
//! [`codegen`] into a Wasm module (kernels plus a dispatcher, weights and
//! schedule as data) and measured by [`artifact::Artifact::build`]; the
//! artifact runs on either engine with identical node-boundary state roots.
//!
//! Integer semantics, in short (each op's exact definition is in [`ir`]):
//! `i8` activations and weights (`i16` activations around a function
//! between two matmuls, e.g. a transformer's GELU), `i32` accumulation, one
//! requantization rule (round half towards +infinity, then clamp);
//! non-linear functions as exact 256-entry tables over `i8` inputs
//! (GELU/Erf, sigmoid, ...) or 1025-knot linear interpolation over `i16`
//! inputs, an
//! `exp` table in `2^-20` for (masked) softmax with probabilities in units
//! of `1/127`, and layer normalization by an exact integer mean and
//! variance, a floor square root and one rounded (floor) division per
//! element. Token ids and masks are raw `i32` inputs; embedding lookups
//! clamp their indices into the table.

pub mod artifact;
pub mod artifact_dir;
pub mod builder;
pub mod codegen;
pub mod error;
pub mod import;
pub mod ir;
pub mod layout;
pub mod native_state;
pub mod ops;
pub mod quant;
pub mod validate;

pub use artifact::{Artifact, NodeBoundary, Run};
pub use error::LowerError;
