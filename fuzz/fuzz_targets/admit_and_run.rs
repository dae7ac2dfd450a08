//! Fuzz target `admit_and_run`: admission, then the prover, the sandbox and
//! the verifier must agree on every step of every admitted module.
//!
//! Input: the first byte selects the mode.
//! * `sel % 4 == 0` — **raw**: the rest of the input is a Wasm binary.
//! * otherwise — **structured**: the rest drives a small generator that
//!   writes the WAT text of an admissible module (memory limits, opml limit
//!   globals, data segments, helper functions and a `step` body built from
//!   every admitted instruction: integer arithmetic, loads/stores at fuzzed
//!   addresses and offsets, bounded and unbounded loops, blocks, `br_table`,
//!   `memory.grow`, calls, traps), plus optional task input written at step 0.
//!   Set `OPML_FUZZ_PRINT=1` to print the generated WAT (to reproduce a crash:
//!   `OPML_FUZZ_PRINT=1 cargo fuzz run admit_and_run <crash-file>`).
//!
//! For an admitted module, for up to [`MAX_STEPS`] steps (until terminal):
//! `prove_and_run_next_step()` and `step()` must both succeed (or both fail
//! with the same documented, non-internal error), the recording run's
//! post-state must equal the committed one, and
//! `verify_one_step_fields(code, pre_root, proof)` must return it too. Plus
//! cheap invariants: step counter, fuel bounds, memory size bounds, touch
//! limit semantics, the documented proof size bound, SCALE round trip.
#![no_main]

use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use opml_runtime::admission::admit;
use opml_runtime::limits::{ModuleLimits, MAX_CHUNK_LOG2, MIN_CHUNK_LOG2, PAGE_SIZE};
use opml_runtime::proof::OneStepProof;
use opml_runtime::sandbox::{Program, SandboxError};
use opml_runtime::verifier::verify_one_step_fields;
use opml_runtime::{Fault, Sandbox, StateFields, Status};
use std::fmt::Write as _;

/// Steps run per admitted module.
const MAX_STEPS: usize = 8;
/// Harness bounds for raw modules (admission allows up to 1 GiB of memory and
/// 2^34 fuel per step; stepping such modules only makes the fuzzer slow, it
/// checks nothing more). Larger modules are admitted and compiled, not run.
const RUN_MAX_MIN_PAGES: u32 = 64;
const RUN_MAX_MAX_PAGES: u32 = 1024;
const RUN_MAX_STEP_FUEL: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    if sel % 4 == 0 {
        check_module(rest, None, false);
    } else {
        let mut u = Unstructured::new(rest);
        let Ok((wat, input)) = generate(&mut u) else {
            return;
        };
        if std::env::var_os("OPML_FUZZ_PRINT").is_some() {
            eprintln!("---- generated module ----\n{wat}\n---- input: {input:?}");
        }
        let code = match wat::parse_str(&wat) {
            Ok(c) => c,
            Err(e) => panic!("generator wrote invalid WAT: {e}\n{wat}"),
        };
        check_module(&code, input, true);
    }
});

