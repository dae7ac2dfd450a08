//! Binary (broadcasting element-wise ops of two activations) and AvgPool:
//! Wasm kernels against the native executor and references of the IR
//! spec, on random shapes, broadcasts, kinds and requantizations; fuel
//! independent of the data; malformed ops refused.

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::ir::{AvgPool, Binary, BinaryKind, DType, Op, TensorKind};
use opml_lowering::Artifact;
use proptest::prelude::*;

mod common;
use common::{small_budget, Rng};

const KINDS: [BinaryKind; 11] = [
    BinaryKind::Add,
    BinaryKind::Mul,
    BinaryKind::Max,
    BinaryKind::Min,
    BinaryKind::Select,
    BinaryKind::Equal,
    BinaryKind::Less,
    BinaryKind::LessOrEqual,
    BinaryKind::And,
    BinaryKind::Or,
    BinaryKind::Xor,
];

fn dims6(shape: &[u32]) -> [u32; 6] {
    let mut d = [1u32; 6];
    for (slot, v) in d.iter_mut().rev().zip(shape.iter().rev()) {
        *slot = *v;
    }
    d
}

/// Row-major strides of `shape` (right-aligned to 6 axes) with broadcast
/// axes (size 1) at stride 0.
fn broadcast_strides(shape: &[u32; 6]) -> [u32; 6] {
    let mut s = [0u32; 6];
    let mut acc = 1;
    for d in (0..6).rev() {
        s[d] = if shape[d] == 1 { 0 } else { acc };
        acc *= shape[d];
    }
    s
}

#[derive(Clone, Debug)]
struct Case {
    kind: BinaryKind,
    out: Vec<u32>,
    /// Per operand (a, b, c): which output axes it broadcasts.
    bcast: [[bool; 6]; 3],
    ma: i32,
    mb: i32,
    shift: i32,
    lo: i32,
    hi: i32,
}

impl Case {
    fn operand_shape(&self, k: usize) -> [u32; 6] {
        let d = dims6(&self.out);
        [0, 1, 2, 3, 4, 5].map(|i| if self.bcast[k][i] { 1 } else { d[i] })
    }

    fn op(&self, a: usize, b: usize, c: usize, output: usize) -> Binary {
        Binary {
            kind: self.kind,
            a,
            b,
            c,
            output,
            a_stride: broadcast_strides(&self.operand_shape(0)),
            b_stride: broadcast_strides(&self.operand_shape(1)),
            c_stride: broadcast_strides(&self.operand_shape(2)),
            a_multiplier: self.ma,
            b_multiplier: self.mb,
            shift: self.shift,
            lo: self.lo,
            hi: self.hi,
        }
    }

    fn artifact(&self) -> Artifact {
        let mut b = ProgramBuilder::new();
        let t: Vec<usize> = (0..3)
            .map(|k| {
                let s = self.operand_shape(k);
                b.tensor(&format!("in{k}"), DType::I8, &s, TensorKind::Input)
            })
            .collect();
        let y = b.tensor("y", DType::I8, &self.out, TensorKind::Output);
        b.node("bin", Op::Binary(self.op(t[0], t[1], t[2], y)));
        Artifact::build(b.finish(), small_budget()).unwrap()
    }

    /// The spec, element by element (numpy broadcasting by index).
    fn reference(&self, x: &[Vec<i8>]) -> Vec<i8> {
        let d = dims6(&self.out);
        let n: u32 = d.iter().product();
        let shapes = [0, 1, 2].map(|k| self.operand_shape(k));
        (0..n)
            .map(|i| {
                let mut o = [0u32; 6];
                let mut rest = i;
                for ax in (0..6).rev() {
                    o[ax] = rest % d[ax];
                    rest /= d[ax];
                }
                let v: Vec<i64> = (0..3)
                    .map(|k| {
                        let mut e = 0;
                        for ax in 0..6 {
                            let idx = if shapes[k][ax] == 1 { 0 } else { o[ax] };
                            e = e * shapes[k][ax] + idx;
                        }
                        i64::from(x[k][e as usize])
                    })
                    .collect();
                let (xa, yb) = (v[0] * i64::from(self.ma), v[1] * i64::from(self.mb));
                let raw = match self.kind {
                    BinaryKind::Add => xa + yb,
                    BinaryKind::Mul => v[0] * v[1] * i64::from(self.ma),
                    BinaryKind::Max => xa.max(yb),
                    BinaryKind::Min => xa.min(yb),
                    BinaryKind::Select => {
                        if v[2] != 0 {
                            xa
                        } else {
                            yb
                        }
                    }
                    BinaryKind::Equal => return (xa == yb) as i8,
                    BinaryKind::Less => return (xa < yb) as i8,
                    BinaryKind::LessOrEqual => return (xa <= yb) as i8,
                    BinaryKind::And => return (v[0] != 0 && v[1] != 0) as i8,
                    BinaryKind::Or => return (v[0] != 0 || v[1] != 0) as i8,
                    BinaryKind::Xor => return ((v[0] != 0) ^ (v[1] != 0)) as i8,
                };
                let r = raw + (1i64 << (self.shift - 1));
                (r >> self.shift).clamp(i64::from(self.lo), i64::from(self.hi)) as i8
            })
            .collect()
    }

