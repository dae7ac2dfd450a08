//! Conv: native executor vs. Wasm sandbox at every node boundary, against a
//! plain reference convolution, and fuel that does not depend on the data.

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::codegen::CodegenOptions;
use opml_lowering::ir::{Conv, DType, Op, TensorId, TensorKind};
use opml_lowering::{Artifact, Run};
use proptest::prelude::*;

mod common;
use common::{random_requant, small_budget, Rng};

/// Shape and hyper-parameters of one conv.
#[derive(Clone, Copy, Debug)]
struct Spec {
    c: u32,
    h: u32,
    w: u32,
    oc: u32,
    k: [u32; 2],
    stride: [u32; 2],
    /// top, left, bottom, right
    pad: [u32; 4],
    dil: [u32; 2],
    group: u32,
    relu: bool,
}

impl Spec {
    /// Shrinks kernel or dilation so that the output has at least one row
    /// and one column.
    fn fixed(mut self) -> Self {
        for (i, n) in [self.h, self.w].into_iter().enumerate() {
            let room = n + self.pad[i] + self.pad[i + 2];
            if (self.k[i] - 1) * self.dil[i] + 1 > room {
                self.dil[i] = 1;
                self.k[i] = self.k[i].min(room);
            }
        }
        self
    }

    fn out(&self) -> [u32; 2] {
        let d = |i: usize, n: u32| {
            (n + self.pad[i] + self.pad[i + 2] - (self.k[i] - 1) * self.dil[i] - 1) / self.stride[i]
                + 1
        };
        [d(0, self.h), d(1, self.w)]
    }

    /// Products over input positions inside the input (padding excluded).
    fn macs(&self) -> u64 {
        let [oh, ow] = self.out();
        let valid = |i: usize, o: u32, n: u32| {
            (0..self.k[i])
                .filter(|k| {
                    let p = (o * self.stride[i] + k * self.dil[i]) as i64 - self.pad[i] as i64;
                    (0..n as i64).contains(&p)
                })
                .count() as u64
        };
        let rows: u64 = (0..oh).map(|y| valid(0, y, self.h)).sum();
        let cols: u64 = (0..ow).map(|x| valid(1, x, self.w)).sum();
        rows * cols * (self.oc * self.c / self.group) as u64
    }
}

/// The constants of one conv.
#[derive(Clone, Debug)]
struct Params {
    w: Vec<i8>,
    bias: Vec<i32>,
    mul: Vec<i32>,
    shift: Vec<i32>,
    zp: i32,
    lo: i32,
    hi: i32,
}

/// Appends a conv reading `input` and returns its output tensor.
fn add_conv(
    b: &mut ProgramBuilder,
    rng: &mut Rng,
    name: &str,
    input: TensorId,
    s: &Spec,
    kind: TensorKind,
) -> (TensorId, Params) {
    let n = s.oc as usize;
    let w = rng.i8s((s.oc * s.c / s.group * s.k[0] * s.k[1]) as usize);
    let bias: Vec<i32> = (0..n).map(|_| rng.range(-5000, 5000) as i32).collect();
    let (mul, shift) = random_requant(rng, n);
    let zp = if s.relu { 0 } else { rng.range(-5, 5) as i32 };
    let (lo, hi) = if s.relu { (0, 127) } else { (-128, 127) };
    let weight = b.const_i8(
        &format!("{name}.w"),
        &[s.oc, s.c / s.group, s.k[0], s.k[1]],
        &w,
    );
    let bias_t = b.const_i32(&format!("{name}.b"), &[s.oc], &bias);
    let requant = b.requant(&format!("{name}.rq"), &mul, &shift, zp, lo, hi);
    let [oh, ow] = s.out();
    let output = b.tensor(&format!("{name}.out"), DType::I8, &[1, s.oc, oh, ow], kind);
    let op = Conv {
        input,
        weight,
        bias: bias_t,
        output,
        stride: s.stride,
        pad: s.pad,
        dilation: s.dil,
        group: s.group,
        requant,
    };
    b.node(name, Op::Conv(op));
    (
        output,
        Params {
            w,
            bias,
            mul,
            shift,
            zp,
            lo,
            hi,
        },
    )
}

