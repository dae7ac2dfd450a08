//! Conv: 2-D convolution, batch 1, NCHW, zero padding, groups (see
//! [`crate::ir::Conv`]).
//!
//! A unit is a block of `ocb` output channels by `rb` output rows by `xb`
//! output columns: unit `u` is column block `u % nxb`, row block
//! `(u / nxb) % nyb`, channel block `u / (nxb * nyb)`.
//!
//! For every output element the kernel clips the window to the input: the
//! valid taps `ky0..ky1`, `kx0..kx1` depend only on the output position, so
//! out-of-range positions are skipped by loop bounds, never by looking at
//! the data, and the fuel of a unit is the same for every input. The
//! reduction over `(ic, ky, kx)` runs as three nested loops whose strides
//! come from the descriptor: with `mode = 1` (`C/group >= KW`, unless the
//! kernel rows have four or more unit-dilation taps) the input channel is
//! innermost, otherwise the kernel column. The innermost loop does eight
//! products per iteration and the rest (`n % 8`) by jumping into an
//! unrolled run through a `br_table` whose index depends only on shapes.
//!
//! Faster paths, all chosen from shapes only, use constant load offsets
//! (`i32.load8_s offset=k`) off one pointer instead of address arithmetic:
//! * 3x3 kernels with `dw = 1`: one straight-line body per window shape
//!   `nky x nkx` (whole windows, and the clipped ones at the edges) over
//!   three row pointers, looping over the input channels (no loop when
//!   there is one channel per group);
//! * 1x1 kernels: eight input channels per iteration, weights at constant
//!   offsets;
//! * unit inner strides (`mode = 0`, `dw = 1`): a window row at a time, the
//!   taps at constant offsets, `nkx % 8` of them through a `br_table`.

mod native;
mod schedule;
mod text;
mod wat;

pub use native::{run_native, run_reference};
pub use schedule::schedule;
pub use wat::{kernel_text, KERNEL};
