//! MaxPool, Add and Lut: Wasm kernels against the native executor and
//! against straightforward reference implementations.

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::ir::{Add, DType, Lut, MaxPool, Op, TensorKind};
use opml_lowering::Artifact;
use proptest::prelude::*;

mod common;
use common::{random_requant, small_budget, Rng};

fn bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|x| *x as u8).collect()
}

/// Runs both engines, checks that every boundary and the final memory
/// agree, and returns the output bytes of the Wasm run.
fn agree(a: &Artifact, inputs: &[Vec<u8>]) -> Vec<i8> {
    let wasm = a.run_wasm(inputs).unwrap();
    let native = a.run_native(inputs).unwrap();
    assert_eq!(wasm.boundaries, native.boundaries);
    assert!(wasm.memory == native.memory, "memory images differ");
    a.output(&wasm, a.program.outputs[0])
        .iter()
        .map(|v| *v as i8)
        .collect()
}

/// Checks that random, zero and extreme inputs (of the given sizes) all
/// give the recorded node fuel.
fn same_fuel(a: &Artifact, sizes: &[usize]) {
    let recorded: Vec<u64> = a.nodes.iter().map(|n| n.end_fuel).collect();
    let mut rng = Rng(sizes.len() as u64);
    let random: Vec<Vec<u8>> = sizes.iter().map(|n| bytes(&rng.i8s(*n))).collect();
    let zeros: Vec<Vec<u8>> = sizes.iter().map(|n| vec![0; *n]).collect();
    let extreme: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| vec![0x7f + i as u8; *n])
        .collect();
    for input in [random, zeros, extreme] {
        let run = a.run_wasm(&input).unwrap();
        let fuel: Vec<u64> = run.boundaries[1..].iter().map(|s| s.fuel).collect();
        assert_eq!(fuel, recorded);
    }
}

// ---------------------------------------------------------------- MaxPool

#[derive(Clone, Copy, Debug)]
struct Pool {
    c: u32,
    h: u32,
    w: u32,
    k: [u32; 2],
    s: [u32; 2],
    pad: [u32; 4],
}

const fn pool(c: u32, h: u32, w: u32, k: [u32; 2], s: [u32; 2], pad: [u32; 4]) -> Pool {
    Pool { c, h, w, k, s, pad }
}

impl Pool {
    fn out(&self) -> (u32, u32) {
        let oh = (self.h + self.pad[0] + self.pad[2] - self.k[0]) / self.s[0] + 1;
        let ow = (self.w + self.pad[1] + self.pad[3] - self.k[1]) / self.s[1] + 1;
        (oh, ow)
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
        b.node("pool", self.op(x, y));
        Artifact::build(b.finish(), small_budget()).unwrap()
    }

    fn op(&self, input: usize, output: usize) -> Op {
        let (kernel, stride, pad) = (self.k, self.s, self.pad);
        Op::MaxPool(MaxPool {
            input,
            output,
            kernel,
            stride,
            pad,
        })
    }

    /// Straightforward reference: max over the in-range window positions.
    fn reference(&self, x: &[i8]) -> Vec<i8> {
        let (oh, ow) = self.out();
        let (h, w) = (self.h as i64, self.w as i64);
        let mut out = Vec::new();
        for c in 0..self.c as i64 {
            for y in 0..oh as i64 {
                for xx in 0..ow as i64 {
                    let mut best: Option<i8> = None;
                    for ky in 0..self.k[0] as i64 {
                        for kx in 0..self.k[1] as i64 {
                            let iy = y * self.s[0] as i64 - self.pad[0] as i64 + ky;
                            let ix = xx * self.s[1] as i64 - self.pad[1] as i64 + kx;
                            if (0..h).contains(&iy) && (0..w).contains(&ix) {
                                let v = x[((c * h + iy) * w + ix) as usize];
                                best = Some(best.map_or(v, |b| b.max(v)));
                            }
                        }
                    }
                    out.push(best.expect("window holds an input position"));
                }
            }
        }
        out
    }
}

#[test]
fn maxpool_matches_reference() {
    // 3x2 kernel, strides 2x1, asymmetric padding, a row wider than 8.
    let p = pool(3, 7, 11, [3, 2], [2, 1], [1, 0, 1, 1]);
    let a = p.artifact();
    assert!(a.nodes[0].units > 1, "budget splits the node");
    let x = Rng(5).i8s((p.c * p.h * p.w) as usize);
    assert_eq!(agree(&a, &[bytes(&x)]), p.reference(&x));
    // All -128 stays -128 (the kernel's starting value).
    assert!(agree(&a, &[vec![0x80; x.len()]]).iter().all(|v| *v == -128));
}

#[test]
fn maxpool_wide_windows_match_reference() {
    // Window rows of 8 to 12 bytes: the 8-byte loop plus every tail length.
    let p = pool(2, 5, 21, [2, 12], [1, 1], [1, 4, 0, 4]);
    let a = p.artifact();
    let x = Rng(6).i8s((p.c * p.h * p.w) as usize);
    assert_eq!(agree(&a, &[bytes(&x)]), p.reference(&x));
}