/// A program of one conv, its constants and a random input.
fn single(s: &Spec, seed: u64, opts: CodegenOptions) -> (Artifact, Params, Vec<u8>) {
    let mut rng = Rng(seed);
    let mut b = ProgramBuilder::new();
    let x = b.tensor("x", DType::I8, &[1, s.c, s.h, s.w], TensorKind::Input);
    let (_, params) = add_conv(&mut b, &mut rng, "conv", x, s, TensorKind::Output);
    let artifact = Artifact::build(b.finish(), opts).unwrap();
    let input = rng
        .i8s((s.c * s.h * s.w) as usize)
        .into_iter()
        .map(|v| v as u8)
        .collect();
    (artifact, params, input)
}

/// Runs both engines and checks they agree at every boundary and on the
/// final memory image.
fn both(a: &Artifact, input: &[u8]) -> Run {
    let wasm = a.run_wasm(&[input.to_vec()]).unwrap();
    let native = a.run_native(&[input.to_vec()]).unwrap();
    assert_eq!(wasm.boundaries, native.boundaries);
    assert!(wasm.memory == native.memory, "memory images differ");
    wasm
}

/// The IR semantics written out plainly, in `i64`.
fn reference(s: &Spec, p: &Params, x: &[i8]) -> Vec<i8> {
    let [oh, ow] = s.out();
    let (cg, ocpg) = (s.c / s.group, s.oc / s.group);
    let mut out = Vec::new();
    for oc in 0..s.oc {
        let g = oc / ocpg;
        for y in 0..oh {
            for xo in 0..ow {
                let mut acc = p.bias[oc as usize] as i64;
                for ic in 0..cg {
                    for ky in 0..s.k[0] {
                        for kx in 0..s.k[1] {
                            let iy = (y * s.stride[0] + ky * s.dil[0]) as i64 - s.pad[0] as i64;
                            let ix = (xo * s.stride[1] + kx * s.dil[1]) as i64 - s.pad[1] as i64;
                            if iy < 0 || ix < 0 || iy >= s.h as i64 || ix >= s.w as i64 {
                                continue;
                            }
                            let c = (g * cg + ic) as i64;
                            let v = x[((c * s.h as i64 + iy) * s.w as i64 + ix) as usize] as i64;
                            let wi = (((oc * cg + ic) * s.k[0] + ky) * s.k[1] + kx) as usize;
                            acc += v * p.w[wi] as i64;
                        }
                    }
                }
                assert!(acc.abs() < 1 << 31);
                let (m, sh) = (p.mul[oc as usize] as i64, p.shift[oc as usize] as i64);
                let q = ((acc * m + (1 << (sh - 1))) >> sh) + p.zp as i64;
                out.push(q.clamp(p.lo as i64, p.hi as i64) as i8);
            }
        }
    }
    out
}

fn fuel_per_node(run: &Run) -> Vec<u64> {
    run.boundaries
        .windows(2)
        .map(|b| b[1].fuel - b[0].fuel)
        .collect()
}

const PADDED: Spec = Spec {
    c: 4,
    h: 7,
    w: 9,
    oc: 6,
    k: [3, 2],
    stride: [2, 1],
    pad: [2, 1, 1, 2],
    dil: [2, 3],
    group: 2,
    relu: false,
};

#[test]
fn matches_the_reference_convolution() {
    for (i, s) in [
        PADDED,
        Spec {
            c: 3,
            oc: 6,
            group: 3,
            relu: true,
            ..PADDED
        },
        Spec {
            k: [1, 1],
            pad: [2, 2, 2, 2],
            ..PADDED
        },
    ]
    .into_iter()
    .enumerate()
    {
        let (a, p, x) = single(&s, 10 + i as u64, small_budget());
        assert!(
            a.nodes[0].units > 1,
            "budget splits the node: {:?}",
            a.nodes
        );
        let run = both(&a, &x);
        let xs: Vec<i8> = x.iter().map(|v| *v as i8).collect();
        let want: Vec<u8> = reference(&s, &p, &xs)
            .into_iter()
            .map(|v| v as u8)
            .collect();
        assert_eq!(a.output(&run, a.program.outputs[0]), &want[..], "{s:?}");
        assert!(want.iter().any(|v| *v != want[0]), "output is not constant");
    }
}

