//! `make bench`: what the sandbox costs, measured against references run in
//! the same process (figures and conclusions in BENCHMARKS.md).
//!
//! Workload: a generated i32 matrix multiply C = A x B (N x N); step 0 fills A
//! and B, each later step computes one row of C, so a step reads all of B.
//!
//! 1. hashing overhead: plain wasmi, wasmi fuel metering, the instrumented
//!    module alone and the full sandbox (marks + Merkle updates);
//! 2. chunk size: sandbox time, one-step proof size, proving and verifying;
//! 3. the one-step proof of a step of about 10^4 fuel;
//! 4. dirty tracking by marks vs diffing memory against a shadow copy;
//! 5. checkpoint interval K: snapshot cost vs replaying steps.
//!
//! Times are medians over repetitions; ratios are medians of per-repetition
//! ratios, each repetition running all variants back to back (the range of
//! the per-repetition ratios shows the noise). Flags: `--quick` (small smoke
//! run), `--section K` (one section; 4 and 5 run together).

use opml_runtime::admission::admit;
use opml_runtime::engine::{engine, Meter};
use opml_runtime::instrument::{instrument, Variant, MARK_REGIONS};
use opml_runtime::limits::{DEFAULT_CHUNK_LOG2, MAX_PROOF_CHUNK_BYTES, PAGE_SIZE};
use opml_runtime::merkle::MerkleTree;
use opml_runtime::{verify_one_step, Program, Sandbox, Status};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use wasmi::{Engine, Instance, Module, Store};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const CHUNK_LOG2S: [u32; 4] = [6, 8, 10, 12];

/// The generated matmul: A at `S`, B at `2S`, C at `3S` with `S = 4 N^2`
/// rounded up to 4 KiB; bytes 0..4 count the rows done, 4..8 flag the fill.
struct Matmul {
    n: u32,
    chunk_log2: u32,
    /// Declared memory size (min = max), at least what the matrices need.
    pages: u32,
}

impl Matmul {
    fn new(n: u32, chunk_log2: u32) -> Self {
        let stride = (4 * n * n).next_multiple_of(4096) as u64;
        let pages = (4 * stride).div_ceil(PAGE_SIZE) as u32;
        Self {
            n,
            chunk_log2,
            pages,
        }
    }

    /// Distinct chunks a step may touch: step 0 writes A and B; a row step
    /// reads B and a row of A and writes a row of C and the counter.
    fn max_touched(&self) -> u32 {
        let chunk = 1u32 << self.chunk_log2;
        let t = 2 * (4 * self.n * self.n).div_ceil(chunk) + 2 * (4 * self.n).div_ceil(chunk) + 8;
        assert!(u64::from(t) << self.chunk_log2 <= MAX_PROOF_CHUNK_BYTES);
        t
    }

