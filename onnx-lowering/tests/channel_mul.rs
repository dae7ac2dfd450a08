//! ChannelMul: Wasm kernel against the native executor and a
//! straightforward reference.

use opml_lowering::builder::ProgramBuilder;
use opml_lowering::ir::{ChannelMul, DType, Op, TensorKind};
use opml_lowering::Artifact;
use proptest::prelude::*;

mod common;
use common::{small_budget, Rng};

fn bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|x| *x as u8).collect()
}

#[derive(Clone, Copy, Debug)]
struct Case {
    c: u32,
    h: u32,
    w: u32,
    m: i32,
    sh: i32,
    zp: i32,
    lo: i32,
}

impl Case {
    fn artifact(&self) -> Artifact {
        let mut b = ProgramBuilder::new();
        let shape = [1, self.c, self.h, self.w];
        let a = b.tensor("a", DType::I8, &shape, TensorKind::Input);
        let s = b.tensor("s", DType::I8, &[1, self.c, 1, 1], TensorKind::Input);
        let y = b.tensor("y", DType::I8, &shape, TensorKind::Output);
        b.node(
            "mul",
            Op::ChannelMul(ChannelMul {
                a,
                scale: s,
                output: y,
                channels: self.c,
                inner: self.h * self.w,
                multiplier: self.m,
                shift: self.sh,
                zero_point: self.zp,
                lo: self.lo,
                hi: 127,
            }),
        );
        Artifact::build(b.finish(), small_budget()).unwrap()
    }

    fn reference(&self, a: &[i8], s: &[i8]) -> Vec<i8> {
        let p = (self.h * self.w) as usize;
        a.iter()
            .enumerate()
            .map(|(i, x)| {
                let prod = i64::from(*x) * i64::from(s[i / p]) * i64::from(self.m);
                let q = ((prod + (1i64 << (self.sh - 1))) >> self.sh) + i64::from(self.zp);
                q.clamp(i64::from(self.lo), 127) as i8
            })
            .collect()
    }

    fn check(&self, seed: u64) {
        let a = self.artifact();
        let mut rng = Rng(seed);
        let n = (self.c * self.h * self.w) as usize;
        let (x, s) = (rng.i8s(n), rng.i8s(self.c as usize));
        let inputs = vec![bytes(&x), bytes(&s)];
        let wasm = a.run_wasm(&inputs).unwrap();
        let native = a.run_native(&inputs).unwrap();
        assert_eq!(wasm.boundaries, native.boundaries);
        assert!(wasm.memory == native.memory, "memory images differ");
        let y: Vec<i8> = a
            .output(&wasm, a.program.outputs[0])
            .iter()
            .map(|v| *v as i8)
            .collect();
        assert_eq!(y, self.reference(&x, &s));
    }
}

#[test]
fn channel_mul_native_equals_wasm_and_reference() {
    let cases = [
        Case {
            c: 16,
            h: 12,
            w: 48,
            m: 1 << 30,
            sh: 37,
            zp: 0,
            lo: -128,
        },
        Case {
            c: 3,
            h: 1,
            w: 1,
            m: i32::MAX,
            sh: 38,
            zp: -2,
            lo: 0,
        },
        Case {
            c: 5,
            h: 7,
            w: 3,
            m: 1_500_000_000,
            sh: 40,
            zp: 3,
            lo: -128,
        },
        Case {
            c: 1,
            h: 200,
            w: 1,
            m: 1 << 30,
            sh: 1,
            zp: 0,
            lo: -128,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let a = c.artifact();
        if i == 0 {
            assert!(a.nodes[0].units > 1, "budget splits the node");
        }
        c.check(i as u64);
    }
}

#[test]
fn channel_mul_fuel_does_not_depend_on_the_input() {
    let c = Case {
        c: 9,
        h: 10,
        w: 11,
        m: 1 << 30,
        sh: 36,
        zp: 0,
        lo: -128,
    };
    let a = c.artifact();
    let recorded: Vec<u64> = a.nodes.iter().map(|n| n.end_fuel).collect();
    let mut rng = Rng(4);
    let n = (c.c * c.h * c.w) as usize;
    let random = vec![bytes(&rng.i8s(n)), bytes(&rng.i8s(c.c as usize))];
    let zeros = vec![vec![0; n], vec![0; c.c as usize]];
    let extreme = vec![vec![0x80; n], vec![0x7f; c.c as usize]];
    for input in [random, zeros, extreme] {
        let run = a.run_wasm(&input).unwrap();
        let fuel: Vec<u64> = run.boundaries[1..].iter().map(|s| s.fuel).collect();
        assert_eq!(fuel, recorded);
    }
}

#[test]
fn channel_mul_with_bad_parameters_is_refused() {
    let c = Case {
        c: 2,
        h: 2,
        w: 2,
        m: 1 << 30,
        sh: 36,
        zp: 0,
        lo: -128,
    };
    let a = c.artifact();
    let image = a.initial_image();
    for f in [
        |o: &mut ChannelMul| o.shift = 0,
        |o: &mut ChannelMul| o.multiplier = -1,
        |o: &mut ChannelMul| o.inner = 3,
        |o: &mut ChannelMul| o.channels = 0,
    ] {
        let mut p = a.program.clone();
        let Op::ChannelMul(o) = &mut p.nodes[0].op else {
            unreachable!()
        };
        f(o);
        assert!(p.validate(&image).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn random_channel_muls_agree(
        c in 1u32..20, h in 1u32..16, w in 1u32..16, m in (1i32 << 30)..i32::MAX,
        sh in 30i32..42, zp in -5i32..5, relu in any::<bool>(), seed in any::<u64>(),
    ) {
        Case { c, h, w, m, sh, zp, lo: if relu { 0 } else { -128 } }.check(seed);
    }
}