fn pool_params() -> impl Strategy<Value = Pool> {
    let dims = (1u32..6, 1u32..=10, 1u32..=10);
    let window = (
        [1u32..=4, 1u32..=4],
        [1u32..=3, 1u32..=3],
        any::<[u32; 4]>(),
    );
    (dims, window).prop_map(|((c, h, w), (k, s, pads))| {
        // Pads below the kernel; then at least one window: shrink the kernel
        // to the padded input (pads stay below it, the input is not empty).
        let pad = [0, 1, 2, 3].map(|i| pads[i] % k[i % 2]);
        let k = [0, 1].map(|i| k[i].min([h, w][i] + pad[i] + pad[i + 2]));
        pool(c, h, w, k, s, pad)
    })
}

// ---------------------------------------------------------------- Add

#[derive(Clone, Copy, Debug)]
struct AddParams {
    n: u32,
    ma: i32,
    mb: i32,
    shift: i32,
    zp: i32,
    lo: i32,
    hi: i32,
}

/// Add parameters: n, ma, mb, shift, zp, lo, hi.
const fn addp(n: u32, ma: i32, mb: i32, shift: i32, zp: i32, lo: i32, hi: i32) -> AddParams {
    AddParams {
        n,
        ma,
        mb,
        shift,
        zp,
        lo,
        hi,
    }
}

impl AddParams {
    fn artifact(&self) -> Artifact {
        let mut b = ProgramBuilder::new();
        let x = b.tensor("a", DType::I8, &[1, self.n], TensorKind::Input);
        let y = b.tensor("b", DType::I8, &[1, self.n], TensorKind::Input);
        let z = b.tensor("z", DType::I8, &[1, self.n], TensorKind::Output);
        b.node("add", Op::Add(self.op(x, y, z)));
        Artifact::build(b.finish(), small_budget()).unwrap()
    }

    fn op(&self, a: usize, b: usize, output: usize) -> Add {
        Add {
            a,
            b,
            output,
            a_multiplier: self.ma,
            b_multiplier: self.mb,
            shift: self.shift,
            zero_point: self.zp,
            lo: self.lo,
            hi: self.hi,
        }
    }

    fn reference(&self, a: &[i8], b: &[i8]) -> Vec<i8> {
        let s = self.shift as u32;
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                let acc =
                    *x as i64 * self.ma as i64 + *y as i64 * self.mb as i64 + (1i64 << (s - 1));
                let q = (acc >> s) + self.zp as i64;
                q.clamp(self.lo as i64, self.hi as i64) as i8
            })
            .collect()
    }
}

#[test]
fn add_matches_reference() {
    let mut rng = Rng(11);
    let (m, s) = random_requant(&mut rng, 2);
    let p = addp(203, m[0], -m[1], s[0], -3, -100, 90);
    let a = p.artifact();
    assert!(a.nodes[0].units > 1, "budget splits the node");
    let (x, y) = (rng.i8s(203), rng.i8s(203));
    let out = agree(&a, &[bytes(&x), bytes(&y)]);
    assert_eq!(out, p.reference(&x, &y));
    assert!(out.iter().any(|v| *v != out[0]));
    // Rounding: half goes towards positive infinity, and the clamps hold.
    let p = addp(6, 1, 1, 1, 0, -2, 100);
    let x = [1i8, -1, 3, -3, -128, 127];
    let y = [0i8, 0, 0, 0, -128, 127];
    assert_eq!(
        agree(&p.artifact(), &[bytes(&x), bytes(&y)]),
        [1, 0, 2, -1, -2, 100]
    );
}

fn add_params() -> impl Strategy<Value = AddParams> {
    let mul = (0u32..31, 0u32..31, any::<[i32; 2]>());
    let rest = (1u32..300, 1i32..=40, -20i32..20, -128i32..=0, 0i32..=127);
    (mul, rest).prop_map(|((ba, bb, raw), (n, shift, zp, lo, hi))| {
        // Multipliers of random magnitude and sign, |m| < 2^31.
        let mag = |bits: u32, r: i32| (r >> (31 - bits)) | 1;
        addp(n, mag(ba, raw[0]), mag(bb, raw[1]), shift, zp, lo, hi)
    })
}

// ---------------------------------------------------------------- Lut

fn lut_artifact(n: u32, table: &[i8]) -> Artifact {
    let mut b = ProgramBuilder::new();
    let x = b.tensor("x", DType::I8, &[n], TensorKind::Input);
    let table = b.const_i8("table", &[256], table);
    let y = b.tensor("y", DType::I8, &[n], TensorKind::Output);
    b.node(
        "lut",
        Op::Lut(Lut {
            input: x,
            table,
            output: y,
        }),
    );
    Artifact::build(b.finish(), small_budget()).unwrap()
}