    /// The module; with `charges` / `marks`, the inner loop gets by hand what the
    /// instrumenter adds to it (opml's fuel charge of the loop's region; for
    /// each load, a read mark of the chunk of its first byte in region R, the
    /// first `max_chunks` bytes, of a second memory of `MARK_REGIONS *
    /// max_chunks` bytes): references for plain wasmi only.
    fn code(&self, charges: bool, marks: bool) -> Res<Vec<u8>> {
        let (n, nn, row) = (self.n, self.n * self.n, 4 * self.n);
        let s = (4 * nn).next_multiple_of(4096);
        let (a, b, c) = (s, 2 * s, 3 * s);
        let (pages, log2, touched) = (self.pages, self.chunk_log2, self.max_touched());
        let fuel = 40 * u64::from(nn) + 1000;
        let mut decls = String::new();
        let mut charge = "";
        if charges {
            decls += "(global $fuel (mut i64) (i64.const 0x3fffffffffffffff))";
            charge = "(if (i64.lt_u (global.get $fuel) (i64.const 19)) (then unreachable))
              (global.set $fuel (i64.sub (global.get $fuel) (i64.const 19)))";
        }
        if marks {
            // As the instrumenter sizes the marks memory.
            let max_chunks = (u64::from(pages) * PAGE_SIZE) >> log2;
            let mark_pages = (MARK_REGIONS * max_chunks).div_ceil(PAGE_SIZE).max(1);
            decls += &format!("(memory $marks {mark_pages} {mark_pages})");
        }
        let load = |p: &str| match marks {
            false => format!("(i32.load (local.get {p}))"),
            true => format!(
                "(block (result i32) (i32.load (local.tee $t (local.get {p})))
                (i32.store8 $marks (i32.shr_u (local.get $t) (i32.const {log2})) (i32.const 1)))"
            ),
        };
        let (load_a, load_b) = (load("$pa"), load("$pb"));
        let wat = format!(
            r#"(module
  (memory (export "memory") {pages} {pages}) {decls}
  (global (export "opml_step_fuel") i64 (i64.const {fuel}))
  (global (export "opml_chunk_log2") i32 (i32.const {log2}))
  (global (export "opml_max_touched") i32 (i32.const {touched}))
  (func $init (local $i i32) (loop $l
    (i32.store offset={a} (i32.shl (local.get $i) (i32.const 2)) (i32.sub (i32.rem_u
      (i32.mul (local.get $i) (i32.const 7)) (i32.const 17)) (i32.const 8)))
    (i32.store offset={b} (i32.shl (local.get $i) (i32.const 2)) (i32.sub (i32.rem_u
      (i32.mul (local.get $i) (i32.const 5)) (i32.const 13)) (i32.const 6)))
    (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const {nn}))))
    (i32.store (i32.const 4) (i32.const 1)))
  (func $row (param $r i32)
    (local $j i32) (local $pa i32) (local $pb i32) (local $end i32) (local $acc i32) (local $t i32)
    (loop $lj
      (local.set $acc (i32.const 0))
      (local.set $pa (i32.add (i32.const {a}) (i32.mul (local.get $r) (i32.const {row}))))
      (local.set $end (i32.add (local.get $pa) (i32.const {row})))
      (local.set $pb (i32.add (i32.const {b}) (i32.shl (local.get $j) (i32.const 2))))
      (loop $lk {charge}
        (local.set $acc (i32.add (local.get $acc) (i32.mul {load_a} {load_b})))
        (local.set $pb (i32.add (local.get $pb) (i32.const {row})))
        (br_if $lk (i32.ne (local.tee $pa (i32.add (local.get $pa) (i32.const 4)))
                           (local.get $end))))
      (i32.store offset={c} (i32.add (i32.mul (local.get $r) (i32.const {row}))
        (i32.shl (local.get $j) (i32.const 2))) (local.get $acc))
      (br_if $lj (i32.lt_u (local.tee $j (i32.add (local.get $j) (i32.const 1))) (i32.const {n})))))
  (func (export "step") (result i32)
    (local $r i32)
    (if (i32.eqz (i32.load (i32.const 4))) (then (call $init) (return (i32.const 1))))
    (local.set $r (i32.load (i32.const 0)))
    (call $row (local.get $r))
    (i32.store (i32.const 0) (i32.add (local.get $r) (i32.const 1)))
    (i32.lt_u (i32.add (local.get $r) (i32.const 1)) (i32.const {n}))))"#
        );
        Ok(wat::parse_str(wat)?)
    }
}

/// `engine()` exactly, with wasmi's own fuel metering switched on.
fn fuel_engine() -> Engine {
    let mut c = engine().config().clone();
    c.consume_fuel(true);
    Engine::new(&c)
}

/// One module compiled every way it is measured.
struct Setup {
    code: Vec<u8>,
    engine: Engine,
    fuel_engine: Engine,
    plain: Module,
    metered: Module,
    fast: Module,
    /// The hand-instrumented references: charges only, marks only.
    by_hand: [Module; 2],
    step_fuel: u64,
    program: Arc<Program>,
}

impl Setup {
    fn new(mm: &Matmul) -> Res<Self> {
        let code = mm.code(false, false)?;
        let info = admit(&code)?;
        let (engine, fuel_engine) = (engine(), fuel_engine());
        let fast = instrument(&code, &info, Variant::Fast).map_err(|e| e.to_string())?;
        Ok(Self {
            plain: Module::new(&engine, &code[..])?,
            metered: Module::new(&fuel_engine, &code[..])?,
            fast: Module::new(&engine, &fast[..])?,
            by_hand: [
                Module::new(&engine, &mm.code(true, false)?[..])?,
                Module::new(&engine, &mm.code(false, true)?[..])?,
            ],
            step_fuel: info.limits.step_fuel,
            program: Program::new(&code)?,
            code,
            engine,
            fuel_engine,
        })
    }
}

