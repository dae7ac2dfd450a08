//! The WAT text of the conv kernel: the fixed parts come from
//! [`super::text`], the unrolled runs (straight-line 3x3 window bodies,
//! eight-product runs and the `br_table` remainders) are generated here.

use super::text;
use crate::ops::family::Kernel;
use std::fmt::Write;
use std::sync::LazyLock;

/// The kernel text, generated once.
static TEXT: LazyLock<String> = LazyLock::new(kernel_text);

/// Descriptor words (index: meaning): 0 in, 1 w, 2 bias, 3 out, 4 mul,
/// 5 shift, 6 H, 7 W, 8 KH, 9 KW, 10 C/group, 11 C/group*KH*KW, 12 OC/group,
/// 13 OC, 14 OH, 15 OW, 16 sh, 17 sw, 18 pt, 19 pl, 20 dh, 21 dw, 22 ocb,
/// 23 rb, 24 xb, 25 nyb, 26 nxb, 27..=32 input and weight strides of the
/// outer, middle and inner reduction loops, 33 mode, 34 zp, 35 lo, 36 hi,
/// 37 C, 38 group, 39 pb, 40 pr, 41 input bytes per group, 42 first
/// column whose window lies inside the input, 43 number of such columns.
pub static KERNEL: LazyLock<Kernel> = LazyLock::new(|| Kernel {
    name: "conv",
    wat: TEXT.as_str(),
});

/// ` offset=k`, or nothing for `k = 0`.
fn off(k: usize) -> String {
    if k == 0 {
        String::new()
    } else {
        format!(" offset={k}")
    }
}

/// `$base`, or `$base + $stride{k}` for `k > 0`, as an address expression.
fn addr(base: &str, stride: &str, k: usize) -> String {
    if k == 0 {
        format!("(local.get ${base})")
    } else {
        format!("(i32.add (local.get ${base}) (local.get ${stride}{k}))")
    }
}

/// The product of the signed bytes at `x` and `y` (each `offset=k address`).
fn mul(x: &str, y: &str) -> String {
    format!("(i32.mul (i32.load8_s{x}) (i32.load8_s{y}))")
}

/// Product `k` of a run with constant offsets off `$pib` and `$pwb`.
fn mul_off(k: usize) -> String {
    let o = off(k);
    mul(
        &format!("{o} (local.get $pib)"),
        &format!("{o} (local.get $pwb)"),
    )
}

/// Product `k` of a 1x1 run: input stride `$a`, weights at offset `k`.
fn mul_1x1(k: usize) -> String {
    let w = format!("{} (local.get $pwb)", off(k));
    mul(&format!(" {}", addr("pib", "a", k)), &w)
}

/// Product `k` of a general run: input stride `$a`, weight stride `$b`.
fn mul_gen(k: usize) -> String {
    mul(
        &format!(" {}", addr("p", "a", k)),
        &format!(" {}", addr("q", "b", k)),
    )
}

/// `$acc += terms`, as one nested sum: the `local.set` line at indent `ind`,
/// the operands at indent `ind2`.
fn acc_sum(t: &mut String, ind: usize, ind2: usize, terms: &[String]) {
    let adds = vec!["(i32.add"; terms.len()].join(" ");
    let _ = writeln!(t, "{:ind$}(local.set $acc {adds}", "");
    let _ = writeln!(t, "{:ind2$}(local.get $acc)", "");
    for (i, term) in terms.iter().enumerate() {
        let close = if i + 1 == terms.len() { "))" } else { ")" };
        let _ = writeln!(t, "{:ind2$}{term}{close}", "");
    }
}

/// `n` blocks `$name0 .. $name{n-1}` opened on one line, their labels.
fn blocks(name: &str, n: usize, result: &str) -> (String, String) {
    let open: Vec<String> = (0..n)
        .map(|i| format!("(block ${name}{i}{result}"))
        .collect();
    let labels: Vec<String> = (0..n).map(|i| format!("${name}{i}")).collect();
    (open.join(" "), labels.join(" "))
}

/// `$acc` plus the last `$n % 8` products as a value: a `br_table` into an
/// unrolled run of `(i32.add)` on the stack.
fn rem_value(t: &mut String, ind: usize, name: &str, n: &str, term: fn(usize) -> String) {
    let (open, labels) = blocks(name, 8, " (result i32)");
    let half = open.match_indices(" (block").nth(3).map_or(0, |(i, _)| i);
    let (i2, i4) = (ind + 2, ind + 4);
    let _ = writeln!(t, "{:ind$}(local.set $acc", "");
    let _ = writeln!(t, "{:i2$}{}", "", &open[..half]);
    let _ = writeln!(t, "{:i2$}{}", "", &open[half + 1..]);
    let _ = writeln!(
        t,
        "{:i4$}(br_table {labels} (local.get $acc) (local.get ${n})))",
        ""
    );
    for k in (0..7).rev() {
        let close = if k == 0 { ")))" } else { "))" };
        let _ = writeln!(t, "{:i4$}(i32.add {}{close}", "", term(k));
    }
}

