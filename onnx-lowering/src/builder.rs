//! Building a [`Program`]: tensors are laid out one after another from
//! [`crate::layout::TENSOR_BASE`], 8-byte aligned.

use crate::ir::{Constant, DType, Node, Op, Program, Requant, Tensor, TensorId, TensorKind};
use crate::layout::TENSOR_BASE;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// Builds a [`Program`] tensor by tensor and node by node.
#[derive(Debug)]
pub struct ProgramBuilder {
    program: Program,
    next: u32,
    /// Indices in `program.constants` by (type, hash of the bytes), to
    /// find an equal constant without keeping a second copy of the bytes.
    constants_by_bytes: HashMap<(DType, u64), Vec<usize>>,
}

impl Default for ProgramBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn align8(x: u32) -> u32 {
    (x + 7) & !7
}

impl ProgramBuilder {
    pub fn new() -> Self {
        Self {
            program: Program {
                tensors: Vec::new(),
                constants: Vec::new(),
                nodes: Vec::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
            },
            next: TENSOR_BASE,
            constants_by_bytes: HashMap::new(),
        }
    }

    /// A new tensor with its own bytes.
    pub fn tensor(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[u32],
        kind: TensorKind,
    ) -> TensorId {
        let t = Tensor {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            offset: self.next,
            kind,
            scale_bits: None,
            zero_point: 0,
        };
        self.next = align8(t.end());
        self.program.tensors.push(t);
        if kind == TensorKind::Input {
            self.program.inputs.push(self.program.tensors.len() - 1);
        }
        if kind == TensorKind::Output {
            self.program.outputs.push(self.program.tensors.len() - 1);
        }
        self.program.tensors.len() - 1
    }

    /// Sets the quantization of a tensor (host-side metadata only).
    pub fn set_quant(&mut self, t: TensorId, scale: f32, zero_point: i32) {
        self.program.tensors[t].scale_bits = Some(scale.to_bits());
        self.program.tensors[t].zero_point = zero_point;
    }

    /// A view of `of` with another shape and the same bytes.
    pub fn alias(&mut self, of: TensorId, name: &str, shape: &[u32]) -> TensorId {
        let mut t = self.program.tensors[of].clone();
        assert_eq!(
            shape.iter().product::<u32>(),
            t.len(),
            "alias must keep the element count"
        );
        t.name = name.into();
        t.shape = shape.to_vec();
        self.program.tensors.push(t);
        self.program.tensors.len() - 1
    }

    /// A view of part of `of`'s bytes: a tensor of `shape` at `byte_offset`
    /// bytes into `of` (8-byte aligned, inside `of`), with `of`'s type and
    /// kind.
    pub fn view(&mut self, of: TensorId, name: &str, shape: &[u32], byte_offset: u32) -> TensorId {
        let mut t = self.program.tensors[of].clone();
        let end = t.end();
        t.name = name.into();
        t.shape = shape.to_vec();
        t.offset += byte_offset;
        assert!(
            t.offset.is_multiple_of(8) && t.end() <= end,
            "a view must be aligned and inside its tensor"
        );
        self.program.tensors.push(t);
        self.program.tensors.len() - 1
    }

    /// A constant tensor of `bytes`. Constants are deduplicated: a
    /// constant with the same type, element count and bytes as an earlier
    /// one is a view of its bytes under the new name and shape (an unrolled
    /// loop's per-timestep weights and tables, identical requantization
    /// arrays), so the memory image, and the chunks proofs carry, hold each
    /// distinct constant once.
    fn constant(&mut self, name: &str, dtype: DType, shape: &[u32], bytes: Vec<u8>) -> TensorId {
        let len: u32 = shape.iter().product();
        assert_eq!(bytes.len() as u32, len * dtype.size());
        let key = (dtype, {
            let mut h = DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        });
        let same = self.constants_by_bytes.get(&key).and_then(|ids| {
            ids.iter()
                .map(|c| &self.program.constants[*c])
                .find(|c| c.bytes == bytes)
                .map(|c| c.tensor)
        });
        if let Some(first) = same {
            return self.alias(first, name, shape);
        }
        let t = self.tensor(name, dtype, shape, TensorKind::Constant);
        self.constants_by_bytes
            .entry(key)
            .or_default()
            .push(self.program.constants.len());
        self.program.constants.push(Constant { tensor: t, bytes });
        t
    }

    /// A constant `i8` tensor.
    pub fn const_i8(&mut self, name: &str, shape: &[u32], data: &[i8]) -> TensorId {
        let bytes = data.iter().map(|v| *v as u8).collect();
        self.constant(name, DType::I8, shape, bytes)
    }

    /// A constant `i16` tensor.
    pub fn const_i16(&mut self, name: &str, shape: &[u32], data: &[i16]) -> TensorId {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(name, DType::I16, shape, bytes)
    }

    /// A constant `i32` tensor.
    pub fn const_i32(&mut self, name: &str, shape: &[u32], data: &[i32]) -> TensorId {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(name, DType::I32, shape, bytes)
    }

    /// Requantization parameters as constant tensors.
    pub fn requant(
        &mut self,
        name: &str,
        multiplier: &[i32],
        shift: &[i32],
        zero_point: i32,
        lo: i32,
        hi: i32,
    ) -> Requant {
        let n = multiplier.len() as u32;
        Requant {
            multiplier: self.const_i32(&format!("{name}.multiplier"), &[n], multiplier),
            shift: self.const_i32(&format!("{name}.shift"), &[n], shift),
            zero_point,
            lo,
            hi,
        }
    }

    /// Appends a node.
    pub fn node(&mut self, name: &str, op: Op) {
        self.program.nodes.push(Node {
            name: name.into(),
            op,
        });
    }

    /// Marks an existing tensor as a program output.
    pub fn mark_output(&mut self, t: TensorId) {
        self.program.tensors[t].kind = TensorKind::Output;
        self.program.outputs.push(t);
    }

    /// The first byte after all tensors.
    pub fn end(&self) -> u32 {
        self.next
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn finish(self) -> Program {
        self.program
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_constants_share_their_bytes_and_others_do_not() {
        let mut b = ProgramBuilder::new();
        let w = b.const_i8("w", &[2, 3], &[1, 2, 3, 4, 5, 6]);
        let again = b.const_i8("w_again", &[3, 2], &[1, 2, 3, 4, 5, 6]);
        let other = b.const_i8("other", &[2, 3], &[1, 2, 3, 4, 5, 7]);
        // Same bytes, another type: not shared.
        let wide = b.const_i16("wide", &[3], &[0x0201, 0x0403, 0x0605]);
        let p = b.program();
        assert_eq!(p.tensors[again].offset, p.tensors[w].offset);
        assert_eq!(p.tensors[again].shape, [3, 2]);
        assert_eq!(p.tensors[again].name, "w_again");
        assert_ne!(p.tensors[other].offset, p.tensors[w].offset);
        assert_ne!(p.tensors[wide].offset, p.tensors[w].offset);
        // One data segment per distinct constant.
        assert_eq!(p.constants.len(), 3);
    }
}