/// What runs: (a) `Plain` wasmi; (a') wasmi with its own fuel `Metered`;
/// (a) plus opml's fuel `Charges` or read `Marks` in the inner loop, by hand;
/// (b) the `Instr`umented fast variant, marks never read; (c) the `Full`
/// sandbox (instrumented + mark scanning + Merkle updates); (a) plus `Diff`ing
/// the whole memory against a shadow copy after every step.
#[derive(Clone, Copy, PartialEq)]
enum Which {
    Plain,
    Metered,
    Charges,
    Marks,
    Instr,
    Full,
    Diff,
}
use Which::*;

/// One complete run (instantiation excluded).
#[derive(Clone, Copy, Default)]
struct Run {
    secs: f64,
    steps: u64,
    /// opml fuel of the run (sandbox runs only).
    fuel: u64,
    /// Seconds spent diffing (`Diff` only).
    diff: f64,
}

fn run(s: &Setup, which: Which) -> Res<Run> {
    let mut r = Run::default();
    if which == Full {
        let mut sb = Sandbox::from_program(s.program.clone())?;
        let t = Instant::now();
        while sb.state().status == Status::Running {
            sb.step()?;
        }
        r.secs = t.elapsed().as_secs_f64();
        assert_eq!(sb.state().status, Status::Halted);
        (r.steps, r.fuel) = (sb.state().step, sb.state().fuel);
        return Ok(r);
    }
    let (engine, module) = match which {
        Metered => (&s.fuel_engine, &s.metered),
        Instr => (&s.engine, &s.fast),
        Charges => (&s.engine, &s.by_hand[0]),
        Marks => (&s.engine, &s.by_hand[1]),
        _ => (&s.engine, &s.plain),
    };
    let mut store = Store::new(engine, ());
    let inst = Instance::new(&mut store, module, &[])?;
    let step = inst.get_typed_func::<(), i32>(&store, "step")?;
    let meter = match which {
        Instr => Some(Meter::new(&store, &inst).map_err(|e| e.0)?),
        _ => None,
    };
    let memory = inst.get_memory(&store, "memory").ok_or("no memory")?;
    let chunk = 1usize << DEFAULT_CHUNK_LOG2;
    let mut shadow = Vec::new();
    if which == Diff {
        shadow = memory.data(&store).to_vec();
    }
    let mut dirty = Vec::new();
    let (t, mut more) = (Instant::now(), 1);
    while more != 0 {
        if let Some(m) = &meter {
            m.arm(&mut store, s.step_fuel);
        } else if which == Metered {
            store.set_fuel(1 << 40)?;
        }
        more = step.call(&mut store, ())?;
        r.steps += 1;
        if which == Diff {
            let d = Instant::now();
            dirty.clear();
            let mem = memory.data(&store);
            for (i, (new, old)) in mem.chunks(chunk).zip(shadow.chunks_mut(chunk)).enumerate() {
                if new != old {
                    old.copy_from_slice(new);
                    dirty.push(i as u32);
                }
            }
            black_box(&dirty);
            r.diff += d.elapsed().as_secs_f64();
        }
    }
    r.secs = t.elapsed().as_secs_f64();
    Ok(r)
}

/// Runs every variant of `which` once per repetition, interleaved.
fn bench(s: &Setup, which: &[Which], reps: usize) -> Res<Vec<Vec<Run>>> {
    let mut out = vec![Vec::new(); which.len()];
    run(s, Plain)?; // warm-up
    for _ in 0..reps {
        for (k, w) in which.iter().enumerate() {
            out[k].push(run(s, *w)?);
        }
    }
    let steps = out[0][0].steps;
    assert!(
        out.iter().flatten().all(|r| r.steps == steps),
        "step counts differ"
    );
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
}

/// Median wall time of the runs.
fn med(runs: &[Run]) -> f64 {
    median(runs.iter().map(|r| r.secs).collect())
}