fn check_module(code: &[u8], input: Option<(u64, Vec<u8>)>, structured: bool) {
    let info = match admit(code) {
        Ok(info) => info,
        Err(e) => {
            if structured && std::env::var_os("OPML_FUZZ_PRINT").is_some() {
                eprintln!("not admitted: {e}");
            }
            return;
        }
    };
    let limits = info.limits;
    check_limits(&limits);
    let program = match Program::new(code) {
        Ok(p) => p,
        Err(e) => panic!("admitted module fails Program::new: {e}"),
    };
    if limits.min_pages > RUN_MAX_MIN_PAGES
        || limits.max_pages > RUN_MAX_MAX_PAGES
        || limits.step_fuel > RUN_MAX_STEP_FUEL
    {
        return;
    }
    let mut sb = match Sandbox::from_program(program) {
        Ok(s) => s,
        Err(e) => panic!("admitted module fails Sandbox::from_program: {e}"),
    };
    let s0 = sb.state();
    assert_eq!(s0.status, Status::Running);
    assert_eq!(
        (s0.step, s0.fuel, s0.memory_pages),
        (0, 0, limits.min_pages)
    );
    if let Some((offset, bytes)) = input {
        let mem_len = sb.memory().len() as u64;
        let fits = offset
            .checked_add(bytes.len() as u64)
            .is_some_and(|e| e <= mem_len);
        match sb.write_input(offset, &bytes) {
            Ok(()) => assert!(
                fits,
                "write_input accepted {} bytes at {offset} of {mem_len}",
                bytes.len()
            ),
            Err(SandboxError::BadInput(_)) => {
                assert!(!fits, "write_input refused an in-bounds write")
            }
            Err(e) => panic!("write_input: undocumented error {e:?}"),
        }
        assert_eq!(sb.state().memory_root, {
            let mut fresh = Sandbox::from_program(sb.program().clone()).unwrap();
            if fits {
                fresh.write_input(offset, &bytes).unwrap();
            }
            fresh.state().memory_root
        });
    }

    for _ in 0..MAX_STEPS {
        let pre = sb.state();
        if pre.status.is_terminal() {
            break;
        }
        let pre_root = sb.state_root();
        assert_eq!(pre_root, pre.hash());
        let proved = sb.prove_and_run_next_step();
        let stepped = sb.step_report();
        let (proof, recorded) = match (proved, stepped) {
            (Ok((proof, recorded)), Ok(report)) => {
                assert_eq!(
                    recorded, report.state,
                    "prover's recording run and sandbox step disagree"
                );
                check_transition(&limits, &pre, &report.state, report.touched);
                (proof, recorded)
            }
            (Err(a), Err(b)) => {
                // Both refused: must be the same documented reason.
                assert!(
                    !matches!(a, SandboxError::Internal(_))
                        && !matches!(b, SandboxError::Internal(_)),
                    "internal sandbox error at step {}: prove: {a}; step: {b}",
                    pre.step
                );
                assert_eq!(format!("{a}"), format!("{b}"));
                return;
            }
            (a, b) => panic!(
                "prover and sandbox disagree at step {}: prove: {:?}; step: {:?}",
                pre.step,
                a.map(|(_, f)| f),
                b.map(|r| r.state)
            ),
        };
        check_proof_shape(&limits, &pre, &proof);
        match verify_one_step_fields(code, &pre_root, &proof) {
            Ok(v) => assert_eq!(
                v, recorded,
                "verifier's post-state differs from the sandbox's"
            ),
            Err(e) => panic!("honest proof of step {} rejected: {e} ({e:?})", pre.step),
        }
        assert_eq!(sb.state_root(), recorded.hash());
        if std::env::var_os("OPML_FUZZ_PRINT").is_some() {
            eprintln!(
                "step {} -> {:?}, fuel {}, pages {}, {} chunks proven",
                pre.step,
                recorded.status,
                recorded.fuel,
                recorded.memory_pages,
                proof.chunks.len()
            );
        }
    }
}

fn check_limits(l: &ModuleLimits) {
    assert!(l.step_fuel >= 1 && l.step_fuel <= opml_runtime::limits::MAX_STEP_FUEL);
    assert!((MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2).contains(&l.chunk_log2));
    assert!(l.max_touched >= 1);
    assert!(
        u64::from(l.max_touched) << l.chunk_log2 <= opml_runtime::limits::MAX_PROOF_CHUNK_BYTES
    );
    assert!(l.min_pages <= l.max_pages && l.max_pages <= opml_runtime::limits::MAX_PAGES);
}

fn check_transition(l: &ModuleLimits, pre: &StateFields, post: &StateFields, touched: usize) {
    assert_eq!(post.step, pre.step + 1);
    match post.status {
        Status::Faulted(Fault::TouchLimit) => {
            assert!(
                touched > l.max_touched as usize,
                "TouchLimit with {touched} touched chunks"
            );
            assert_eq!(
                (post.fuel, post.memory_pages, post.memory_root),
                (pre.fuel, pre.memory_pages, pre.memory_root)
            );
        }
        _ => {
            assert!(
                touched <= l.max_touched as usize,
                "{touched} chunks touched without TouchLimit"
            );
            assert!(
                post.fuel >= pre.fuel && post.fuel - pre.fuel <= l.step_fuel,
                "fuel {} -> {}",
                pre.fuel,
                post.fuel
            );
            assert!(post.memory_pages >= pre.memory_pages && post.memory_pages <= l.max_pages);
        }
    }
}

