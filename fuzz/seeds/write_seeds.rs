//! Writes seed corpora for the fuzz targets into `fuzz/corpus/<target>/`
//! (gitignored). Run from `fuzz/`: `cargo run --example write_seeds`.
//!
//! * `admit_and_run`: every `.wat` under `runtime/tests/programs` and
//!   `runtime/tests/admission`, assembled and prefixed with the raw-mode
//!   selector `0x00`; plus 32 pseudo-random inputs for the structured mode
//!   (selector `0x01`).
//! * `verify_proof`: the counter's honest proof of step 4 as raw bytes
//!   (mode 0), and pseudo-random inputs for modes 1, 2 and 3.
//!
//! Deterministic: the same tree gives the same seeds.

use opml_runtime::Sandbox;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tests = fuzz.join("../runtime/tests");
    let mut rng = XorShift(0x0b5e_55ed_5eed_1234);

    // admit_and_run
    let out = corpus(fuzz, "admit_and_run");
    let mut n = 0;
    for dir in ["programs", "admission"] {
        let mut files: Vec<PathBuf> = fs::read_dir(tests.join(dir))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        for path in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "wat"))
        {
            let Ok(code) = wat::parse_file(path) else {
                eprintln!("skipping {} (does not assemble)", path.display());
                continue;
            };
            let name = format!("raw-{dir}-{}", path.file_stem().unwrap().to_string_lossy());
            write(&out, &name, &[&[0u8][..], &code].concat());
            n += 1;
        }
    }
    for i in 0..32u8 {
        let len = 64 + 32 * usize::from(i);
        write(
            &out,
            &format!("structured-{i:02}"),
            &[&[1u8 + i % 3][..], &rng.bytes(len)].concat(),
        );
        n += 1;
    }
    println!("admit_and_run: {n} seeds in {}", out.display());

    // verify_proof
    let out = corpus(fuzz, "verify_proof");
    let counter = wat::parse_file(tests.join("programs/counter.wat")).expect("counter.wat");
    let mut sb = Sandbox::new(&counter).expect("counter admitted");
    for _ in 0..3 {
        sb.step().unwrap();
    }
    let proof = sb.prove_next_step().unwrap().to_bytes();
    write(&out, "raw-honest-proof", &[&[0u8][..], &proof].concat());
    let mut n = 1;
    for mode in 1..=3u8 {
        for i in 0..12usize {
            write(
                &out,
                &format!("mode{mode}-{i:02}"),
                &[&[mode][..], &rng.bytes(16 + 16 * i)].concat(),
            );
            n += 1;
        }
    }
    println!("verify_proof: {n} seeds in {}", out.display());
}

fn corpus(fuzz: &Path, target: &str) -> PathBuf {
    let dir = fuzz.join("corpus").join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).expect("write seed");
}

struct XorShift(u64);

impl XorShift {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 24) as u8
            })
            .collect()
    }
}