/// Per-repetition ratios `num / den`: (median, min, max).
fn ratios(num: &[Run], den: &[Run]) -> (f64, f64, f64) {
    let mut v: Vec<f64> = num.iter().zip(den).map(|(n, d)| n.secs / d.secs).collect();
    v.sort_by(f64::total_cmp);
    (median(v.clone()), v[0], v[v.len() - 1])
}

fn ratio(num: &[Run], den: &[Run]) -> f64 {
    ratios(num, den).0
}

/// Median seconds of `f` over `reps` calls.
fn time<T>(reps: usize, mut f: impl FnMut() -> Res<T>) -> Res<f64> {
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        black_box(f()?);
        v.push(t.elapsed().as_secs_f64());
    }
    Ok(median(v))
}

/// A sandbox advanced to step `at`.
fn sandbox_at(p: &Arc<Program>, at: u64) -> Res<Sandbox> {
    let mut sb = Sandbox::from_program(p.clone())?;
    while sb.state().step < at {
        sb.step()?;
    }
    Ok(sb)
}

/// Chunks written by step `at` and the median time of rehashing them.
fn merkle_update(s: &Setup, at: u64, reps: usize) -> Res<(usize, f64)> {
    let mut sb = sandbox_at(&s.program, at)?;
    let written = sb.step_report()?.written;
    let limits = s.program.info().limits;
    let mut tree = MerkleTree::new(limits.tree_depth(), limits.chunk_size(), sb.memory())?;
    let batch = 200;
    let t = time(reps, || {
        for _ in 0..batch {
            tree.update(sb.memory(), &written)?;
        }
        Ok(())
    })?;
    Ok((written.len(), t / batch as f64))
}

/// `[bytes, chunks, lemmas, prove, verify]`: mean proof size over the steps
/// `at`; median proving / verifying time in seconds times `unit`.
fn proof_stats(s: &Setup, at: &[u64], reps: usize, unit: f64) -> Res<[f64; 5]> {
    let (mut st, mut prove, mut verify) = ([0.0; 5], Vec::new(), Vec::new());
    let k = at.len() as f64;
    for &step in at {
        let mut sb = sandbox_at(&s.program, step)?;
        let pre = sb.state_root();
        let proof = sb.prove_next_step()?;
        let post = sb.step()?.hash();
        let checked = verify_one_step(&s.code, &pre, &proof).map_err(|e| e.to_string())?;
        assert_eq!(checked, post, "proof does not verify to the committed root");
        st[0] += proof.to_bytes().len() as f64 / k;
        st[1] += proof.chunks.len() as f64 / k;
        st[2] += proof.lemmas.len() as f64 / k;
        let sb = sandbox_at(&s.program, step)?;
        prove.push(time(reps, || Ok(sb.prove_next_step()?))?);
        verify.push(time(reps, || {
            verify_one_step(&s.code, &pre, &proof).map_err(|e| e.to_string().into())
        })?);
    }
    (st[3], st[4]) = (median(prove) * unit, median(verify) * unit);
    Ok(st)
}

/// A section title.
macro_rules! rule {
    ($($t:tt)*) => { println!("\n== {} ==", format!($($t)*)) };
}

