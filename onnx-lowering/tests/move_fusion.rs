//! Fusion of chained moves (`import::movement::fuse_moves`): a plan of two
//! random moves (a transpose with a strided window, then another) gives
//! the same values before and after fusion, and fuses when the second
//! move's reads follow the first's axes.

use opml_lowering::import::calibrate::evaluate;
use opml_lowering::import::movement::fuse_moves;
use opml_lowering::import::plan::{MovePart, Plan, Step};
use proptest::prelude::*;

fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// A move of a tensor of shape `shape`: axes permuted by `perm`, then on
/// each axis a window `[lo, lo + (len - 1) * step + 1)` with step `step`.
/// Returns the part and the output shape.
fn windowed(
    shape: &[usize],
    perm: &[usize],
    cut: &[(usize, usize, usize)],
) -> (MovePart, Vec<usize>) {
    let st = row_major(shape);
    let mut base = 0;
    let mut stride = Vec::new();
    let mut extent = Vec::new();
    for (j, p) in perm.iter().enumerate() {
        let n = shape[*p];
        let (lo, step, len) = cut[j];
        let lo = lo % n;
        let step = step.max(1);
        let len = len.clamp(1, (n - 1 - lo) / step + 1);
        base += lo * st[*p];
        stride.push(st[*p] * step);
        extent.push(len);
    }
    let part = MovePart {
        input: 0,
        base,
        stride,
        start: vec![0; perm.len()],
        extent: extent.clone(),
    };
    (part, extent)
}

fn two_moves(
    shape: &[usize],
    first: (Vec<usize>, Vec<(usize, usize, usize)>),
    second: (Vec<usize>, Vec<(usize, usize, usize)>),
) -> Plan {
    let mut plan = Plan::default();
    let x = plan.value("x", shape);
    plan.inputs.push(x);
    let (p1, s1) = windowed(shape, &first.0, &first.1);
    let mid = plan.value("mid", &s1);
    plan.steps.push(Step::Move {
        name: "m1".into(),
        inputs: vec![x],
        output: mid,
        parts: vec![p1],
        fill: 0.0,
    });
    let (p2, s2) = windowed(&s1, &second.0, &second.1);
    let y = plan.value("y", &s2);
    plan.steps.push(Step::Move {
        name: "m2".into(),
        inputs: vec![mid],
        output: y,
        parts: vec![p2],
        fill: 0.0,
    });
    plan.outputs.push(y);
    plan
}

fn check(plan: Plan) -> bool {
    let n = plan.values[0].len();
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let before = evaluate(&plan, std::slice::from_ref(&x)).unwrap();
    let mut fused = plan.clone();
    fuse_moves(&mut fused);
    let after = evaluate(&fused, &[x]).unwrap();
    assert_eq!(before, after);
    fused.steps.len() == 1
}

#[test]
fn transposed_slices_of_transposes_fuse() {
    let shape = [3, 4, 5];
    let first = (vec![2, 0, 1], vec![(1, 1, 3), (0, 1, 3), (1, 2, 2)]);
    let second = (vec![1, 2, 0], vec![(0, 2, 2), (0, 1, 2), (1, 1, 2)]);
    assert!(check(two_moves(&shape, first, second)));
}

#[test]
fn a_read_across_axes_is_not_fused() {
    // The second move reads the middle tensor flat with stride 3 over a
    // [2, 4] tensor: not one axis at a time.
    let mut plan = two_moves(
        &[2, 4],
        (vec![0, 1], vec![(0, 1, 2), (0, 1, 4)]),
        (vec![0, 1], vec![(0, 1, 2), (0, 1, 4)]),
    );
    if let Step::Move { parts, .. } = &mut plan.steps[1] {
        parts[0].stride = vec![0, 3];
        parts[0].extent = vec![1, 3];
    }
    plan.values[2].shape = vec![1, 3];
    assert!(!check(plan));
}

fn perm(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..n).collect::<Vec<usize>>()).prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn fused_moves_compute_the_same_values(
        shape in prop::collection::vec(1usize..5, 1..=4),
        cuts in prop::collection::vec((0usize..4, 1usize..3, 1usize..5), 8),
        seed in 0usize..1000,
    ) {
        let n = shape.len();
        let p1: Vec<usize> = (0..n).map(|i| (i + seed) % n).collect();
        let p2: Vec<usize> = (0..n).rev().map(|i| (i + seed / 7) % n).collect();
        let plan = two_moves(&shape, (p1, cuts[..n].to_vec()), (p2, cuts[4..4 + n].to_vec()));
        check(plan);
    }
}

#[test]
fn shuffled_permutations_agree() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    runner
        .run(&(perm(4), perm(4)), |(a, b)| {
            let plan = two_moves(
                &[2, 3, 4, 5],
                (a, vec![(1, 1, 9); 4]),
                (b, vec![(0, 1, 9); 4]),
            );
            prop_assert!(check(plan), "a permutation of a permutation fuses");
            Ok(())
        })
        .unwrap();
}