/// The last `$nr % 8` products as statements: a `br_table` into an unrolled
/// run of `$acc += ...`.
fn rem_stmt(t: &mut String, ind: usize) {
    let (open, labels) = blocks("r", 8, "");
    let i2 = ind + 2;
    let _ = writeln!(t, "{:ind$}{open}", "");
    let _ = writeln!(t, "{:i2$}(br_table {labels} (local.get $nr)))", "");
    for k in (0..7).rev() {
        let m = mul_gen(k);
        let _ = writeln!(
            t,
            "{:i2$}(local.set $acc (i32.add (local.get $acc) {m})))",
            ""
        );
    }
}

/// The row pointers `$p1`, `$p2` of a 3x3 window of `nky` rows.
fn rows3(t: &mut String, ind: usize, nky: usize) {
    if nky >= 2 {
        let _ = writeln!(
            t,
            "{:ind$}(local.set $p1 (i32.add (local.get $pib) (local.get $rs)))",
            ""
        );
    }
    if nky >= 3 {
        let _ = writeln!(
            t,
            "{:ind$}(local.set $p2 (i32.add (local.get $p1) (local.get $rs)))",
            ""
        );
    }
}

/// The products of a 3x3 window clipped to `nky x nkx` taps, weights off
/// `$w` (a window row `r` reads row pointer `r` at offsets `0..nkx`).
fn terms3(nky: usize, nkx: usize, w: &str) -> Vec<String> {
    let rows = ["pib", "p1", "p2"];
    let mut terms = Vec::new();
    for (r, row) in rows.iter().enumerate().take(nky) {
        for c in 0..nkx {
            let x = format!("{} (local.get ${row})", off(c));
            terms.push(mul(&x, &format!("{} (local.get ${w})", off(3 * r + c))));
        }
    }
    terms
}

/// The clipped 3x3 windows: one body per `nky4 + nkx` (bodies `16..=31`
/// without, `0..=15` with the channel loop), reached through a `br_table`.
fn clipped3(t: &mut String) {
    let (open, labels) = blocks("c", 32, "");
    let _ = writeln!(t, "{:16}{open}", "");
    let _ = writeln!(
        t,
        "{:18}(br_table {labels} (i32.add (local.get $nky4) (local.get $nkx))))",
        ""
    );
    for idx in (0..32usize).rev() {
        let (nky, nkx) = (idx % 16 / 4, idx % 4);
        if nky > 0 && nkx > 0 {
            let terms = terms3(nky, nkx, "pwb");
            if idx >= 16 {
                rows3(t, 16, nky);
                acc_sum(t, 16, 18, &terms);
            } else {
                let _ = writeln!(
                    t,
                    "{:16}(local.set $we (i32.add (local.get $pwb) (local.get $w9)))",
                    ""
                );
                let _ = writeln!(t, "{:16}(loop $e{idx}", "");
                rows3(t, 18, nky);
                acc_sum(t, 18, 20, &terms);
                let _ = writeln!(
                    t,
                    "{:18}(local.set $pib (i32.add (local.get $pib) (local.get $hw)))",
                    ""
                );
                let _ = writeln!(
                    t,
                    "{:18}(br_if $e{idx} (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))",
                    ""
                );
            }
        }
        let close = if idx == 0 { ")))" } else { "))" };
        let _ = writeln!(t, "{:16}(br $done{close}", "");
    }
}

/// The whole kernel function `$conv`.
pub fn kernel_text() -> String {
    let mut t = String::from(text::HEAD);
    acc_sum(&mut t, 14, 16, &terms3(3, 3, "wrow"));
    t.push_str(text::K3_HEAD);
    acc_sum(&mut t, 18, 20, &terms3(3, 3, "pwb"));
    t.push_str(text::K3_TAIL);
    acc_sum(&mut t, 22, 24, &(0..8).map(mul_1x1).collect::<Vec<_>>());
    t.push_str(text::K1_TAIL);
    rem_value(&mut t, 18, "t", "nrc", mul_1x1);
    t.push_str(text::CLIP_HEAD);
    clipped3(&mut t);
    t.push_str(text::UNIT_HEAD);
    acc_sum(&mut t, 28, 28, &(0..8).map(mul_off).collect::<Vec<_>>());
    t.push_str(text::F8_TAIL);
    rem_value(&mut t, 26, "s", "nr", mul_off);
    t.push_str(text::FB8_TAIL);
    rem_value(&mut t, 26, "s", "nr", mul_off);
    t.push_str(text::GEN_HEAD);
    acc_sum(&mut t, 24, 26, &(0..8).map(mul_gen).collect::<Vec<_>>());
    t.push_str(text::L8_TAIL);
    rem_stmt(&mut t, 18);
    t.push_str(text::TAIL);
    t
}

#[cfg(test)]
mod tests {
    /// The generated text is the committed golden text, byte for byte: a
    /// change to the generator that changes the module shows up here.
    #[test]
    fn text_matches_golden() {
        let golden = include_str!("kernel.wat.golden");
        let text = super::kernel_text();
        assert!(
            text == golden,
            "conv kernel text differs from kernel.wat.golden"
        );
        assert_eq!(super::KERNEL.wat, golden);
    }
}