    /// Random operands, a quarter of them 0 (so that conditions, logic
    /// and equalities take both values).
    fn inputs(&self, seed: u64) -> Vec<Vec<i8>> {
        let mut rng = Rng(seed);
        (0..3)
            .map(|k| {
                let n: u32 = self.operand_shape(k).iter().product();
                (0..n)
                    .map(|_| {
                        let v = rng.next();
                        if v.is_multiple_of(4) {
                            0
                        } else {
                            (v >> 8) as i8 % 6
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn check(&self, seed: u64) {
        let a = self.artifact();
        let x = self.inputs(seed);
        let bytes: Vec<Vec<u8>> = x
            .iter()
            .map(|v| v.iter().map(|b| *b as u8).collect())
            .collect();
        let wasm = a.run_wasm(&bytes).unwrap();
        let native = a.run_native(&bytes).unwrap();
        assert_eq!(wasm.boundaries, native.boundaries);
        assert!(wasm.memory == native.memory, "memory images differ");
        let y: Vec<i8> = a
            .output(&wasm, a.program.outputs[0])
            .iter()
            .map(|v| *v as i8)
            .collect();
        assert_eq!(y, self.reference(&x), "{self:?}");
    }
}

fn case(kind: BinaryKind, out: &[u32], bcast: [[bool; 6]; 3]) -> Case {
    Case {
        kind,
        out: out.to_vec(),
        bcast,
        ma: 1 << 30,
        mb: -(3 << 28),
        shift: 29,
        lo: -128,
        hi: 127,
    }
}

#[test]
fn every_kind_broadcasts_like_numpy() {
    const F: bool = false;
    const T: bool = true;
    // [2, 3, 4, 5] against [1, 3, 1, 5], condition [2, 1, 4, 1]
    let bc = [[F, F, F, F, F, F], [F, F, T, F, T, F], [F, F, F, T, F, T]];
    for (i, kind) in KINDS.into_iter().enumerate() {
        let c = case(kind, &[2, 3, 4, 5], bc);
        if i == 0 {
            assert!(c.artifact().nodes[0].units > 1, "budget splits the node");
        }
        c.check(i as u64);
        // and the other way round, with a 1-D output of one long row
        let mut c = case(kind, &[700], [[T; 6], [F; 6], [F; 6]]);
        c.ma = 3;
        c.mb = 5;
        c.shift = 2;
        c.check(100 + i as u64);
    }
}

#[test]
fn binary_fuel_does_not_depend_on_the_data() {
    for kind in [BinaryKind::Add, BinaryKind::Select, BinaryKind::Equal] {
        let c = case(kind, &[3, 7, 9], [[false; 6], [true; 6], [false; 6]]);
        let a = c.artifact();
        let recorded: Vec<u64> = a.nodes.iter().map(|n| n.end_fuel).collect();
        let sizes = [189usize, 1, 189];
        let random: Vec<Vec<u8>> = c
            .inputs(7)
            .iter()
            .map(|v| v.iter().map(|b| *b as u8).collect())
            .collect();
        for input in [
            random,
            sizes.iter().map(|n| vec![0; *n]).collect(),
            sizes.iter().map(|n| vec![0x80; *n]).collect(),
        ] {
            let run = a.run_wasm(&input).unwrap();
            let fuel: Vec<u64> = run.boundaries[1..].iter().map(|s| s.fuel).collect();
            assert_eq!(fuel, recorded);
        }
    }
}

#[test]
fn malformed_binaries_are_refused() {
    let c = case(BinaryKind::Add, &[4, 6], [[false; 6]; 3]);
    let a = c.artifact();
    let image = a.initial_image();
    let edits: [fn(&mut Binary); 4] = [
        |o| o.shift = 0,
        |o| o.lo = -200,
        |o| o.a_stride[5] = 2,
        |o| o.b_stride[4] = 7,
    ];
    for f in edits {
        let mut p = a.program.clone();
        let Op::Binary(o) = &mut p.nodes[0].op else {
            unreachable!()
        };
        f(o);
        assert!(p.validate(&image).is_err());
    }
}

fn kind() -> impl Strategy<Value = BinaryKind> {
    (0usize..11).prop_map(|i| KINDS[i])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn random_broadcasts_agree(
        kind in kind(),
        out in prop::collection::vec(1u32..5, 1..=6),
        bcast in any::<[[bool; 6]; 3]>(),
        ma in any::<i32>(),
        mb in any::<i32>(),
        same in any::<bool>(),
        shift in 20i32..40,
        lo in -128i32..0,
        seed in any::<u64>(),
    ) {
        let mut c = case(kind, &out, bcast);
        (c.ma, c.mb, c.shift, c.lo) = (ma, if same { ma } else { mb }, shift, lo);
        c.check(seed);
    }
}

// ---------------------------------------------------------------- AvgPool

#[derive(Clone, Copy, Debug)]
struct Pool {
    c: u32,
    h: u32,
    w: u32,
    k: [u32; 2],
    s: [u32; 2],
    pad: [u32; 4],
    include: bool,
}

impl Pool {
    fn out(&self) -> (u32, u32) {
        let oh = (self.h + self.pad[0] + self.pad[2] - self.k[0]) / self.s[0] + 1;
        let ow = (self.w + self.pad[1] + self.pad[3] - self.k[1]) / self.s[1] + 1;
        (oh, ow)
    }

    /// Multiplier and shift per count: `1 / n` in units of `2^-(s)`,
    /// different per count so that a wrong count shows.
    fn tables(&self) -> (Vec<i32>, Vec<i32>) {
        let n = (self.k[0] * self.k[1]) as usize;
        let m = (0..=n)
            .map(|c| ((1u64 << 30) / (c.max(1) as u64)) as i32)
            .collect();
        (m, vec![30; n + 1])
    }

    fn artifact(&self) -> Artifact {
        let (oh, ow) = self.out();
        let mut b = ProgramBuilder::new();
        let x = b.tensor(
            "x",
            DType::I8,
            &[1, self.c, self.h, self.w],
            TensorKind::Input,
        );
        let y = b.tensor("y", DType::I8, &[1, self.c, oh, ow], TensorKind::Output);
        let (m, s) = self.tables();
        let n = m.len() as u32;
        let multiplier = b.const_i32("m", &[n], &m);
        let shift = b.const_i32("s", &[n], &s);
        b.node(
            "avg",
            Op::AvgPool(AvgPool {
                input: x,
                output: y,
                kernel: self.k,
                stride: self.s,
                pad: self.pad,
                count_include_pad: self.include,
                multiplier,
                shift,
                lo: -128,
                hi: 127,
            }),
        );
        Artifact::build(b.finish(), small_budget()).unwrap()
    }

    fn reference(&self, x: &[i8]) -> Vec<i8> {
        let (oh, ow) = self.out();
        let (h, w) = (i64::from(self.h), i64::from(self.w));
        let (m, s) = self.tables();
        let p = self.pad.map(i64::from);
        let mut out = Vec::new();
        for c in 0..i64::from(self.c) {
            for y in 0..i64::from(oh) {
                for xx in 0..i64::from(ow) {
                    let (mut sum, mut n) = (0i64, 0usize);
                    for ky in 0..i64::from(self.k[0]) {
                        for kx in 0..i64::from(self.k[1]) {
                            let iy = y * i64::from(self.s[0]) - p[0] + ky;
                            let ix = xx * i64::from(self.s[1]) - p[1] + kx;
                            let inside = (0..h).contains(&iy) && (0..w).contains(&ix);
                            let padded =
                                (-p[0]..h + p[2]).contains(&iy) && (-p[1]..w + p[3]).contains(&ix);
                            if inside {
                                sum += i64::from(x[((c * h + iy) * w + ix) as usize]);
                            }
                            if inside || (self.include && padded) {
                                n += 1;
                            }
                        }
                    }
                    let q = (sum * i64::from(m[n]) + (1i64 << (s[n] - 1))) >> s[n];
                    out.push(q.clamp(-128, 127) as i8);
                }
            }
        }
        out
    }

    fn check(&self, seed: u64) {
        let a = self.artifact();
        let x = Rng(seed).i8s((self.c * self.h * self.w) as usize);
        let bytes = vec![x.iter().map(|v| *v as u8).collect::<Vec<u8>>()];
        let wasm = a.run_wasm(&bytes).unwrap();
        let native = a.run_native(&bytes).unwrap();
        assert_eq!(wasm.boundaries, native.boundaries);
        assert!(wasm.memory == native.memory, "memory images differ");
        let y: Vec<i8> = a
            .output(&wasm, a.program.outputs[0])
            .iter()
            .map(|v| *v as i8)
            .collect();
        assert_eq!(y, self.reference(&x), "{self:?}");
    }
}

#[test]
fn avg_pool_counts_padding_both_ways() {
    for include in [false, true] {
        let p = Pool {
            c: 3,
            h: 7,
            w: 9,
            k: [3, 3],
            s: [2, 2],
            pad: [1, 1, 1, 2],
            include,
        };
        assert!(p.artifact().nodes[0].units > 1, "budget splits the node");
        p.check(include as u64);
    }
}

fn pool_params() -> impl Strategy<Value = Pool> {
    let dims = (1u32..5, 1u32..=9, 1u32..=9);
    let window = (
        [1u32..=4, 1u32..=4],
        [1u32..=3, 1u32..=3],
        any::<[u32; 4]>(),
        any::<bool>(),
    );
    (dims, window).prop_map(|((c, h, w), (k, s, pads, include))| {
        let pad = [0, 1, 2, 3].map(|i| pads[i] % k[i % 2]);
        let k = [0, 1].map(|i| k[i].min([h, w][i] + pad[i] + pad[i + 2]));
        let pad = [0, 1, 2, 3].map(|i| pad[i].min(k[i % 2] - 1));
        Pool {
            c,
            h,
            w,
            k,
            s,
            pad,
            include,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_avg_pools_agree(p in pool_params(), seed in any::<u64>()) {
        p.check(seed);
    }
}
