//! Fuzz target `verify_proof`: the one-step verifier against hostile proofs.
//!
//! Fixture (built once): the counter module, run 3 steps in a `Sandbox`; its
//! state root, the real proof of step 4 and the honest post-state.
//!
//! Input: the first byte selects the mode (`sel % 4`):
//! * 0 — **raw**: the rest is fed to `verify_one_step_bytes(code, root, rest,
//!   1 << 20)` as proof bytes.
//! * 1 — **byte mutation**: 1..=6 edits (set, xor, insert, delete, truncate,
//!   overwrite a u32, copy a 32-byte window, append) of the real proof's SCALE
//!   bytes, at offsets and with values from the input.
//! * 2 — **field mutation**: the real proof decoded and 1..=6 field edits
//!   applied (version, pre-state fields, chunk indices/contents/count, lemmas),
//!   then optionally re-sealed: the claimed root recomputed from the mutated
//!   pre-state, and optionally its memory root from the mutated chunks and
//!   lemmas. A re-sealed proof is a valid proof of *another* pre-state; when
//!   only contents and counters changed, that state is known exactly (the
//!   honest memory with the proven chunks replaced), and the verifier's answer
//!   is compared with a `Sandbox` restored to it.
//! * 3 — **arbitrary pre-state**: one of four fixed programs (counter,
//!   faults, grow, matmul) restored from a snapshot whose memory contents,
//!   page count, step counter, cumulative fuel and status come from the input;
//!   prover, sandbox and verifier must agree on the next step.
//!
//! Assertions: never a panic; never `VerifyError::Internal`; a proof that
//! verifies against the honest root must be the honest proof byte for byte
//! and yield the honest post root (anything else is a **finding**: a mutated
//! proof was accepted); re-sealed proofs agree with the sandbox.
#![no_main]

use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use opml_runtime::checkpoint::Snapshot;
use opml_runtime::hash::leaf_hash;
use opml_runtime::limits::PAGE_SIZE;
use opml_runtime::merkle::{root_from_multiproof, MerkleTree};
use opml_runtime::proof::ProvenChunk;
use opml_runtime::sandbox::{Program, SandboxError};
use opml_runtime::verifier::{verify_one_step_bytes, verify_one_step_fields};
use opml_runtime::{Fault, Hash, OneStepProof, Sandbox, StateFields, Status, VerifyError};
use std::sync::{Arc, OnceLock};

const MAX_PROOF_LEN: usize = 1 << 20;

// Copies of runtime/tests/programs/*.wat, embedded so the target does not
// depend on test files staying where they are.
const COUNTER: &str = r#"(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 1000))
  (func (export "step") (result i32)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (i32.lt_u (i32.load (i32.const 0)) (i32.const 50))))"#;

const FAULTS: &str = r#"(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 5000))
  (func $sum_chunks (result i32)
    (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (i32.load8_u (i32.mul (local.get $i) (i32.const 1024)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 64))))
    (local.get $acc))
  (func (export "step") (result i32)
    (local $n i32) (local $kind i32)
    (local.set $n (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (i32.store (i32.const 0) (local.get $n))
    (i32.store (i32.const 2048) (i32.mul (local.get $n) (local.get $n)))
    (if (i32.lt_u (local.get $n) (i32.load (i32.const 4))) (then (return (i32.const 1))))
    (local.set $kind (i32.load (i32.const 8)))
    (if (i32.eq (local.get $kind) (i32.const 0)) (then unreachable))
    (if (i32.eq (local.get $kind) (i32.const 1))
      (then (drop (i32.div_u (local.get $n) (i32.load (i32.const 12))))))
    (if (i32.eq (local.get $kind) (i32.const 2))
      (then (drop (i32.load (i32.const 65534)))))
    (if (i32.eq (local.get $kind) (i32.const 3))
      (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $kind) (i32.const 4))
      (then (i32.store (i32.const 16) (call $sum_chunks))))
    (if (i32.eq (local.get $kind) (i32.const 5)) (then (return (i32.const 7))))
    (if (i32.eq (local.get $kind) (i32.const 6))
      (then (drop (i32.div_s (i32.const 0x80000000) (i32.const -1)))))
    (i32.const 0)))"#;