fn section1(n: u32, reps: usize) -> Res<()> {
    let mm = Matmul::new(n, DEFAULT_CHUNK_LOG2);
    let chunk = 1 << mm.chunk_log2;
    let pages = mm.pages;
    rule!("1. hashing overhead: matmul N={n}, chunk {chunk} B, {pages} pages, {reps} reps");
    let s = Setup::new(&mm)?;
    let runs = bench(&s, &[Plain, Metered, Charges, Marks, Instr, Full], reps)?;
    let (steps, fuel) = (runs[5][0].steps, runs[5][0].fuel);
    let per_step = fuel / steps;
    println!("{steps} steps, {fuel} opml fuel per run ({per_step} per step)");
    println!("variant                           time ms  steps/s  Mfuel/s   vs (a)");
    let names = "(a) plain wasmi|(a') wasmi fuel metering|(a) + opml charges, by hand|\
                 (a) + read marks, by hand|(b) instrumented only|(c) sandbox";
    for (name, r) in names.split('|').zip(&runs) {
        let t = med(r);
        let (sps, mfs, x) = (steps as f64 / t, fuel as f64 / t / 1e6, ratio(r, &runs[0]));
        let ms = t * 1e3;
        println!("{name:<32} {ms:>8.2} {sps:>8.0} {mfs:>8.1} {x:>7.3}x");
    }
    println!("ratios (median of per-repetition ratios, [min, max])");
    let pairs = [
        ("(b)/(a)  instrumentation", 4, 0),
        ("(c)/(a)  sandbox vs plain", 5, 0),
        ("(c)/(b)  mark scan + hashing alone", 5, 4),
        ("(a')/(a) wasmi fuel metering", 1, 0),
        ("(c)/(a') sandbox vs metered wasmi", 5, 1),
        ("charges by hand / (a)", 2, 0),
        ("marks by hand / (a)", 3, 0),
    ];
    for (name, x, y) in pairs {
        let (m, lo, hi) = ratios(&runs[x], &runs[y]);
        println!("  {name:<36} {m:>6.3}  [{lo:.3}, {hi:.3}]");
    }
    let (k, hash) = merkle_update(&s, u64::from(n / 2), reps)?;
    let plain_step = med(&runs[0]) / steps as f64;
    let pct = hash / plain_step * 100.0;
    let (hash, plain_step) = (hash * 1e6, plain_step * 1e6);
    println!(
        "Merkle update of a row step's {k} written chunks, timed alone: {hash:.2} us = {pct:.1}% \
         of a plain step ({plain_step:.1} us)"
    );
    let c_a = ratio(&runs[5], &runs[0]);
    let verdict = if c_a <= 1.10 { "met" } else { "missed" };
    println!("target (c)/(a) <= 1.10: {verdict} ({c_a:.2}x)");
    Ok(())
}

fn section2(n: u32, reps: usize, proof_reps: usize, steps: u32) -> Res<()> {
    let at = [n / 4, n / 2, 3 * n / 4].map(u64::from);
    rule!("2. chunk size: matmul N={n}; proofs of row steps {at:?} (mean size)");
    println!(
        "chunk B  touched  depth  sandbox ms    vs (a)  Merkle us    proof B  chunks  lemmas  \
         prove ms  verify ms"
    );
    for log2 in CHUNK_LOG2S {
        let mm = Matmul::new(n, log2);
        let s = Setup::new(&mm)?;
        let runs = bench(&s, &[Plain, Full], reps)?;
        let (_, hash) = merkle_update(&s, u64::from(n / 2), reps)?;
        let [bytes, chunks, lemmas, prove, verify] = proof_stats(&s, &at, proof_reps, 1e3)?;
        let depth = s.program.info().limits.tree_depth();
        let (chunk, touched) = (1 << log2, mm.max_touched());
        let (t, r, hash) = (med(&runs[1]) * 1e3, ratio(&runs[1], &runs[0]), hash * 1e6);
        println!(
            "{chunk:>7} {touched:>8} {depth:>6} {t:>11.2} {r:>8.3}x {hash:>10.2} {bytes:>10.0} \
             {chunks:>7.0} {lemmas:>7.0} {prove:>9.3} {verify:>10.3}"
        );
    }
    println!("fixed costs that grow with memory / chunk size (a step that touches 1 chunk):");
    println!("chunk B   Sandbox::new ms (16 / 64 MiB)   step us (16 / 64 MiB)");
    for log2 in CHUNK_LOG2S {
        let ((n16, s16), (n64, s64)) = (idle(log2, 256, steps)?, idle(log2, 1024, steps)?);
        let [n16, n64, s16, s64] = [n16 * 1e3, n64 * 1e3, s16 * 1e6, s64 * 1e6];
        println!(
            "{:>7} {n16:>17.1} / {n64:>7.1} {s16:>15.2} / {s64:>6.2}",
            1 << log2
        );
    }
    Ok(())
}