fn check_proof_shape(l: &ModuleLimits, pre: &StateFields, proof: &OneStepProof) {
    assert_eq!(&proof.pre, pre);
    // vmem: each counted (first-byte) chunk may bring its successor.
    assert!(
        proof.chunks.len() <= 2 * l.max_touched as usize,
        "{} chunks in a proof",
        proof.chunks.len()
    );
    assert!(proof.chunks.windows(2).all(|w| w[0].index < w[1].index));
    assert!(proof.chunks.iter().all(|c| c.data.len() == l.chunk_size()));
    let bytes = proof.to_bytes();
    // Bound of limits.rs (max_touched * (chunk + 4) + max_touched * depth *
    // 32 plus a fixed header, generously 128 bytes), with 2 * max_touched
    // chunks as vmem allows and 5 bytes per chunk for its SCALE length.
    let mt = 2 * u64::from(l.max_touched);
    let bound = mt * (l.chunk_size() as u64 + 4 + 5) + mt * u64::from(l.tree_depth()) * 32 + 128;
    assert!(
        (bytes.len() as u64) <= bound,
        "proof of {} bytes exceeds {bound}",
        bytes.len()
    );
    let back =
        OneStepProof::decode_bounded(&bytes, bytes.len()).expect("proof does not round-trip");
    assert_eq!(&back, proof);
}

// ---------------------------------------------------------------------------
// Structured mode: a generator of admissible modules.
// ---------------------------------------------------------------------------

const I32_BIN: &[&str] = &[
    "add", "sub", "mul", "div_s", "div_u", "rem_s", "rem_u", "and", "or", "xor", "shl", "shr_s",
    "shr_u", "rotl", "rotr",
];
const CMP: &[&str] = &[
    "eq", "ne", "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u",
];
const I32_UN: &[&str] = &["clz", "ctz", "popcnt", "eqz", "extend8_s", "extend16_s"];
const I64_UN: &[&str] = &[
    "clz",
    "ctz",
    "popcnt",
    "extend8_s",
    "extend16_s",
    "extend32_s",
];
const I32_LOADS: &[&str] = &[
    "i32.load",
    "i32.load8_s",
    "i32.load8_u",
    "i32.load16_s",
    "i32.load16_u",
];
const I64_LOADS: &[&str] = &[
    "i64.load",
    "i64.load8_s",
    "i64.load8_u",
    "i64.load16_s",
    "i64.load16_u",
    "i64.load32_s",
    "i64.load32_u",
];
const I32_STORES: &[&str] = &["i32.store", "i32.store8", "i32.store16"];
const I64_STORES: &[&str] = &["i64.store", "i64.store8", "i64.store16", "i64.store32"];
const I32_CONSTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    4,
    7,
    8,
    31,
    32,
    63,
    64,
    255,
    1024,
    65535,
    65536,
    0x7fff_ffff,
    -0x8000_0000,
];
const I64_CONSTS: &[i64] = &[
    0,
    1,
    -1,
    2,
    63,
    64,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX,
    i64::MIN,
];

/// Loop counters: one per nesting level, never written by generated code.
const MAX_LOOP_DEPTH: usize = 3;

struct Gen<'a, 'b> {
    u: &'b mut Unstructured<'a>,
    /// Bytes of memory at instantiation.
    mem_bytes: u64,
    max_bytes: u64,
    chunk: u64,
    /// Helpers the current function may call: `$h0 .. $h{callable}`.
    callable: usize,
    loop_depth: usize,
    label: usize,
    /// Remaining expression/statement nodes, so modules stay small.
    budget: usize,
}