const GROW: &str = r#"(module
  (memory (export "memory") 1 5)
  (global (export "opml_step_fuel") i64 (i64.const 1000))
  (global (export "opml_chunk_log2") i32 (i32.const 8))
  (func (export "step") (result i32)
    (local $old i32) (local $n i32)
    (local.set $n (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (i32.store (i32.const 0) (local.get $n))
    (local.set $old (memory.grow (i32.const 1)))
    (if (i32.eq (local.get $old) (i32.const -1)) (then (return (i32.const 0))))
    (i32.store (i32.mul (local.get $old) (i32.const 65536)) (local.get $n))
    (i64.store offset=250 (i32.mul (local.get $old) (i32.const 65536))
      (i64.extend_i32_u (local.get $n)))
    (i32.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 4))
      (i32.mul (local.get $n) (i32.const 3)))
    (i32.const 1)))"#;

const MATMUL: &str = r#"(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (global (export "opml_chunk_log2") i32 (i32.const 8))
  (global (export "opml_max_touched") i32 (i32.const 64))
  (global $n i32 (i32.const 24))
  (func $init
    (local $i i32)
    (loop $l
      (i32.store offset=0x1000 (i32.shl (local.get $i) (i32.const 2))
        (i32.sub (i32.rem_u (i32.mul (local.get $i) (i32.const 7)) (i32.const 17)) (i32.const 8)))
      (i32.store offset=0x2000 (i32.shl (local.get $i) (i32.const 2))
        (i32.sub (i32.rem_u (i32.mul (local.get $i) (i32.const 5)) (i32.const 13)) (i32.const 6)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.mul (global.get $n) (global.get $n)))))
    (i32.store (i32.const 4) (i32.const 1)))
  (func $row (param $r i32)
    (local $j i32) (local $k i32) (local $acc i32)
    (loop $lj
      (local.set $acc (i32.const 0))
      (local.set $k (i32.const 0))
      (loop $lk
        (local.set $acc (i32.add (local.get $acc)
          (i32.mul
            (i32.load offset=0x1000 (i32.shl (i32.add (i32.mul (local.get $r) (global.get $n)) (local.get $k)) (i32.const 2)))
            (i32.load offset=0x2000 (i32.shl (i32.add (i32.mul (local.get $k) (global.get $n)) (local.get $j)) (i32.const 2))))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $lk (i32.lt_u (local.get $k) (global.get $n))))
      (i32.store offset=0x3000 (i32.shl (i32.add (i32.mul (local.get $r) (global.get $n)) (local.get $j)) (i32.const 2))
        (local.get $acc))
      (local.set $j (i32.add (local.get $j) (i32.const 1)))
      (br_if $lj (i32.lt_u (local.get $j) (global.get $n)))))
  (func (export "step") (result i32)
    (local $r i32)
    (if (i32.eqz (i32.load (i32.const 4))) (then (call $init) (return (i32.const 1))))
    (local.set $r (i32.load (i32.const 0)))
    (call $row (local.get $r))
    (i32.store (i32.const 0) (i32.add (local.get $r) (i32.const 1)))
    (i32.lt_u (i32.add (local.get $r) (i32.const 1)) (global.get $n))))"#;

