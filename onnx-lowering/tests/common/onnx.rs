//! A minimal ONNX (protobuf) writer for hand-built test models.

use std::path::{Path, PathBuf};

/// Protobuf wire encoding, just enough for ONNX.
pub struct Pb(Vec<u8>);
impl Pb {
    pub fn new() -> Self {
        Pb(Vec::new())
    }
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    pub fn int(mut self, field: u64, v: i64) -> Self {
        self.varint(field << 3);
        self.varint(v as u64);
        self
    }
    pub fn bytes(mut self, field: u64, b: &[u8]) -> Self {
        self.varint(field << 3 | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(self, field: u64, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    pub fn msg(self, field: u64, m: Pb) -> Self {
        self.bytes(field, &m.0)
    }
}

pub fn value_info(name: &str, shape: &[i64]) -> Pb {
    let dims = shape
        .iter()
        .fold(Pb::new(), |s, d| s.msg(1, Pb::new().int(1, *d)));
    let tensor = Pb::new().int(1, 1).msg(2, dims);
    Pb::new().str(1, name).msg(2, Pb::new().msg(1, tensor))
}

pub fn initializer(name: &str, shape: &[i64], data: &[f32]) -> Pb {
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let t = shape.iter().fold(Pb::new(), |t, d| t.int(1, *d));
    t.int(2, 1).str(8, name).bytes(9, &raw)
}

/// An attribute value.
pub enum Attr {
    I(i64),
    Is(&'static [i64]),
    S(&'static str),
    /// A float (field `f`, wire type 5).
    F(f32),
    Ss(&'static [&'static str]),
}
pub use Attr::{Is, Ss, F, I, S};

/// A node: (op type, name, inputs, outputs, attributes).
pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: &[(&str, Attr)]) -> Pb {
    let mut n = Pb::new();
    for i in inputs {
        n = n.str(1, i);
    }
    for o in outputs {
        n = n.str(2, o);
    }
    n = n.str(3, name).str(4, op);
    for (k, v) in attrs {
        let a = Pb::new().str(1, k);
        let a = match v {
            I(v) => a.int(3, *v).int(20, 2),
            Is(vs) => vs.iter().fold(a, |a, v| a.int(8, *v)).int(20, 7),
            S(s) => a.str(4, s).int(20, 3),
            F(f) => {
                let mut a = a;
                a.varint(2 << 3 | 5);
                a.0.extend_from_slice(&f.to_le_bytes());
                a.int(20, 1)
            }
            Ss(ss) => ss.iter().fold(a, |a, s| a.str(9, s)).int(20, 8),
        };
        n = n.msg(5, a);
    }
    n
}

pub fn model(nodes: Vec<Pb>, inits: Vec<Pb>, inputs: Vec<Pb>, outputs: Vec<Pb>) -> Vec<u8> {
    let mut g = Pb::new().str(2, "g");
    for n in nodes {
        g = g.msg(1, n);
    }
    for i in inits {
        g = g.msg(5, i);
    }
    for i in inputs {
        g = g.msg(11, i);
    }
    for o in outputs {
        g = g.msg(12, o);
    }
    Pb::new()
        .int(1, 7)
        .msg(8, Pb::new().str(1, "").int(2, 13))
        .msg(7, g)
        .0
}

pub fn write_model(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("import");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}
