//! Checkpoints: full memory snapshots, so any state of a run can be rebuilt
//! from the nearest checkpoint instead of replaying from step 0.
//!
//! File format, version 1 (all integers little-endian; `L` = memory length):
//!
//! | offset  | size | field                                                  |
//! |---------|------|--------------------------------------------------------|
//! | 0       | 8    | magic `b"OPMLCKPT"`                                    |
//! | 8       | 4    | format version, u32 (= [`VERSION`] = 1)                |
//! | 12      | 32   | code hash ([`crate::hash::code_hash`])                 |
//! | 44      | 1    | status: 0 running, 1 halted, 2 faulted                 |
//! | 45      | 1    | fault code ([`Fault::code`]; 0 unless faulted)         |
//! | 46      | 8    | step, u64                                              |
//! | 54      | 8    | cumulative fuel, u64                                   |
//! | 62      | 4    | memory_pages, u32                                      |
//! | 66      | 32   | memory_root                                            |
//! | 98      | 8    | `L`, u64 (must equal `memory_pages * 65536`)           |
//! | 106     | L    | the linear memory                                      |
//! | 106 + L | 32   | checksum `H(CKPT_TAG \|\| bytes 0..106+L)`             |
//!
//! The state fields are those of [`StateFields`], so
//! [`Snapshot::state_root`] is the root the trace records for that step. The
//! checksum catches corruption, not forgery: before trusting a snapshot,
//! compare its state root with the trace and recompute the memory root
//! from `memory` with [`crate::merkle`].

use crate::hash::{tagged, Hash};
use crate::limits::PAGE_SIZE;
use crate::state::{StateFields, Status};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// First 8 bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"OPMLCKPT";
/// The format version this module reads and writes.
pub const VERSION: u32 = 1;
/// Domain tag of the trailing checksum.
pub const CKPT_TAG: &[u8; 16] = b"opml.ckpt.v1\0\0\0\0";
/// Bytes before the memory.
pub const PREFIX_LEN: usize = 106;
/// Bytes of the trailing checksum.
pub const CHECKSUM_LEN: usize = 32;

/// Memory allocated up front when reading; beyond it the buffer grows as
/// bytes actually arrive, so a short hostile file cannot claim a huge buffer.
const FIRST_ALLOC: u64 = 64 << 20;

/// Everything that can go wrong reading a checkpoint.
#[derive(Debug)]
pub enum CheckpointError {
    /// The file does not start with [`MAGIC`].
    BadMagic([u8; 8]),
    /// A format version this code does not know.
    UnsupportedVersion(u32),
    /// A `(status, fault)` byte pair that names no [`Status`].
    BadStatus { status: u8, fault: u8 },
    /// The memory length is not `memory_pages * 65536`.
    MemoryLengthMismatch { memory_pages: u32, len: u64 },
    /// The memory is longer than the caller allows.
    MemoryTooLarge { len: u64, max: u64 },
    /// The input ended inside `section` ("header", "memory" or "checksum").
    Truncated { section: &'static str },
    /// The trailing checksum does not match the contents.
    ChecksumMismatch,
    /// Bytes follow the checksum.
    TrailingData,
    /// An I/O error of the underlying reader.
    Io(io::Error),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "not an opml checkpoint (magic {})", hex::encode(m)),
            Self::UnsupportedVersion(v) => write!(f, "unsupported checkpoint version {v}"),
            Self::BadStatus { status, fault } => write!(f, "bad status {status}/{fault}"),
            Self::MemoryLengthMismatch { memory_pages, len } => {
                write!(f, "memory of {len} bytes for {memory_pages} pages")
            }
            Self::MemoryTooLarge { len, max } => {
                write!(f, "memory of {len} bytes exceeds the limit of {max}")
            }
            Self::Truncated { section } => write!(f, "checkpoint truncated in the {section}"),
            Self::ChecksumMismatch => write!(f, "checkpoint checksum mismatch"),
            Self::TrailingData => write!(f, "data after the checkpoint checksum"),
            Self::Io(e) => write!(f, "checkpoint I/O: {e}"),
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for CheckpointError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// The status with committed bytes `(status, fault)` (see
/// [`Status::from_code`]); unknown pairs are rejected.
pub fn status_from_code(status: u8, fault: u8) -> Result<Status, CheckpointError> {
    Status::from_code(status, fault).ok_or(CheckpointError::BadStatus { status, fault })
}

/// A machine state with its whole memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub code_hash: Hash,
    pub fields: StateFields,
    /// Exactly `fields.memory_pages * 65536` bytes.
    pub memory: Vec<u8>,
}

fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

