//! Rearrange (data movement): the Wasm kernel against the native executor
//! and a per-element reference of the IR spec, on random shapes, windows,
//! strides (0 included), element types and fills; fuel independent of the
//! data; malformed ops refused.

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::ir::{CopyPart, DType, Op, Rearrange, TensorKind};
use opml_lowering::Artifact;
use proptest::prelude::*;

mod common;
use common::{small_budget, Rng};

/// A part before its input tensor exists: input length, base, strides,
/// window.
#[derive(Clone, Debug)]
struct PartSpec {
    len: u32,
    base: u32,
    stride: [u32; 6],
    start: [u32; 6],
    extent: [u32; 6],
}

#[derive(Clone, Debug)]
struct Case {
    dtype: DType,
    shape: Vec<u32>,
    parts: Vec<PartSpec>,
    fill: i32,
}

fn dims6(shape: &[u32]) -> [u32; 6] {
    let mut d = [1u32; 6];
    for (slot, v) in d.iter_mut().rev().zip(shape.iter().rev()) {
        *slot = *v;
    }
    d
}

impl Case {
    fn artifact(&self) -> Artifact {
        let mut b = ProgramBuilder::new();
        let inputs: Vec<usize> = self
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| b.tensor(&format!("x{i}"), self.dtype, &[p.len], TensorKind::Input))
            .collect();
        let y = b.tensor("y", self.dtype, &self.shape, TensorKind::Output);
        let parts = self
            .parts
            .iter()
            .zip(&inputs)
            .map(|(p, t)| CopyPart {
                input: *t,
                base: p.base,
                stride: p.stride,
                start: p.start,
                extent: p.extent,
            })
            .collect();
        b.node(
            "move",
            Op::Rearrange(Rearrange {
                output: y,
                parts,
                fill: self.fill,
            }),
        );
        Artifact::build(b.finish(), small_budget()).unwrap()
    }

    /// The spec, element by element: the part whose window holds the
    /// element, else the fill.
    fn reference(&self, inputs: &[Vec<u8>]) -> Vec<u8> {
        let size = self.dtype.size() as usize;
        let dims = dims6(&self.shape);
        let len: u32 = dims.iter().product();
        let mut out = Vec::new();
        for i in 0..len {
            let mut o = [0u32; 6];
            let mut rest = i;
            for d in (0..6).rev() {
                o[d] = rest % dims[d];
                rest /= dims[d];
            }
            let hit = self.parts.iter().enumerate().find(|(_, p)| {
                (0..6).all(|d| p.start[d] <= o[d] && o[d] < p.start[d] + p.extent[d])
            });
            match hit {
                Some((k, p)) => {
                    let e = p.base
                        + (0..6)
                            .map(|d| (o[d] - p.start[d]) * p.stride[d])
                            .sum::<u32>();
                    let at = e as usize * size;
                    out.extend_from_slice(&inputs[k][at..at + size]);
                }
                None => out.extend_from_slice(&self.fill.to_le_bytes()[..size]),
            }
        }
        out
    }

    fn inputs(&self, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = Rng(seed);
        let size = self.dtype.size() as usize;
        self.parts
            .iter()
            .map(|p| {
                rng.i8s(p.len as usize * size)
                    .iter()
                    .map(|v| *v as u8)
                    .collect()
            })
            .collect()
    }

    fn check(&self, seed: u64) {
        let a = self.artifact();
        let inputs = self.inputs(seed);
        let wasm = a.run_wasm(&inputs).unwrap();
        let native = a.run_native(&inputs).unwrap();
        assert_eq!(wasm.boundaries, native.boundaries);
        assert!(wasm.memory == native.memory, "memory images differ");
        let y = a.output(&wasm, a.program.outputs[0]);
        assert_eq!(y, &self.reference(&inputs)[..]);
    }
}

/// Splits the output along `axis` into slabs; every `skip`-th slab is left
/// to the fill. Each slab gets its own input with random strides.
fn build(
    dtype: DType,
    shape: Vec<u32>,
    axis: usize,
    cuts: Vec<u32>,
    skip: usize,
    fill: i32,
    rng: &mut Rng,
) -> Case {
    let dims = dims6(&shape);
    let axis = 6 - shape.len() + axis % shape.len();
    let mut bounds: Vec<u32> = cuts.iter().map(|c| c % (dims[axis] + 1)).collect();
    bounds.extend([0, dims[axis]]);
    bounds.sort();
    bounds.dedup();
    let mut parts = Vec::new();
    for (i, w) in bounds.windows(2).enumerate() {
        if skip > 0 && i % skip == skip - 1 {
            continue;
        }
        let mut start = [0u32; 6];
        let mut extent = dims;
        start[axis] = w[0];
        extent[axis] = w[1] - w[0];
        let stride = [0; 6].map(|_: u32| rng.range(0, 4) as u32);
        let reach: u32 = (0..6).map(|d| (extent[d] - 1) * stride[d]).sum();
        let extra = rng.range(0, 5) as u32;
        parts.push(PartSpec {
            len: reach + 1 + extra,
            base: rng.range(0, i64::from(extra)) as u32,
            stride,
            start,
            extent,
        });
    }
    Case {
        dtype,
        shape,
        parts,
        fill,
    }
}