/// The kernel's special paths: whole 3x3 windows (with row dilation,
/// strides and groups), 1x1 kernels with channel counts that are not a
/// multiple of eight, and rows of unit-stride taps longer than eight.
#[test]
fn special_paths_match_the_reference_convolution() {
    let base = Spec {
        c: 11,
        h: 9,
        w: 10,
        oc: 5,
        k: [3, 3],
        stride: [1, 1],
        pad: [1, 1, 1, 1],
        dil: [1, 1],
        group: 1,
        relu: false,
    };
    let specs = [
        base,
        Spec {
            stride: [2, 2],
            dil: [2, 1],
            pad: [2, 0, 1, 2],
            ..base
        },
        Spec {
            c: 6,
            oc: 6,
            group: 3,
            relu: true,
            ..base
        },
        Spec {
            c: 1,
            oc: 3,
            h: 8,
            w: 8,
            ..base
        },
        Spec {
            pad: [2; 4],
            ..base
        },
        Spec {
            c: 3,
            h: 2,
            w: 3,
            pad: [2, 1, 2, 0],
            ..base
        },
        Spec {
            c: 2,
            h: 5,
            w: 4,
            oc: 4,
            group: 2,
            pad: [2; 4],
            ..base
        },
        Spec {
            k: [1, 1],
            pad: [0; 4],
            ..base
        },
        Spec {
            c: 19,
            k: [1, 1],
            stride: [2, 1],
            pad: [1, 0, 0, 1],
            ..base
        },
        Spec {
            c: 2,
            h: 6,
            w: 21,
            k: [2, 11],
            pad: [1, 4, 0, 5],
            ..base
        },
        Spec {
            c: 1,
            h: 5,
            w: 20,
            k: [3, 17],
            stride: [1, 2],
            pad: [1, 9, 1, 3],
            ..base
        },
    ];
    for (i, s) in specs.into_iter().enumerate() {
        for budget in [small_budget(), CodegenOptions::default()] {
            let (a, p, x) = single(&s, 40 + i as u64, budget);
            let run = both(&a, &x);
            let xs: Vec<i8> = x.iter().map(|v| *v as i8).collect();
            let want: Vec<u8> = reference(&s, &p, &xs)
                .into_iter()
                .map(|v| v as u8)
                .collect();
            assert_eq!(a.output(&run, a.program.outputs[0]), &want[..], "{s:?}");
            assert!(want.iter().any(|v| *v != want[0]), "output is not constant");
            let recorded: Vec<u64> = a.nodes.iter().map(|n| n.end_fuel).collect();
            for fill in [0u8, 0x7f, 0x80] {
                let run = both(&a, &vec![fill; x.len()]);
                let fuel: Vec<u64> = run.boundaries[1..].iter().map(|s| s.fuel).collect();
                assert_eq!(fuel, recorded, "{s:?}");
            }
        }
    }
}

#[test]
fn fuel_does_not_depend_on_the_input() {
    let (a, _, x) = single(&PADDED, 3, small_budget());
    let recorded: Vec<u64> = a.nodes.iter().map(|n| n.end_fuel).collect();
    for input in [
        vec![0u8; x.len()],
        x.clone(),
        vec![0x7f; x.len()],
        vec![0x80; x.len()],
    ] {
        let run = both(&a, &input);
        let fuel: Vec<u64> = run.boundaries[1..].iter().map(|s| s.fuel).collect();
        assert_eq!(fuel, recorded);
    }
}