/// A counter module over `pages` of memory: (seconds to build its sandbox,
/// median seconds per step over `steps` steps).
fn idle(log2: u32, pages: u32, steps: u32) -> Res<(f64, f64)> {
    let code = wat::parse_str(format!(
        r#"(module (memory (export "memory") {pages} {pages})
  (global (export "opml_step_fuel") i64 (i64.const 100))
  (global (export "opml_chunk_log2") i32 (i32.const {log2}))
  (func (export "step") (result i32)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (i32.lt_u (i32.load (i32.const 0)) (i32.const {steps}))))"#
    ))?;
    let t = Instant::now();
    let mut sb = Sandbox::new(&code)?;
    let new = t.elapsed().as_secs_f64();
    Ok((new, time(steps as usize, || Ok(sb.step()?))?))
}

/// opml fuel of each step of an N x N matmul.
fn step_fuels(n: u32, max_steps: u64) -> Res<Vec<u64>> {
    let mut sb = Sandbox::from_program(Setup::new(&Matmul::new(n, DEFAULT_CHUNK_LOG2))?.program)?;
    let mut fuels = Vec::new();
    while sb.state().status == Status::Running && sb.state().step < max_steps {
        let before = sb.state().fuel;
        fuels.push(sb.step()?.fuel - before);
    }
    Ok(fuels)
}

fn section3(reps: usize) -> Res<()> {
    let target = 10_000u64;
    let mut n = 8;
    while step_fuels(n + 1, 2)?[1].abs_diff(target) < step_fuels(n, 2)?[1].abs_diff(target) {
        n += 1;
    }
    rule!("3. one-step proof at ~10^4 fuel: matmul N={n}, {reps} reps");
    let fuels = step_fuels(n, u64::MAX)?;
    let same = fuels[1..].iter().all(|f| *f == fuels[1]);
    let (fill, row, same) = (
        fuels[0],
        fuels[1],
        ["NOT all equal", "all equal"][usize::from(same)],
    );
    println!(
        "fuel per step (consecutive state().fuel): step 0 (fill) {fill}, row steps {row} ({same})"
    );
    println!("chunk B    proof B  chunks  lemmas  prove us  verify us");
    for log2 in CHUNK_LOG2S {
        let s = Setup::new(&Matmul::new(n, log2))?;
        let [bytes, chunks, lemmas, prove, verify] =
            proof_stats(&s, &[u64::from(n / 2)], reps, 1e6)?;
        let mark = ["", "  <- default"][usize::from(log2 == DEFAULT_CHUNK_LOG2)];
        let chunk = 1 << log2;
        println!(
            "{chunk:>7} {bytes:>10.0} {chunks:>7.0} {lemmas:>7.0} {prove:>9.0} {verify:>10.0}{mark}"
        );
    }
    Ok(())
}

/// Per-step costs (seconds) at one memory size, for sections 4 and 5.
struct MemCase {
    mem_bytes: u64,
    plain: f64,
    instr: f64,
    full: f64,
    hash: f64,
    diff: f64,
    fuel_per_step: f64,
    snap: f64,
    snap_vec: f64,
    restore: f64,
}

fn mem_case(n: u32, pages: u32, reps: usize) -> Res<MemCase> {
    let mut mm = Matmul::new(n, DEFAULT_CHUNK_LOG2);
    mm.pages = mm.pages.max(pages);
    let s = Setup::new(&mm)?;
    let runs = bench(&s, &[Plain, Instr, Full, Diff], reps)?;
    let steps = runs[0][0].steps as f64;
    let sb = sandbox_at(&s.program, u64::from(n / 2))?;
    let snap_reps = (reps * 3).max(5);
    let snap = time(snap_reps, || Ok(sb.snapshot().write_to(std::io::sink())?))?;
    let snap_vec = time(snap_reps, || {
        let snapshot = sb.snapshot();
        let mut out = Vec::with_capacity(snapshot.encoded_len() as usize);
        snapshot.write_to(&mut out)?;
        Ok(out)
    })?;
    let snapshot = sb.snapshot();
    let restore = time(snap_reps, || {
        Ok(Sandbox::restore(s.program.clone(), &snapshot)?)
    })?;
    Ok(MemCase {
        mem_bytes: u64::from(mm.pages) * PAGE_SIZE,
        plain: med(&runs[0]) / steps,
        instr: med(&runs[1]) / steps,
        full: med(&runs[2]) / steps,
        hash: merkle_update(&s, u64::from(n / 2), reps)?.1,
        diff: median(runs[3].iter().map(|r| r.diff).collect()) / steps,
        fuel_per_step: runs[2][0].fuel as f64 / steps,
        snap,
        snap_vec,
        restore,
    })
}