impl Gen<'_, '_> {
    fn pick(&mut self, n: usize) -> ArbResult<usize> {
        Ok(self.u.choose_index(n).unwrap_or(0))
    }
    fn spend(&mut self) -> bool {
        if self.budget == 0 {
            false
        } else {
            self.budget -= 1;
            true
        }
    }
    fn i32_const(&mut self) -> ArbResult<String> {
        Ok(match self.pick(4)? {
            0 => format!("(i32.const {})", I32_CONSTS[self.pick(I32_CONSTS.len())?]),
            1 => format!("(i32.const {})", self.u.int_in_range(0u32..=16)?),
            _ => format!("(i32.const {})", self.u.arbitrary::<i32>()?),
        })
    }
    fn i64_const(&mut self) -> ArbResult<String> {
        Ok(match self.pick(3)? {
            0 => format!("(i64.const {})", I64_CONSTS[self.pick(I64_CONSTS.len())?]),
            1 => format!("(i64.const {})", self.u.int_in_range(0u32..=16)?),
            _ => format!("(i64.const {})", self.u.arbitrary::<i64>()?),
        })
    }
    fn local_i32(&mut self, readable: bool) -> ArbResult<String> {
        if readable && self.loop_depth > 0 && self.u.ratio(1, 3)? {
            let d = self.pick(self.loop_depth)?;
            return Ok(format!("$c{d}"));
        }
        Ok(format!("$a{}", self.pick(3)?))
    }
    fn local_i64(&mut self) -> ArbResult<String> {
        Ok(format!("$x{}", self.pick(2)?))
    }

    /// A memory address: mostly inside memory, sometimes at its edge or
    /// anywhere, sometimes computed (masked, strided by a loop counter).
    fn addr(&mut self, depth: usize) -> ArbResult<String> {
        let span = self.mem_bytes.max(1);
        Ok(match self.pick(10)? {
            0..=3 => format!(
                "(i32.const {})",
                self.u.int_in_range(0..=span.saturating_sub(8))?
            ),
            4 => {
                // At the end of the current or the largest memory.
                let end = if self.u.arbitrary()? {
                    self.mem_bytes
                } else {
                    self.max_bytes
                };
                format!(
                    "(i32.const {})",
                    end.saturating_sub(self.u.int_in_range(0..=16)?)
                )
            }
            5 => {
                // Near a chunk boundary.
                let c = self.u.int_in_range(1..=(span / self.chunk).max(1))?;
                format!(
                    "(i32.const {})",
                    (c * self.chunk).saturating_sub(self.u.int_in_range(0..=8)?)
                )
            }
            6 if self.loop_depth > 0 => {
                let d = self.pick(self.loop_depth)?;
                let stride = match self.pick(3)? {
                    0 => self.u.int_in_range(1..=8)?,
                    1 => self.chunk,
                    _ => self.u.int_in_range(1..=4096)?,
                };
                let base = self.u.int_in_range(0..=span)?;
                format!(
                    "(i32.add (i32.const {base}) (i32.mul (local.get $c{d}) (i32.const {stride})))"
                )
            }
            6..=8 => {
                let mask = span.next_power_of_two() - 1;
                let mask = mask >> self.u.int_in_range(0..=8)?;
                format!("(i32.and {} (i32.const {mask}))", self.e32(depth)?)
            }
            _ => {
                if self.u.ratio(1, 4)? {
                    format!("(i32.const {})", self.u.arbitrary::<u32>()?)
                } else {
                    self.e32(depth)?
                }
            }
        })
    }
    fn offset(&mut self) -> ArbResult<String> {
        Ok(match self.pick(32)? {
            0..=3 => format!(" offset={}", self.u.int_in_range(1u64..=64)?),
            4 | 5 => format!(" offset={}", self.u.int_in_range(0..=4 * self.chunk)?),
            6 => format!(
                " offset={}",
                self.u.int_in_range(0..=self.mem_bytes.max(1))?
            ),
            7 => format!(" offset={}", self.u.arbitrary::<u32>()?),
            _ => String::new(),
        })
    }