/// `read_exact`, with end of input reported as truncation of `section`.
fn read_section<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    section: &'static str,
) -> Result<(), CheckpointError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => CheckpointError::Truncated { section },
        _ => CheckpointError::Io(e),
    })
}

/// Reads `len` bytes, growing the buffer only as data arrives.
fn read_memory<R: Read>(r: &mut R, len: u64) -> Result<Vec<u8>, CheckpointError> {
    let oom = |_| io::Error::new(io::ErrorKind::OutOfMemory, "checkpoint memory allocation");
    let mut memory = Vec::new();
    memory
        .try_reserve_exact(len.min(FIRST_ALLOC) as usize)
        .map_err(oom)?;
    while (memory.len() as u64) < len {
        let have = memory.len();
        if have == memory.capacity() {
            memory
                .try_reserve_exact((len - have as u64).min(have as u64) as usize)
                .map_err(oom)?;
        }
        memory.resize(memory.capacity().min(len as usize), 0);
        read_section(r, &mut memory[have..], "memory")?;
    }
    Ok(memory)
}

impl Snapshot {
    /// The state root of this snapshot.
    pub fn state_root(&self) -> Hash {
        self.fields.hash()
    }

    /// Bytes of the encoded file.
    pub fn encoded_len(&self) -> u64 {
        (PREFIX_LEN + CHECKSUM_LEN) as u64 + self.memory.len() as u64
    }

    /// The fixed-size part before the memory.
    fn prefix(&self) -> [u8; PREFIX_LEN] {
        let f = &self.fields;
        let (status, fault) = f.status.code();
        let mut b = [0u8; PREFIX_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..44].copy_from_slice(&self.code_hash);
        b[44] = status;
        b[45] = fault;
        b[46..54].copy_from_slice(&f.step.to_le_bytes());
        b[54..62].copy_from_slice(&f.fuel.to_le_bytes());
        b[62..66].copy_from_slice(&f.memory_pages.to_le_bytes());
        b[66..98].copy_from_slice(&f.memory_root);
        b[98..106].copy_from_slice(&(self.memory.len() as u64).to_le_bytes());
        b
    }