#[test]
fn lut_matches_reference() {
    // A saturating square table, and every input value.
    let table: Vec<i8> = (0..256)
        .map(|i| ((i as u8 as i8 as i32).pow(2) / 64).min(127) as i8)
        .collect();
    let a = lut_artifact(1000, &table);
    assert!(a.nodes[0].units > 1, "budget splits the node");
    let x: Vec<i8> = (0..1000).map(|i| (i * 7 % 256) as u8 as i8).collect();
    let expected: Vec<i8> = x
        .iter()
        .map(|v| ((*v as i32).pow(2) / 64).min(127) as i8)
        .collect();
    assert_eq!(agree(&a, &[bytes(&x)]), expected);
}

// ---------------------------------------------------------------- fuel

#[test]
fn fuel_does_not_depend_on_the_input() {
    let p = pool(4, 9, 8, [3, 3], [2, 2], [1, 1, 1, 1]);
    same_fuel(&p.artifact(), &[(p.c * p.h * p.w) as usize]);
    let p = addp(150, 1 << 29, -(1 << 28), 30, 1, -128, 127);
    same_fuel(&p.artifact(), &[150, 150]);
    same_fuel(&lut_artifact(777, &Rng(9).i8s(256)), &[777]);
}

/// The unit split keeps steps near the fuel budget: on average no unit
/// exceeds it, and the nodes split into several units.
#[test]
fn units_stay_within_the_fuel_budget() {
    let budget = small_budget().budget.unit_fuel;
    let check = |a: &Artifact| {
        let mut prev = 0;
        for n in &a.nodes {
            let per_unit = (n.end_fuel - prev) / u64::from(n.units);
            assert!(
                n.units > 1 && per_unit <= budget,
                "{} units, {per_unit} fuel each",
                n.units
            );
            prev = n.end_fuel;
        }
    };
    for p in [
        pool(4, 9, 8, [3, 3], [2, 2], [1, 1, 1, 1]),
        pool(6, 4, 4, [2, 2], [2, 2], [0, 0, 0, 0]),
        pool(2, 10, 10, [4, 4], [1, 1], [3, 3, 3, 3]),
    ] {
        check(&p.artifact());
    }
    check(&addp(1000, 1, 1, 1, 0, -128, 127).artifact());
    check(&lut_artifact(3000, &[0; 256]));
}

// ---------------------------------------------------------------- chain

/// x -> maxpool -> add(pooled, skip) -> lut -> y.
#[test]
fn pool_add_lut_chain_agrees() {
    let mut rng = Rng(21);
    let p = pool(3, 8, 9, [2, 2], [2, 2], [0, 0, 0, 1]);
    let (oh, ow) = p.out();
    let n = p.c * oh * ow;
    let mut b = ProgramBuilder::new();
    let x = b.tensor("x", DType::I8, &[1, p.c, p.h, p.w], TensorKind::Input);
    let o = [1, p.c, oh, ow];
    let skip = b.tensor("skip", DType::I8, &o, TensorKind::Input);
    let pooled = b.tensor("pooled", DType::I8, &o, TensorKind::Activation);
    b.node("pool", p.op(x, pooled));
    let sum = b.tensor("sum", DType::I8, &o, TensorKind::Activation);
    let ap = addp(n, 3 << 28, -(1 << 29), 30, 5, -128, 127);
    b.node("add", Op::Add(ap.op(pooled, skip, sum)));
    let table = rng.i8s(256);
    let t = b.const_i8("table", &[256], &table);
    let y = b.tensor("y", DType::I8, &o, TensorKind::Output);
    b.node(
        "lut",
        Op::Lut(Lut {
            input: sum,
            table: t,
            output: y,
        }),
    );
    let a = Artifact::build(b.finish(), small_budget()).unwrap();
    let xs = rng.i8s((p.c * p.h * p.w) as usize);
    let ss = rng.i8s(n as usize);
    let out = agree(&a, &[bytes(&xs), bytes(&ss)]);
    let expected: Vec<i8> = ap
        .reference(&p.reference(&xs), &ss)
        .iter()
        .map(|v| table[*v as u8 as usize])
        .collect();
    assert_eq!(out, expected);
    same_fuel(&a, &[xs.len(), ss.len()]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_maxpools_agree(p in pool_params(), seed in any::<u64>()) {
        let a = p.artifact();
        let x = Rng(seed).i8s((p.c * p.h * p.w) as usize);
        prop_assert_eq!(agree(&a, &[bytes(&x)]), p.reference(&x));
    }

    #[test]
    fn random_adds_agree(p in add_params(), seed in any::<u64>()) {
        let a = p.artifact();
        let mut rng = Rng(seed);
        let (x, y) = (rng.i8s(p.n as usize), rng.i8s(p.n as usize));
        prop_assert_eq!(agree(&a, &[bytes(&x), bytes(&y)]), p.reference(&x, &y));
    }

    #[test]
    fn random_luts_agree(n in 1u32..1500, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let table = rng.i8s(256);
        let a = lut_artifact(n, &table);
        let x = rng.i8s(n as usize);
        let expected: Vec<i8> = x.iter().map(|v| table[*v as u8 as usize]).collect();
        prop_assert_eq!(agree(&a, &[bytes(&x)]), expected);
    }
}