/// A transpose of a `[2, 3, 4, 5]` input to `[5, 2, 4, 3]` (no fill).
fn transpose_case(dtype: DType) -> Case {
    let in_dims = [2u32, 3, 4, 5];
    let in_strides = [60u32, 20, 5, 1];
    let perm = [3usize, 0, 2, 1];
    let shape: Vec<u32> = perm.iter().map(|p| in_dims[*p]).collect();
    let mut stride = [0u32; 6];
    for (i, p) in perm.iter().enumerate() {
        stride[2 + i] = in_strides[*p];
    }
    Case {
        dtype,
        shape: shape.clone(),
        parts: vec![PartSpec {
            len: 120,
            base: 0,
            stride,
            start: [0; 6],
            extent: dims6(&shape),
        }],
        fill: 0,
    }
}

#[test]
fn transposes_of_every_element_size_match_the_reference() {
    for (i, dt) in [DType::I8, DType::I16, DType::I32].into_iter().enumerate() {
        let c = transpose_case(dt);
        let a = c.artifact();
        assert!(a.nodes[0].units > 1, "budget splits the node");
        c.check(i as u64);
    }
}

#[test]
fn pad_concat_and_long_rows_match_the_reference() {
    let mut rng = Rng(9);
    // Pad-like: one window inside a larger output, the rest filled.
    let pad = Case {
        dtype: DType::I8,
        shape: vec![1, 3, 6, 7],
        parts: vec![PartSpec {
            len: 3 * 4 * 4,
            base: 0,
            stride: [0, 0, 0, 16, 4, 1],
            start: [0, 0, 0, 0, 1, 2],
            extent: [1, 1, 1, 3, 4, 4],
        }],
        fill: -7,
    };
    pad.check(1);
    // Concat of three inputs along axis 1 of an i16 [2, 9, 5].
    build(DType::I16, vec![2, 9, 5], 1, vec![2, 6], 0, 0, &mut rng).check(2);
    // One row of 3000 elements: split within the row.
    let long = build(DType::I32, vec![3000], 0, vec![], 0, 0, &mut rng);
    assert!(long.artifact().nodes[0].units > 3);
    long.check(3);
    // Only the fill (no parts).
    Case {
        dtype: DType::I32,
        shape: vec![5, 5],
        parts: vec![],
        fill: -123456,
    }
    .check(4);
}

#[test]
fn rearrange_fuel_does_not_depend_on_the_data() {
    let c = build(DType::I8, vec![3, 4, 10], 2, vec![3, 7], 2, 5, &mut Rng(3));
    let a = c.artifact();
    let recorded: Vec<u64> = a.nodes.iter().map(|n| n.end_fuel).collect();
    let sizes: Vec<usize> = c.parts.iter().map(|p| p.len as usize).collect();
    let zeros: Vec<Vec<u8>> = sizes.iter().map(|n| vec![0; *n]).collect();
    let ones: Vec<Vec<u8>> = sizes.iter().map(|n| vec![0xff; *n]).collect();
    for input in [c.inputs(1), zeros, ones] {
        let run = a.run_wasm(&input).unwrap();
        let fuel: Vec<u64> = run.boundaries[1..].iter().map(|s| s.fuel).collect();
        assert_eq!(fuel, recorded);
    }
}

#[test]
fn malformed_rearranges_are_refused() {
    let c = build(DType::I8, vec![4, 6], 1, vec![3], 0, 0, &mut Rng(2));
    let a = c.artifact();
    let image = a.initial_image();
    let edits: [fn(&mut Rearrange); 5] = [
        // overlapping windows
        |o| o.parts[1].start[5] = 2,
        // a read past the input
        |o| o.parts[0].base += 1000,
        // an empty window
        |o| o.parts[0].extent[4] = 0,
        // a window past the output
        |o| o.parts[1].extent[5] = 4,
        // a fill outside i8
        |o| o.fill = 200,
    ];
    for f in edits {
        let mut p = a.program.clone();
        let Op::Rearrange(o) = &mut p.nodes[0].op else {
            unreachable!()
        };
        f(o);
        assert!(p.validate(&image).is_err());
    }
    assert!(a.program.validate(&image).is_ok());
}

fn dtype() -> impl Strategy<Value = DType> {
    prop_oneof![Just(DType::I8), Just(DType::I16), Just(DType::I32)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_rearranges_agree(
        dt in dtype(),
        shape in prop::collection::vec(1u32..6, 1..=6),
        axis in 0usize..6,
        cuts in prop::collection::vec(0u32..6, 0..4),
        skip in 0usize..3,
        fill in -100i32..100,
        seed in any::<u64>(),
    ) {
        let c = build(dt, shape, axis, cuts, skip, fill, &mut Rng(seed));
        c.check(seed ^ 1);
    }
}
