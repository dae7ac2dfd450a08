//! One file per op family. Each family gives, for its IR op:
//! the Wasm kernel (a WAT function `(param $d i32) (param $u i32)` computing
//! work unit `$u` of the node whose descriptor words start at byte `$d`),
//! the descriptor, the split into units, and the native implementation of
//! the whole op. Kernels are branch-free in the data (loop bounds and
//! branches depend only on shapes and unit indices), so the fuel of every
//! step is the same for every input.

pub mod act_matmul;
pub mod avg_pool;
pub mod binary;
pub mod channel_mul;
pub mod col_add;
pub mod conv;
pub mod elementwise;
pub mod family;
pub mod gather;
pub mod interp;
pub mod layer_norm;
pub mod masked_softmax;
pub mod matmul;
pub mod mem;
pub mod native_gemm;
pub mod pool;
pub mod product_sum;
pub mod rearrange;
pub mod softmax;
