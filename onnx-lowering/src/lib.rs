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