struct Fixture {
    /// The counter module.
    code: Vec<u8>,
    program: Arc<Program>,
    /// The state after 3 steps: its root, full snapshot, the real proof of
    /// step 4 (and its bytes) and the honest post-state.
    root: Hash,
    pre: Snapshot,
    proof: OneStepProof,
    bytes: Vec<u8>,
    post: StateFields,
    /// Mode 3's programs, code alongside.
    programs: Vec<(Vec<u8>, Arc<Program>)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let code = wat::parse_str(COUNTER).unwrap();
        let program = Program::new(&code).unwrap();
        let mut sb = Sandbox::from_program(program.clone()).unwrap();
        for _ in 0..3 {
            sb.step().unwrap();
        }
        let root = sb.state_root();
        let pre = sb.snapshot();
        let (proof, recorded) = sb.prove_and_run_next_step().unwrap();
        let post = sb.step().unwrap();
        assert_eq!(recorded, post);
        assert_eq!(verify_one_step_fields(&code, &root, &proof), Ok(post));
        let bytes = proof.to_bytes();
        let programs = [COUNTER, FAULTS, GROW, MATMUL]
            .iter()
            .map(|w| {
                let c = wat::parse_str(w).unwrap();
                let p = Program::new(&c).unwrap();
                (c, p)
            })
            .collect();
        Fixture {
            code,
            program,
            root,
            pre,
            proof,
            bytes,
            post,
            programs,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    match sel % 4 {
        0 => check_bytes(f, rest),
        1 => {
            if let Ok(bytes) = mutate_bytes(&mut u, &f.bytes) {
                check_bytes(f, &bytes);
            }
        }
        2 => {
            let _ = mutate_fields(&mut u, f);
        }
        _ => {
            let _ = arbitrary_pre_state(&mut u, f);
        }
    }
});

/// Verifies `bytes` as a proof against the honest root.
fn check_bytes(f: &Fixture, bytes: &[u8]) {
    let result = verify_one_step_bytes(&f.code, &f.root, bytes, MAX_PROOF_LEN);
    match result {
        Err(VerifyError::Internal(e)) => panic!("internal verifier error on proof bytes: {e}"),
        Err(_) => {}
        Ok(post) => {
            let decoded = OneStepProof::decode_bounded(bytes, MAX_PROOF_LEN).ok();
            assert!(
                bytes == f.bytes.as_slice(),
                "FINDING: mutated proof bytes verified (post root {}, decodes to the honest proof: {}, honest post root: {}): {}",
                hex(&post),
                decoded.as_ref() == Some(&f.proof),
                post == f.post.hash(),
                hex(bytes)
            );
            assert_eq!(post, f.post.hash());
        }
    }
}


fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn pos(u: &mut Unstructured, len: usize) -> ArbResult<usize> {
    Ok(if len == 0 {
        0
    } else {
        u.arbitrary::<u16>()? as usize % (len + 1)
    })
}

fn mutate_bytes(u: &mut Unstructured, honest: &[u8]) -> ArbResult<Vec<u8>> {
    let mut b = honest.to_vec();
    for _ in 0..u.int_in_range(1..=6)? {
        let len = b.len();
        match u.int_in_range(0u8..=8)? {
            0 => {
                let p = pos(u, len)?.min(len.saturating_sub(1));
                if let Some(x) = b.get_mut(p) {
                    *x = u.arbitrary()?;
                }
            }
            1 => {
                let p = pos(u, len)?.min(len.saturating_sub(1));
                let bit = u.int_in_range(0..=7)?;
                if let Some(x) = b.get_mut(p) {
                    *x ^= 1 << bit;
                }
            }
            2 => {
                let p = pos(u, len)?;
                let n = u.int_in_range(1..=8)?;
                for _ in 0..n {
                    b.insert(p, u.arbitrary()?);
                }
            }
            3 => {
                let p = pos(u, len)?;
                let n = u.int_in_range(1..=64)?;
                b.drain(p..(p + n).min(len));
            }
            4 => {
                let p = pos(u, len)?;
                b.truncate(p);
            }
            5 => {
                let v: u32 = *u.choose(&[
                    0,
                    1,
                    2,
                    3,
                    4,
                    63,
                    64,
                    0x3f,
                    0xfc,
                    0x100,
                    0x1000,
                    0xffff_ffff,
                    0x8000_0000,
                ])?;
                let v = if u.arbitrary()? { v } else { u.arbitrary()? };
                let p = pos(u, len.saturating_sub(4))?;
                for (i, x) in v.to_le_bytes().iter().enumerate() {
                    if let Some(y) = b.get_mut(p + i) {
                        *y = *x;
                    }
                }
            }
            6 if len >= 32 => {
                let from = pos(u, len - 32)?;
                let to = pos(u, len - 32)?;
                let w: Vec<u8> = b[from..from + 32].to_vec();
                b[to..to + 32].copy_from_slice(&w);
            }
            7 => {
                let n = u.int_in_range(1..=40)?;
                for _ in 0..n {
                    b.push(u.arbitrary()?);
                }
            }
            _ => {}
        }
    }
    Ok(b)
}