    fn e32(&mut self, depth: usize) -> ArbResult<String> {
        if depth == 0 || !self.spend() {
            return Ok(match self.pick(4)? {
                0 => format!("(local.get {})", self.local_i32(true)?),
                1 => format!("(global.get $g{})", self.pick(2)?),
                2 => "(memory.size)".into(),
                _ => self.i32_const()?,
            });
        }
        let d = depth - 1;
        Ok(match self.pick(15)? {
            0 => self.i32_const()?,
            1 => format!("(local.get {})", self.local_i32(true)?),
            2 | 3 => {
                let op = I32_LOADS[self.pick(I32_LOADS.len())?];
                let off = self.offset()?;
                format!("({op}{off} {})", self.addr(d)?)
            }
            4 | 5 => {
                let op = I32_BIN[self.pick(I32_BIN.len())?];
                format!("(i32.{op} {} {})", self.e32(d)?, self.e32(d)?)
            }
            6 => {
                let op = CMP[self.pick(CMP.len())?];
                if self.u.arbitrary()? {
                    format!("(i32.{op} {} {})", self.e32(d)?, self.e32(d)?)
                } else {
                    format!("(i64.{op} {} {})", self.e64(d)?, self.e64(d)?)
                }
            }
            7 => {
                let op = I32_UN[self.pick(I32_UN.len())?];
                format!("(i32.{op} {})", self.e32(d)?)
            }
            8 => {
                if self.u.arbitrary()? {
                    format!("(i32.wrap_i64 {})", self.e64(d)?)
                } else {
                    format!("(i64.eqz {})", self.e64(d)?)
                }
            }
            9 => format!(
                "(select {} {} {})",
                self.e32(d)?,
                self.e32(d)?,
                self.e32(d)?
            ),
            10 => {
                let delta = match self.pick(4)? {
                    0 => self.e32(d)?,
                    _ => format!("(i32.const {})", self.u.int_in_range(0..=3)?),
                };
                format!("(memory.grow {delta})")
            }
            11 if self.callable > 0 => {
                let h = self.pick(self.callable)?;
                format!("(call $h{h} {} {})", self.e32(d)?, self.e64(d)?)
            }
            12 => format!("(local.tee $a{} {})", self.pick(3)?, self.e32(d)?),
            13 => format!(
                "(if (result i32) {} (then {}) (else {}))",
                self.e32(d)?,
                self.e32(d)?,
                self.e32(d)?
            ),
            _ => format!("(global.get $g{})", self.pick(2)?),
        })
    }

    fn e64(&mut self, depth: usize) -> ArbResult<String> {
        if depth == 0 || !self.spend() {
            return Ok(match self.pick(3)? {
                0 => format!("(local.get {})", self.local_i64()?),
                1 => "(global.get $g2)".into(),
                _ => self.i64_const()?,
            });
        }
        let d = depth - 1;
        Ok(match self.pick(9)? {
            0 => self.i64_const()?,
            1 => format!("(local.get {})", self.local_i64()?),
            2 | 3 => {
                let op = I64_LOADS[self.pick(I64_LOADS.len())?];
                let off = self.offset()?;
                format!("({op}{off} {})", self.addr(d)?)
            }
            4 | 5 => {
                let op = I32_BIN[self.pick(I32_BIN.len())?];
                format!("(i64.{op} {} {})", self.e64(d)?, self.e64(d)?)
            }
            6 => {
                let op = I64_UN[self.pick(I64_UN.len())?];
                format!("(i64.{op} {})", self.e64(d)?)
            }
            7 => {
                let op = if self.u.arbitrary()? {
                    "i64.extend_i32_s"
                } else {
                    "i64.extend_i32_u"
                };
                format!("({op} {})", self.e32(d)?)
            }
            _ => format!(
                "(select {} {} {})",
                self.e64(d)?,
                self.e64(d)?,
                self.e32(d)?
            ),
        })
    }

    fn stmts(&mut self, out: &mut String, max: usize, depth: usize) -> ArbResult<()> {
        let n = self.u.int_in_range(0..=max)?;
        for _ in 0..n {
            if !self.spend() {
                break;
            }
            self.stmt(out, depth)?;
        }
        Ok(())
    }