fn section45(n: u32, reps: usize) -> Res<()> {
    let natural = Matmul::new(n, DEFAULT_CHUNK_LOG2).pages;
    let cases = [mem_case(n, natural, reps)?, mem_case(n, 256, reps)?];
    let chunk = 1 << DEFAULT_CHUNK_LOG2;
    rule!("4. dirty tracking: marks vs memory diffing (N={n}, chunk {chunk} B, us/step)");
    println!("  memory   (a) plain  (b) instr  (c) sandbox   c - a   c - b  Merkle  diff+copy");
    for c in &cases {
        let [a, b, full, hash, diff] = [c.plain, c.instr, c.full, c.hash, c.diff].map(|x| x * 1e6);
        let (ca, cb, kib) = (full - a, full - b, c.mem_bytes >> 10);
        println!(
            "{kib:>6}Ki {a:>11.1} {b:>10.1} {full:>12.1} {ca:>7.1} {cb:>7.1} {hash:>7.2} {diff:>10.1}"
        );
    }
    println!(
        "(c - b: mark scan + hashing, by difference; Merkle: the hashing alone, timed directly)"
    );

    rule!("5. checkpoint interval K (K* = 20 t_snap / t_step: K*/2 replayed steps = 10 snapshots)");
    println!("  memory   snap ms  snap->Vec  restore ms  step ms  snap GB/s     K*  rebuild ms");
    for c in &cases {
        let k = (20.0 * c.snap / c.full).round().max(1.0);
        let gbs = c.mem_bytes as f64 / c.snap / 1e9;
        let rebuild = (c.restore + k / 2.0 * c.full) * 1e3;
        let [snap, to_vec, restore, step] =
            [c.snap, c.snap_vec, c.restore, c.full].map(|x| x * 1e3);
        let kib = c.mem_bytes >> 10;
        println!(
            "{kib:>6}Ki {snap:>9.3} {to_vec:>10.3} {restore:>11.3} {step:>8.3} {gbs:>10.2} {k:>6.0} \
             {rebuild:>11.2}"
        );
    }
    let pow2 = |c: &MemCase| (20.0 * c.snap / c.full).max(1.0).log2().round().exp2();
    let (small, big) = (&cases[0], &cases[1]);
    let (k_small, k_big) = (pow2(small), pow2(big));
    let (kib_small, kib_big) = (small.mem_bytes >> 10, big.mem_bytes >> 10);
    println!(
        "recommendation: K = the power of two nearest K*: {k_small} at {kib_small} KiB, \
         {k_big} at {kib_big} KiB"
    );
    let gbs = big.mem_bytes as f64 / big.snap / 1e9;
    let mfuel_s = big.fuel_per_step / big.full / 1e6;
    let coef = 20.0 * (1u64 << 20) as f64 / (gbs * 1e9) * mfuel_s;
    println!(
        "rule: K* = 20 * (memory / {gbs:.2} GB/s) / (step fuel / {mfuel_s:.0} Mfuel/s) \
         = {coef:.1} * memory MiB / step Mfuel"
    );
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let (n, reps, proof_reps, small_reps) = if quick {
        (48, 3, 3, 5)
    } else {
        (128, 11, 7, 25)
    };
    let only = args.windows(2).find(|w| w[0] == "--section");
    let only: Option<u32> = only.and_then(|w| w[1].parse().ok());
    let on = |k: u32| only.is_none_or(|o| o == k || (k == 4 && o == 5));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mode = if quick { "--quick" } else { "full" };
    println!("opml-runtime bench ({mode}; {cores} cores available)");
    if on(1) {
        section1(n, reps)?;
    }
    if on(2) {
        section2(n, reps.min(5), proof_reps, 20 * reps as u32)?;
    }
    if on(3) {
        section3(small_reps)?;
    }
    if on(4) {
        section45(n, reps.min(5))?;
    }
    Ok(())
}