#[test]
fn chained_convs_agree() {
    let mut rng = Rng(7);
    let mut b = ProgramBuilder::new();
    let s1 = Spec {
        c: 3,
        h: 9,
        w: 8,
        oc: 6,
        k: [3, 3],
        stride: [1, 1],
        pad: [1, 1, 1, 1],
        dil: [1, 1],
        group: 1,
        relu: true,
    };
    let x = b.tensor("x", DType::I8, &[1, 3, 9, 8], TensorKind::Input);
    let (h, _) = add_conv(&mut b, &mut rng, "conv1", x, &s1, TensorKind::Activation);
    let [oh, ow] = s1.out();
    let s2 = Spec {
        c: 6,
        h: oh,
        w: ow,
        oc: 6,
        stride: [2, 2],
        group: 6,
        relu: false,
        ..s1
    };
    add_conv(&mut b, &mut rng, "conv2", h, &s2, TensorKind::Output);
    let a = Artifact::build(b.finish(), small_budget()).unwrap();
    assert!(
        a.nodes.iter().all(|n| n.units > 1),
        "budget splits nodes: {:?}",
        a.nodes
    );
    let input: Vec<u8> = rng.i8s(3 * 9 * 8).into_iter().map(|v| v as u8).collect();
    let run = both(&a, &input);
    let y = a.output(&run, a.program.outputs[0]);
    assert!(y.iter().any(|v| *v != y[0]));
}

/// Fuel per product of larger convs with the default budget; the figures
/// are printed with `--nocapture`. Runs on a large stack: in the dev
/// profile the engine's dispatch is not always compiled to tail calls, so
/// its native stack grows with the instructions one step executes.
#[test]
fn fuel_per_product() {
    let big_stack = std::thread::Builder::new().stack_size(1 << 30);
    big_stack
        .spawn(fuel_per_product_of_large_convs)
        .unwrap()
        .join()
        .unwrap();
}

fn fuel_per_product_of_large_convs() {
    let dense = Spec {
        c: 32,
        h: 16,
        w: 16,
        oc: 16,
        k: [3, 3],
        stride: [1, 1],
        pad: [1, 1, 1, 1],
        dil: [1, 1],
        group: 1,
        relu: true,
    };
    let cases = [
        ("3x3", dense, 10.0),
        (
            "1x1",
            Spec {
                k: [1, 1],
                pad: [0; 4],
                ..dense
            },
            13.0,
        ),
        (
            "depthwise 3x3",
            Spec {
                oc: 32,
                group: 32,
                ..dense
            },
            17.5,
        ),
        (
            "3-channel 7x7/2",
            Spec {
                c: 3,
                h: 32,
                w: 32,
                k: [7, 7],
                stride: [2, 2],
                pad: [3, 3, 3, 3],
                ..dense
            },
            11.0,
        ),
    ];
    let cases = cases.into_iter().chain([(
        "5x5",
        Spec {
            k: [5, 5],
            pad: [2; 4],
            ..dense
        },
        12.0,
    )]);
    for (name, s, bound) in cases {
        let (a, _, x) = single(&s, 5, CodegenOptions::default());
        let run = both(&a, &x);
        let fuel = fuel_per_node(&run)[0];
        let per = fuel as f64 / s.macs() as f64;
        println!(
            "{name}: {} units, {fuel} fuel, {} products, {per:.2} fuel per product",
            a.nodes[0].units,
            s.macs()
        );
        assert!(per < bound, "{name}: {per:.2} fuel per product");
        let steps = run.boundaries[1].step as f64;
        assert!(fuel as f64 / steps < CodegenOptions::default().step_fuel as f64);
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (1u32..=6, 1u32..=9, 1u32..=9, 1u32..=6),
        (
            [1u32..=4, 1u32..=4],
            [1u32..=3, 1u32..=3],
            [0u32..=2, 0u32..=2, 0u32..=2, 0u32..=2],
            [1u32..=3, 1u32..=3],
        ),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |((c, h, w, oc), (k, stride, pad, dil), (depthwise, relu))| {
                // Depthwise when the channel counts allow it.
                let (oc, group) = if depthwise {
                    (c * oc.min(2), c)
                } else {
                    (oc, 1)
                };
                Spec {
                    c,
                    h,
                    w,
                    oc,
                    k,
                    stride,
                    pad,
                    dil,
                    group,
                    relu,
                }
                .fixed()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn random_convs_agree(s in spec(), seed in any::<u64>()) {
        let (a, p, x) = single(&s, seed, small_budget());
        let run = both(&a, &x);
        let xs: Vec<i8> = x.iter().map(|v| *v as i8).collect();
        let want: Vec<u8> = reference(&s, &p, &xs).into_iter().map(|v| v as u8).collect();
        prop_assert_eq!(a.output(&run, a.program.outputs[0]), &want[..]);
    }
}