    fn stmt(&mut self, out: &mut String, depth: usize) -> ArbResult<()> {
        let e = 3; // expression depth
        match self.pick(13)? {
            0..=2 => {
                let off;
                let addr;
                if self.u.arbitrary()? {
                    let op = I32_STORES[self.pick(I32_STORES.len())?];
                    off = self.offset()?;
                    addr = self.addr(e)?;
                    let v = self.e32(e)?;
                    write!(out, "({op}{off} {addr} {v})").unwrap();
                } else {
                    let op = I64_STORES[self.pick(I64_STORES.len())?];
                    off = self.offset()?;
                    addr = self.addr(e)?;
                    let v = self.e64(e)?;
                    write!(out, "({op}{off} {addr} {v})").unwrap();
                }
            }
            3 => {
                let l = format!("$a{}", self.pick(3)?);
                write!(out, "(local.set {l} {})", self.e32(e)?).unwrap();
            }
            4 => {
                let l = self.local_i64()?;
                write!(out, "(local.set {l} {})", self.e64(e)?).unwrap();
            }
            5 => write!(out, "(drop {})", self.e32(e)?).unwrap(),
            6 if depth > 0 => {
                write!(out, "(if {} (then ", self.e32(e)?).unwrap();
                self.stmts(out, 3, depth - 1)?;
                out.push_str(") (else ");
                self.stmts(out, 3, depth - 1)?;
                out.push_str("))");
            }
            7 if depth > 0 && self.loop_depth < MAX_LOOP_DEPTH => {
                // Counted loop on a reserved counter; sometimes unbounded
                // (runs out of fuel), sometimes long.
                let c = self.loop_depth;
                let l = self.label;
                self.label += 1;
                let bound: u64 = match self.pick(6)? {
                    0 => 1 << 31,
                    1 => self.u.int_in_range(0..=100_000)?,
                    _ => self.u.int_in_range(0..=64)?,
                };
                write!(out, "(local.set $c{c} (i32.const 0)) (loop $L{l} ").unwrap();
                self.loop_depth += 1;
                self.stmts(out, 4, depth - 1)?;
                self.loop_depth -= 1;
                write!(
                    out,
                    "(local.set $c{c} (i32.add (local.get $c{c}) (i32.const 1))) \
                     (br_if $L{l} (i32.lt_u (local.get $c{c}) (i32.const {bound}))))"
                )
                .unwrap();
            }
            8 if depth > 0 => {
                let l = self.label;
                self.label += 1;
                write!(out, "(block $B{l} (br_if $B{l} {}) ", self.e32(e)?).unwrap();
                self.stmts(out, 3, depth - 1)?;
                out.push(')');
            }
            9 if depth > 0 => {
                let l = self.label;
                self.label += 1;
                write!(
                    out,
                    "(block $B{l} (block $C{l} (br_table $C{l} $B{l} $C{l} {})) ",
                    self.e32(e)?
                )
                .unwrap();
                self.stmts(out, 3, depth - 1)?;
                out.push(')');
            }
            10 => {
                if self.u.ratio(1, 4)? {
                    write!(out, "(if {} (then unreachable))", self.e32(e)?).unwrap();
                } else {
                    write!(
                        out,
                        "(if {} (then (return {})))",
                        self.e32(e)?,
                        self.e32(e)?
                    )
                    .unwrap();
                }
            }
            11 if self.callable > 0 => {
                let h = self.pick(self.callable)?;
                write!(out, "(drop (call $h{h} {} {}))", self.e32(e)?, self.e64(e)?).unwrap();
            }
            _ => out.push_str("(nop)"),
        }
        out.push('\n');
        Ok(())
    }
}

const LOCALS: &str = "(local $a1 i32) (local $a2 i32) (local $x1 i64) (local $c0 i32) (local $c1 i32) (local $c2 i32)";