fn interesting_u64(u: &mut Unstructured) -> ArbResult<u64> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => u.int_in_range(0..=16)?,
        1 => u64::MAX - u.int_in_range(0..=2000)?,
        2 => 1u64 << u.int_in_range(0..=63)?,
        _ => u.arbitrary()?,
    })
}

fn arbitrary_status(u: &mut Unstructured) -> ArbResult<Status> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => Status::Halted,
        1 => Status::Faulted(*u.choose(&Fault::ALL)?),
        _ => Status::Running,
    })
}

fn mutate_fields(u: &mut Unstructured, f: &Fixture) -> ArbResult<()> {
    let limits = f.program.info().limits;
    let chunk = limits.chunk_size();
    let mut p = f.proof.clone();
    // Only contents and counters changed: the implied pre-state is known.
    let mut data_only = true;
    for _ in 0..u.int_in_range(1..=6)? {
        match u.int_in_range(0u8..=15)? {
            0 => p.version = u.arbitrary()?,
            1 => p.pre.status = arbitrary_status(u)?,
            2 => p.pre.step = interesting_u64(u)?,
            3 => p.pre.fuel = interesting_u64(u)?,
            4 => {
                p.pre.memory_pages = match u.int_in_range(0u8..=2)? {
                    0 => u.int_in_range(0..=3)?,
                    1 => u32::MAX - u.int_in_range(0..=2)?,
                    _ => u.arbitrary()?,
                }
            }
            5 => {
                let i = u.int_in_range(0..=31)?;
                p.pre.memory_root[i] ^= 1 << u.int_in_range(0..=7)?;
            }
            6 | 7 if !p.chunks.is_empty() => {
                // Chunk contents: the interesting bytes of the counter are 0..4.
                let c = u.choose_index(p.chunks.len())?;
                let at = if u.arbitrary()? {
                    u.int_in_range(0..=7)?
                } else {
                    u.int_in_range(0..=chunk - 1)?
                };
                if let Some(x) = p.chunks[c].data.get_mut(at) {
                    *x = u.arbitrary()?;
                }
            }
            8 if !p.chunks.is_empty() => {
                data_only = false;
                let c = u.choose_index(p.chunks.len())?;
                let max = limits.max_chunks() as u32;
                p.chunks[c].index = match u.int_in_range(0u8..=3)? {
                    0 => u.int_in_range(0..=max.saturating_sub(1))?,
                    1 => max.saturating_sub(1) + u.int_in_range(0..=2)?,
                    2 => u32::MAX,
                    _ => u.arbitrary()?,
                };
            }
            9 if !p.chunks.is_empty() => {
                data_only = false;
                let c = u.choose_index(p.chunks.len())?;
                let n = match u.int_in_range(0u8..=2)? {
                    0 => 0,
                    1 => chunk + u.int_in_range(1..=4)?,
                    _ => u.int_in_range(0..=2 * chunk)?,
                };
                p.chunks[c].data.resize(n, u.arbitrary()?);
            }
            10 => {
                data_only = false;
                let index = if u.arbitrary()? {
                    u.int_in_range(0..=70)?
                } else {
                    u.arbitrary()?
                };
                let len = if u.ratio(3, 4)? {
                    chunk
                } else {
                    u.int_in_range(0..=2 * chunk)?
                };
                let data = if u.arbitrary()? {
                    f.pre
                        .memory
                        .get(index as usize * chunk..(index as usize + 1) * chunk)
                        .map(|s| s.to_vec())
                        .unwrap_or_else(|| vec![0; len])
                } else {
                    vec![u.arbitrary()?; len]
                };
                let at = u.int_in_range(0..=p.chunks.len())?;
                p.chunks.insert(at, ProvenChunk { index, data });
            }
            11 if !p.chunks.is_empty() => {
                data_only = false;
                let c = u.choose_index(p.chunks.len())?;
                if u.arbitrary()? {
                    p.chunks.remove(c);
                } else {
                    let dup = p.chunks[c].clone();
                    p.chunks.insert(c, dup);
                }
            }
            12 if !p.lemmas.is_empty() => {
                data_only = false;
                let l = u.choose_index(p.lemmas.len())?;
                p.lemmas[l][u.int_in_range(0..=31)?] ^= 1 << u.int_in_range(0..=7)?;
            }
            13 if !p.lemmas.is_empty() => {
                data_only = false;
                let l = u.choose_index(p.lemmas.len())?;
                match u.int_in_range(0u8..=2)? {
                    0 => {
                        p.lemmas.remove(l);
                    }
                    1 => {
                        let dup = p.lemmas[l];
                        p.lemmas.insert(l, dup);
                    }
                    _ => {
                        let m = u.choose_index(p.lemmas.len())?;
                        p.lemmas.swap(l, m);
                    }
                }
            }
            14 => {
                data_only = false;
                let h: Hash = if u.arbitrary()? {
                    leaf_hash(&vec![0u8; chunk])
                } else {
                    u.arbitrary()?
                };
                let at = u.int_in_range(0..=p.lemmas.len())?;
                p.lemmas.insert(at, h);
            }
            _ => {}
        }
    }
    let reseal = u.int_in_range(0u8..=2)?;
    let mut root = f.root;
    let mut resealed_memory = false;
    if reseal == 2 {
        let leaves: Vec<(u32, Hash)> = p
            .chunks
            .iter()
            .map(|c| (c.index, leaf_hash(&c.data)))
            .collect();
        if let Ok(r) = root_from_multiproof(limits.tree_depth(), &leaves, &p.lemmas) {
            p.pre.memory_root = r;
            resealed_memory = true;
        }
    }
    if reseal >= 1 {
        root = p.pre.hash();
    }

    let by_struct = verify_one_step_fields(&f.code, &root, &p);
    let bytes = p.to_bytes();
    let by_bytes = verify_one_step_bytes(&f.code, &root, &bytes, MAX_PROOF_LEN);
    // The two entry points agree (decoding only adds Decode errors, and a
    // version check that comes first).
    match (&by_struct, &by_bytes) {
        (Ok(a), Ok(b)) => assert_eq!(a.hash(), *b),
        (Err(_), Err(VerifyError::Decode(_)))
        | (Err(VerifyError::UnsupportedVersion(_)), Err(_)) => {}
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("verify_one_step_fields {a:?} but verify_one_step_bytes {b:?}"),
    }
    match by_struct {
        Err(VerifyError::Internal(e)) => panic!("internal verifier error: {e}"),
        Err(_) => {}
        Ok(post) if root == f.root => {
            assert!(
                p == f.proof,
                "FINDING: mutated proof verified against the honest root: {p:?} -> {post:?}"
            );
            assert_eq!(post, f.post);
        }
        Ok(post) => {
            // A valid proof of another pre-state. Where that state is known,
            // the sandbox must reach the same post-state from it.
            if resealed_memory && data_only {
                let expected = sandbox_from_implied(f, &p);
                assert_eq!(
                    Ok(post),
                    expected,
                    "verifier and sandbox disagree on a re-sealed proof {p:?}"
                );
            }
        }
    }
    Ok(())
}