    /// Writes the checkpoint file. Fails with `InvalidInput` if the memory
    /// length does not match `memory_pages`.
    pub fn write_to(&self, mut w: impl Write) -> io::Result<()> {
        if self.memory.len() as u64 != u64::from(self.fields.memory_pages) * PAGE_SIZE {
            let msg = "snapshot memory length does not match memory_pages";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
        let prefix = self.prefix();
        w.write_all(&prefix)?;
        w.write_all(&self.memory)?;
        w.write_all(&tagged(CKPT_TAG, &[&prefix, &self.memory]))?;
        w.flush()
    }

    /// Reads one checkpoint, refusing memories longer than `max_memory`
    /// bytes before allocating them, and verifies the checksum. Reads
    /// nothing past the checksum.
    pub fn read_from(mut r: impl Read, max_memory: u64) -> Result<Snapshot, CheckpointError> {
        let mut p = [0u8; PREFIX_LEN];
        read_section(&mut r, &mut p[..8], "header")?;
        if p[..8] != MAGIC {
            return Err(CheckpointError::BadMagic(arr(&p[..8])));
        }
        read_section(&mut r, &mut p[8..], "header")?;
        let version = u32::from_le_bytes(arr(&p[8..12]));
        if version != VERSION {
            return Err(CheckpointError::UnsupportedVersion(version));
        }
        let status = status_from_code(p[44], p[45])?;
        let memory_pages = u32::from_le_bytes(arr(&p[62..66]));
        let len = u64::from_le_bytes(arr(&p[98..106]));
        if len != u64::from(memory_pages) * PAGE_SIZE {
            return Err(CheckpointError::MemoryLengthMismatch { memory_pages, len });
        }
        if len > max_memory || usize::try_from(len).is_err() {
            return Err(CheckpointError::MemoryTooLarge {
                len,
                max: max_memory,
            });
        }
        let memory = read_memory(&mut r, len)?;
        let mut sum = [0u8; CHECKSUM_LEN];
        read_section(&mut r, &mut sum, "checksum")?;
        if sum != tagged(CKPT_TAG, &[&p, &memory]) {
            return Err(CheckpointError::ChecksumMismatch);
        }
        let fields = StateFields {
            status,
            step: u64::from_le_bytes(arr(&p[46..54])),
            fuel: u64::from_le_bytes(arr(&p[54..62])),
            memory_pages,
            memory_root: arr(&p[66..98]),
        };
        Ok(Snapshot {
            code_hash: arr(&p[12..44]),
            fields,
            memory,
        })
    }

    /// Reads a checkpoint file, which must end right after the checksum.
    pub fn load(path: &Path, max_memory: u64) -> Result<Snapshot, CheckpointError> {
        let mut f = io::BufReader::new(File::open(path)?);
        let snap = Self::read_from(&mut f, max_memory)?;
        match f.read(&mut [0u8; 1])? {
            0 => Ok(snap),
            _ => Err(CheckpointError::TrailingData),
        }
    }

    /// Writes the checkpoint to `path` atomically: to a fresh temporary
    /// file in the same directory, fsynced, renamed over `path`, and then
    /// the directory fsynced. Readers see the old file or the new, whole.
    pub fn save_atomic(&self, path: &Path) -> io::Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "checkpoint path has no file name",
            )
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id());
        let tmp = dir.join(tmp_name);
        let written = (|| {
            let mut f = File::options().write(true).create_new(true).open(&tmp)?;
            self.write_to(&mut f)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        sync_dir(dir)
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Fault;
    use proptest::prelude::*;
    use std::io::Cursor;

    const ALL_FAULTS: [Fault; 9] = Fault::ALL;

    fn snap(pages: u32, seed: u64, status: Status) -> Snapshot {
        let mut x = seed | 1;
        let memory = (0..u64::from(pages) * PAGE_SIZE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (step, fuel, memory_root) = (seed % 1000, seed, [seed as u8; 32]);
        let fields = StateFields {
            status,
            step,
            fuel,
            memory_pages: pages,
            memory_root,
        };
        Snapshot {
            code_hash: [0xc0; 32],
            fields,
            memory,
        }
    }

    fn bytes(s: &Snapshot) -> Vec<u8> {
        let mut v = Vec::new();
        s.write_to(&mut v).unwrap();
        assert_eq!(v.len() as u64, s.encoded_len());
        v
    }

    /// The error reading `b`, as `Debug` text.
    fn err(b: &[u8], max: u64) -> String {
        format!(
            "{:?}",
            Snapshot::read_from(Cursor::new(b), max).unwrap_err()
        )
    }

    fn temp_dir() -> std::path::PathBuf {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let name = format!("opml-ckpt-{}-{}", std::process::id(), t.unwrap().as_nanos());
        let dir = std::env::temp_dir().join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn status_codes_round_trip_and_unknown_codes_fail() {
        let all: Vec<Status> = [Status::Running, Status::Halted]
            .into_iter()
            .chain(ALL_FAULTS.map(Status::Faulted))
            .collect();
        for st in &all {
            let (s, f) = st.code();
            assert_eq!(status_from_code(s, f).unwrap(), *st);
        }
        let mut valid = 0;
        for (s, f) in (0..=255u8).flat_map(|s| (0..=255u8).map(move |f| (s, f))) {
            match status_from_code(s, f) {
                Ok(st) => (valid, _) = (valid + 1, assert_eq!(st.code(), (s, f))),
                Err(e) => assert_eq!(
                    format!("{e:?}"),
                    format!("BadStatus {{ status: {s}, fault: {f} }}")
                ),
            }
        }
        assert_eq!(valid, all.len());
    }

    #[test]
    fn round_trip_in_memory() {
        for (pages, status) in [
            (0, Status::Running),
            (1, Status::Halted),
            (2, Status::Faulted(Fault::OutOfFuel)),
            (1, Status::Faulted(Fault::OtherTrap)),
        ] {
            let s = snap(pages, 77 + u64::from(pages), status);
            let b = bytes(&s);
            assert_eq!(&b[..8], b"OPMLCKPT");
            let back = Snapshot::read_from(Cursor::new(&b), 2 * PAGE_SIZE).unwrap();
            assert_eq!(back, s);
            assert_eq!(back.state_root(), s.fields.hash());
            // Reading stops at the checksum: a second snapshot can follow.
            let two = [b.clone(), b.clone()].concat();
            let mut c = Cursor::new(&two);
            for _ in 0..2 {
                assert_eq!(Snapshot::read_from(&mut c, u64::MAX).unwrap(), s);
            }
        }
    }

    #[test]
    fn round_trip_on_disk_atomically() {
        let dir = temp_dir();
        let path = dir.join("step-00000042.ckpt");
        let (a, b) = (snap(1, 1, Status::Running), snap(2, 2, Status::Halted));
        a.save_atomic(&path).unwrap();
        assert_eq!(Snapshot::load(&path, u64::MAX).unwrap(), a);
        b.save_atomic(&path).unwrap();
        assert_eq!(Snapshot::load(&path, u64::MAX).unwrap(), b);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("step-00000042.ckpt")]);
        let e = Snapshot::load(&path, PAGE_SIZE).unwrap_err();
        assert!(matches!(e, CheckpointError::MemoryTooLarge { .. }), "{e}");
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"x").unwrap();
        drop(f);
        assert!(matches!(
            Snapshot::load(&path, u64::MAX),
            Err(CheckpointError::TrailingData)
        ));
        let bad = Snapshot {
            memory: vec![0; 5],
            ..a
        };
        assert!(bad.save_atomic(&dir.join("bad.ckpt")).is_err());
        assert!(!dir.join("bad.ckpt").exists());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "temporary file left behind"
        );
        assert!(Snapshot::load(&dir.join("missing"), 0).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_corrupted_field_is_named() {
        let good = bytes(&snap(1, 5, Status::Faulted(Fault::TouchLimit)));
        let max = 4 * PAGE_SIZE;
        let with = |at: usize, v: &[u8]| {
            let mut b = good.clone();
            b[at..at + v.len()].copy_from_slice(v);
            b
        };
        for (i, byte) in MAGIC.iter().enumerate() {
            assert!(err(&with(i, &[byte ^ 0x40]), max).starts_with("BadMagic"));
        }
        assert_eq!(
            err(&with(8, &2u32.to_le_bytes()), max),
            "UnsupportedVersion(2)"
        );
        assert_eq!(
            err(&with(8, &0u32.to_le_bytes()), max),
            "UnsupportedVersion(0)"
        );
        for (s, f) in [(3, 0), (0, 1), (1, 7), (2, 0), (2, 10), (255, 255)] {
            let want = format!("BadStatus {{ status: {s}, fault: {f} }}");
            assert_eq!(err(&with(44, &[s, f]), max), want);
        }
        let want = "MemoryLengthMismatch { memory_pages: 2, len: 65536 }";
        assert_eq!(err(&with(62, &2u32.to_le_bytes()), max), want);
        let want = "MemoryLengthMismatch { memory_pages: 1, len: 65537 }";
        assert_eq!(err(&with(98, &65537u64.to_le_bytes()), max), want);
        let mut huge = with(62, &u32::MAX.to_le_bytes());
        huge[98..106].copy_from_slice(&(u64::from(u32::MAX) * PAGE_SIZE).to_le_bytes());
        let want = format!(
            "MemoryTooLarge {{ len: {}, max: {max} }}",
            u64::from(u32::MAX) << 16
        );
        assert_eq!(err(&huge, max), want);
        assert_eq!(
            err(&good, PAGE_SIZE - 1),
            "MemoryTooLarge { len: 65536, max: 65535 }"
        );
        // 1 GiB claimed within the limit, but the bytes never arrive: an
        // error after a bounded first allocation.
        let mut short = with(62, &16384u32.to_le_bytes());
        short[98..106].copy_from_slice(&(16384 * PAGE_SIZE).to_le_bytes());
        assert_eq!(err(&short, u64::MAX), "Truncated { section: \"memory\" }");
        assert_eq!(err(&with(500, &[good[500] ^ 1]), max), "ChecksumMismatch");
        let last = good.len() - 1;
        assert_eq!(err(&with(last, &[good[last] ^ 1]), max), "ChecksumMismatch");
        for (cut, section) in [(0, "header"), (7, "header"), (8, "header"), (105, "header")]
            .into_iter()
            .chain([
                (106, "memory"),
                (65641, "memory"),
                (65642, "checksum"),
                (last, "checksum"),
            ])
        {
            let want = format!("Truncated {{ section: \"{section}\" }}");
            assert_eq!(err(&good[..cut], max), want, "cut at {cut}");
        }
        let s = snap(1, 1, Status::Running);
        let bad = Snapshot {
            memory: vec![0; 100],
            ..s
        };
        assert_eq!(
            bad.write_to(Vec::new()).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn flipping_any_byte_fails(seed: u64, pages in 0u32..=1, at: prop::sample::Index, flip in 1u8..) {
            let mut b = bytes(&snap(pages, seed, Status::Faulted(ALL_FAULTS[seed as usize % 9])));
            let i = at.index(b.len());
            b[i] ^= flip;
            prop_assert!(Snapshot::read_from(Cursor::new(&b), u64::MAX).is_err(), "flip at {}", i);
        }

        #[test]
        fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..300), keep in 0usize..=106) {
            let good = bytes(&snap(0, 3, Status::Halted));
            let b = [&good[..keep], &tail].concat();
            for max in [0, PAGE_SIZE, u64::MAX] {
                let _ = Snapshot::read_from(Cursor::new(&b), max);
                let _ = Snapshot::read_from(Cursor::new(&tail), max);
            }
        }
    }
}