/// Writes an admissible module and optional task input from the fuzz input.
fn generate(u: &mut Unstructured) -> ArbResult<(String, Option<(u64, Vec<u8>)>)> {
    let min_pages: u32 = match u.int_in_range(0u8..=9)? {
        0 => 0,
        1..=6 => 1,
        _ => u.int_in_range(1..=4)?,
    };
    let max_pages: u32 = min_pages.max(1)
        + if u.ratio(1, 3)? {
            u.int_in_range(0..=16)?
        } else {
            0
        };
    let chunk_log2: Option<u32> = if u.ratio(1, 2)? {
        Some(u.int_in_range(MIN_CHUNK_LOG2..=MAX_CHUNK_LOG2)?)
    } else {
        None
    };
    let clog2 = chunk_log2.unwrap_or(opml_runtime::limits::DEFAULT_CHUNK_LOG2);
    let max_chunks = (u64::from(max_pages) * PAGE_SIZE) >> clog2;
    let touch_cap = (opml_runtime::limits::MAX_PROOF_CHUNK_BYTES >> clog2).max(1);
    let max_touched: Option<u64> = match u.int_in_range(0u8..=3)? {
        0 => Some(u.int_in_range(1..=4)?),
        1 => Some(u.int_in_range(1..=touch_cap.min(max_chunks.max(1) + 2))?),
        _ => None,
    };
    // Small caps keep the fuzzer fast; out-of-fuel is still common.
    let step_fuel: u64 = match u.int_in_range(0u8..=7)? {
        0 => u.int_in_range(1..=50)?,
        1 => 1_000,
        2 => 5_000,
        3 => 20_000,
        4 => 100_000,
        _ => u.int_in_range(1..=20_000)?,
    };
    let mem_bytes = u64::from(min_pages) * PAGE_SIZE;
    let mut g = Gen {
        u,
        mem_bytes,
        max_bytes: u64::from(max_pages) * PAGE_SIZE,
        chunk: 1 << clog2,
        callable: 0,
        loop_depth: 0,
        label: 0,
        budget: 400,
    };

    let mut m = String::new();
    writeln!(
        m,
        "(module\n(memory (export \"memory\") {min_pages} {max_pages})"
    )
    .unwrap();
    writeln!(
        m,
        "(global (export \"opml_step_fuel\") i64 (i64.const {step_fuel}))"
    )
    .unwrap();
    if let Some(c) = chunk_log2 {
        writeln!(
            m,
            "(global (export \"opml_chunk_log2\") i32 (i32.const {c}))"
        )
        .unwrap();
    }
    if let Some(t) = max_touched {
        writeln!(
            m,
            "(global (export \"opml_max_touched\") i32 (i32.const {t}))"
        )
        .unwrap();
    }
    let (g0, g1, g2) = (g.i32_const()?, g.i32_const()?, g.i64_const()?);
    writeln!(
        m,
        "(global $g0 i32 {g0}) (global $g1 i32 {g1}) (global $g2 i64 {g2})"
    )
    .unwrap();
    if mem_bytes > 0 {
        for _ in 0..g.u.int_in_range(0..=2)? {
            let len = g.u.int_in_range(0..=32u64)?;
            let off = g.u.int_in_range(0..=mem_bytes - len)?;
            let mut bytes = String::new();
            for _ in 0..len {
                write!(bytes, "\\{:02x}", g.u.arbitrary::<u8>()?).unwrap();
            }
            writeln!(m, "(data (i32.const {off}) \"{bytes}\")").unwrap();
        }
    }
    let helpers = g.u.int_in_range(0..=3)?;
    for h in 0..helpers {
        g.callable = h;
        write!(
            m,
            "(func $h{h} (param $a0 i32) (param $x0 i64) (result i32) {LOCALS}\n"
        )
        .unwrap();
        let mut body = String::new();
        g.stmts(&mut body, 4, 2)?;
        let r = g.e32(3)?;
        writeln!(m, "{body}{r})").unwrap();
    }
    g.callable = helpers;
    writeln!(
        m,
        "(func (export \"step\") (result i32) (local $a0 i32) (local $x0 i64) {LOCALS}"
    )
    .unwrap();
    // A step counter in memory keeps most machines running for several steps.
    let counter = if mem_bytes >= 4 && g.u.ratio(3, 4)? {
        let at = g.u.int_in_range(0..=(mem_bytes - 4).min(4096))? & !3;
        writeln!(
            m,
            "(i32.store (i32.const {at}) (i32.add (i32.load (i32.const {at})) (i32.const 1)))"
        )
        .unwrap();
        Some(at)
    } else {
        None
    };
    let mut body = String::new();
    g.stmts(&mut body, 8, 3)?;
    m.push_str(&body);
    let result = match (counter, g.pick(5)?) {
        (Some(at), 0..=2) => format!(
            "(i32.lt_u (i32.load (i32.const {at})) (i32.const {}))",
            g.u.int_in_range(1..=12)?
        ),
        (_, 3) => format!("(i32.and {} (i32.const 1))", g.e32(3)?),
        (_, 4) => g.e32(3)?,
        _ => "(i32.const 1)".into(),
    };
    writeln!(m, "{result}))").unwrap();

    let input = if g.u.ratio(1, 4)? {
        let len = g.u.int_in_range(0..=64u64)?;
        let off = if g.u.ratio(1, 8)? {
            g.u.arbitrary::<u32>()? as u64
        } else {
            g.u.int_in_range(0..=mem_bytes)?
        };
        let bytes = (0..len)
            .map(|_| g.u.arbitrary::<u8>())
            .collect::<ArbResult<Vec<u8>>>()?;
        Some((off, bytes))
    } else {
        None
    };
    Ok((m, input))
}