/// Restores the counter at the pre-state a data-only, re-sealed proof
/// implies (honest memory with the proven chunks replaced) and runs one step.
fn sandbox_from_implied(f: &Fixture, p: &OneStepProof) -> Result<StateFields, String> {
    let chunk = f.program.info().limits.chunk_size();
    let mut memory = f.pre.memory.clone();
    if u64::from(p.pre.memory_pages) * PAGE_SIZE != memory.len() as u64 {
        return Err("page count changed".into());
    }
    for c in &p.chunks {
        memory[c.index as usize * chunk..(c.index as usize + 1) * chunk].copy_from_slice(&c.data);
    }
    let snap = Snapshot {
        code_hash: f.program.code_hash(),
        fields: p.pre,
        memory,
    };
    let sb = Sandbox::restore(f.program.clone(), &snap).map_err(|e| format!("restore: {e}"))?;
    let mut sb = sb;
    let (_, recorded) = sb
        .prove_and_run_next_step()
        .map_err(|e| format!("prove: {e}"))?;
    let post = sb.step().map_err(|e| format!("step: {e}"))?;
    assert_eq!(recorded, post);
    Ok(post)
}

fn arbitrary_pre_state(u: &mut Unstructured, f: &Fixture) -> ArbResult<()> {
    let (code, program) = &f.programs[u.choose_index(f.programs.len())?];
    let limits = program.info().limits;
    let pages = u.int_in_range(limits.min_pages..=limits.max_pages)?;
    let len = pages as usize * PAGE_SIZE as usize;
    let mut memory = vec![0u8; len];
    for _ in 0..u.int_in_range(0..=6)? {
        let at = if u.ratio(2, 3)? {
            u.int_in_range(0..=31)?
        } else {
            u.int_in_range(0..=len - 1)?
        };
        let n = u.int_in_range(1..=16)?;
        for i in at..(at + n).min(len) {
            memory[i] = u.arbitrary()?;
        }
    }
    let step = if u.ratio(3, 4)? {
        u.int_in_range(0..=64)?
    } else {
        interesting_u64(u)?
    };
    let fuel = if u.ratio(3, 4)? {
        u.int_in_range(0..=1_000_000)?
    } else {
        interesting_u64(u)?
    };
    let status = if u.ratio(7, 8)? {
        Status::Running
    } else {
        arbitrary_status(u)?
    };
    let tree = MerkleTree::new(limits.tree_depth(), limits.chunk_size(), &memory).unwrap();
    let fields = StateFields {
        status,
        step,
        fuel,
        memory_pages: pages,
        memory_root: tree.root(),
    };
    let snap = Snapshot {
        code_hash: program.code_hash(),
        fields,
        memory,
    };
    let mut sb = match Sandbox::restore(program.clone(), &snap) {
        Ok(sb) => sb,
        Err(e) => panic!("restore of a consistent snapshot failed: {e}"),
    };
    let pre_root = sb.state_root();
    assert_eq!(pre_root, fields.hash());
    let proved = sb.prove_and_run_next_step();
    let stepped = sb.step_report();
    let (proof, recorded) = match (proved, stepped) {
        (Ok((proof, recorded)), Ok(report)) => {
            assert_eq!(
                recorded, report.state,
                "prover's recording run and sandbox step disagree"
            );
            (proof, recorded)
        }
        (Err(SandboxError::Terminal(a)), Err(SandboxError::Terminal(b))) => {
            assert!(status.is_terminal() && a == status && b == status);
            return Ok(());
        }
        (Err(SandboxError::CounterOverflow), Err(SandboxError::CounterOverflow)) => return Ok(()),
        (a, b) => panic!(
            "prover and sandbox disagree from {fields:?}: prove: {:?}; step: {:?}",
            a.map(|(_, f)| f),
            b.map(|r| r.state)
        ),
    };
    assert_eq!(recorded.step, step + 1);
    match verify_one_step_fields(code, &pre_root, &proof) {
        Ok(v) => assert_eq!(
            v, recorded,
            "verifier's post-state differs from the sandbox's from {fields:?}"
        ),
        Err(e) => panic!("honest proof rejected from {fields:?}: {e} ({e:?})"),
    }
    Ok(())
}
