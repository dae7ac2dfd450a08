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

use crate::ir::{requantize, Conv, Program};
use crate::ops::family::{Budget, Kernel, Scheduled};
use crate::ops::mem::read_i32;

/// Bytes of a memory chunk with the default `CodegenOptions::chunk_log2`.
const CHUNK: u64 = 512;

/// Descriptor words (index: meaning): 0 in, 1 w, 2 bias, 3 out, 4 mul,
/// 5 shift, 6 H, 7 W, 8 KH, 9 KW, 10 C/group, 11 C/group*KH*KW, 12 OC/group,
/// 13 OC, 14 OH, 15 OW, 16 sh, 17 sw, 18 pt, 19 pl, 20 dh, 21 dw, 22 ocb,
/// 23 rb, 24 xb, 25 nyb, 26 nxb, 27..=32 input and weight strides of the
/// outer, middle and inner reduction loops, 33 mode, 34 zp, 35 lo, 36 hi,
/// 37 C, 38 group, 39 pb, 40 pr, 41 input bytes per group, 42 first
/// column whose window lies inside the input, 43 number of such columns.
pub const KERNEL: Kernel = Kernel {
    name: "conv",
    wat: r#"
  (func $conv (param $d i32) (param $u i32)
    (local $out i32) (local $H i32) (local $W i32) (local $KH i32) (local $KW i32) (local $Cg i32)
    (local $OH i32) (local $OW i32) (local $sh i32) (local $sw i32) (local $pt i32) (local $pl i32)
    (local $dh i32) (local $dw i32) (local $dh1 i32) (local $dw1 i32) (local $mode i32) (local $xi0 i32)
    (local $xn i32) (local $oc i32) (local $oc1 i32) (local $y i32) (local $y0 i32) (local $y1 i32)
    (local $x i32) (local $x0 i32) (local $x1 i32) (local $t i32)
    (local $aA i32) (local $bA i32) (local $aB i32) (local $bB i32)
    (local $a1 i32) (local $a2 i32) (local $a3 i32) (local $a4 i32) (local $a5 i32) (local $a6 i32) (local $a7 i32)
    (local $a8 i32) (local $b1 i32) (local $b2 i32) (local $b3 i32) (local $b4 i32) (local $b5 i32) (local $b6 i32)
    (local $b7 i32) (local $b8 i32)
    (local $pin i32) (local $pwoc i32) (local $bv i32) (local $iy0 i32) (local $ky0 i32) (local $nky i32)
    (local $nA i32) (local $prow i32) (local $wrow i32) (local $po i32) (local $ix0 i32) (local $kx0 i32)
    (local $nkx i32) (local $acc i32) (local $nB i32) (local $nC i32) (local $n8 i32) (local $nr i32)
    (local $n8b i32) (local $pia i32) (local $pwa i32) (local $ja i32) (local $pib i32) (local $pwb i32)
    (local $jb i32) (local $p i32) (local $q i32) (local $qe i32)
    (local $unit i32) (local $aBf i32) (local $bBf i32) (local $we i32) (local $nBbB i32)
    (local $full3 i32) (local $kind i32) (local $kfull i32) (local $kcode i32) (local $n8c i32) (local $nrc i32) (local $n8c8 i32) (local $pxi i32) (local $nky4 i32) (local $c1off i32) (local $pend i32) (local $hw i32) (local $rs i32) (local $w9 i32) (local $p1 i32) (local $p2 i32)
    (local $m i64) (local $s i64) (local $rnd i64) (local $zp i64) (local $lo i64) (local $hi i64) (local $v i64)
    (local.set $out (i32.load offset=12 (local.get $d)))
    (local.set $H (i32.load offset=24 (local.get $d)))
    (local.set $W (i32.load offset=28 (local.get $d)))
    (local.set $KH (i32.load offset=32 (local.get $d)))
    (local.set $KW (i32.load offset=36 (local.get $d)))
    (local.set $Cg (i32.load offset=40 (local.get $d)))
    (local.set $OH (i32.load offset=56 (local.get $d)))
    (local.set $OW (i32.load offset=60 (local.get $d)))
    (local.set $sh (i32.load offset=64 (local.get $d)))
    (local.set $sw (i32.load offset=68 (local.get $d)))
    (local.set $pt (i32.load offset=72 (local.get $d)))
    (local.set $pl (i32.load offset=76 (local.get $d)))
    (local.set $dh (i32.load offset=80 (local.get $d)))
    (local.set $dw (i32.load offset=84 (local.get $d)))
    (local.set $dh1 (i32.sub (local.get $dh) (i32.const 1)))
    (local.set $dw1 (i32.sub (local.get $dw) (i32.const 1)))
    (local.set $aA (i32.load offset=108 (local.get $d)))
    (local.set $bA (i32.load offset=112 (local.get $d)))
    (local.set $aB (i32.load offset=116 (local.get $d)))
    (local.set $bB (i32.load offset=120 (local.get $d)))
    (local.set $a1 (i32.load offset=124 (local.get $d)))
    (local.set $b1 (i32.load offset=128 (local.get $d)))
    (local.set $a2 (i32.shl (local.get $a1) (i32.const 1)))
    (local.set $b2 (i32.shl (local.get $b1) (i32.const 1)))
    (local.set $a3 (i32.add (local.get $a2) (local.get $a1)))
    (local.set $b3 (i32.add (local.get $b2) (local.get $b1)))
    (local.set $a4 (i32.shl (local.get $a1) (i32.const 2)))
    (local.set $b4 (i32.shl (local.get $b1) (i32.const 2)))
    (local.set $a5 (i32.add (local.get $a4) (local.get $a1)))
    (local.set $b5 (i32.add (local.get $b4) (local.get $b1)))
    (local.set $a6 (i32.shl (local.get $a3) (i32.const 1)))
    (local.set $b6 (i32.shl (local.get $b3) (i32.const 1)))
    (local.set $a7 (i32.add (local.get $a6) (local.get $a1)))
    (local.set $b7 (i32.add (local.get $b6) (local.get $b1)))
    (local.set $a8 (i32.shl (local.get $a1) (i32.const 3)))
    (local.set $b8 (i32.shl (local.get $b1) (i32.const 3)))
    (local.set $mode (i32.load offset=132 (local.get $d)))
    (local.set $full3 (i32.and (i32.and (i32.eq (local.get $KH) (i32.const 3)) (i32.eq (local.get $KW) (i32.const 3)))
                               (i32.eq (local.get $dw) (i32.const 1))))
    (local.set $hw (i32.mul (local.get $H) (local.get $W)))
    (local.set $kfull (select (i32.const 1) (i32.const 0)
                              (i32.and (i32.eq (local.get $KH) (i32.const 1)) (i32.eq (local.get $KW) (i32.const 1)))))
    (local.set $kcode (local.get $kfull))
    (if (local.get $full3) (then (local.set $kfull (i32.const 3)) (local.set $kcode (i32.const 2))))
    (local.set $c1off (i32.shl (i32.eq (local.get $Cg) (i32.const 1)) (i32.const 4)))
    (if (i32.and (local.get $full3) (i32.eq (local.get $Cg) (i32.const 1))) (then (local.set $kcode (i32.const 3))))
    (local.set $n8c (i32.shr_u (local.get $Cg) (i32.const 3)))
    (local.set $nrc (i32.and (local.get $Cg) (i32.const 7)))
    (local.set $n8c8 (i32.shl (local.get $n8c) (i32.const 3)))
    (local.set $rs (i32.mul (local.get $dh) (local.get $W)))
    (local.set $w9 (i32.mul (local.get $Cg) (i32.const 9)))
    (local.set $unit (i32.and (i32.eqz (local.get $mode)) (i32.eq (local.get $dw) (i32.const 1))))
    (local.set $zp (i64.load32_s offset=136 (local.get $d)))
    (local.set $lo (i64.load32_s offset=140 (local.get $d)))
    (local.set $hi (i64.load32_s offset=144 (local.get $d)))
    (local.set $xi0 (i32.load offset=168 (local.get $d)))
    (local.set $xn (i32.load offset=172 (local.get $d)))
    ;; the unit's blocks, clipped without data-dependent branches
    (local.set $x0 (i32.mul (i32.rem_u (local.get $u) (i32.load offset=104 (local.get $d)))
                            (i32.load offset=96 (local.get $d))))
    (local.set $t (i32.div_u (local.get $u) (i32.load offset=104 (local.get $d))))
    (local.set $y0 (i32.mul (i32.rem_u (local.get $t) (i32.load offset=100 (local.get $d)))
                            (i32.load offset=92 (local.get $d))))
    (local.set $oc (i32.mul (i32.div_u (local.get $t) (i32.load offset=100 (local.get $d)))
                            (i32.load offset=88 (local.get $d))))
    (local.set $x1 (i32.add (local.get $x0) (i32.load offset=96 (local.get $d))))
    (local.set $x1 (select (local.get $OW) (local.get $x1) (i32.gt_u (local.get $x1) (local.get $OW))))
    (local.set $y1 (i32.add (local.get $y0) (i32.load offset=92 (local.get $d))))
    (local.set $y1 (select (local.get $OH) (local.get $y1) (i32.gt_u (local.get $y1) (local.get $OH))))
    (local.set $oc1 (i32.add (local.get $oc) (i32.load offset=88 (local.get $d))))
    (local.set $t (i32.load offset=52 (local.get $d)))
    (local.set $oc1 (select (local.get $t) (local.get $oc1) (i32.gt_u (local.get $oc1) (local.get $t))))
    (loop $ocs
      (local.set $pin (i32.add (i32.load offset=0 (local.get $d))
        (i32.mul (i32.div_u (local.get $oc) (i32.load offset=48 (local.get $d)))
                 (i32.load offset=164 (local.get $d)))))
      (local.set $pwoc (i32.add (i32.load offset=4 (local.get $d))
        (i32.mul (local.get $oc) (i32.load offset=44 (local.get $d)))))
      (local.set $t (i32.shl (local.get $oc) (i32.const 2)))
      (local.set $bv (i32.load (i32.add (i32.load offset=8 (local.get $d)) (local.get $t))))
      (local.set $m (i64.load32_s (i32.add (i32.load offset=16 (local.get $d)) (local.get $t))))
      (local.set $s (i64.load32_s (i32.add (i32.load offset=20 (local.get $d)) (local.get $t))))
      (local.set $rnd (i64.shl (i64.const 1) (i64.sub (local.get $s) (i64.const 1))))
      (local.set $y (local.get $y0))
      (loop $ys
        ;; rows: ky0 = max(0, ceil(-iy0 / dh)), nky = max(0, min(KH, ceil((H - iy0) / dh)) - ky0)
        (local.set $iy0 (i32.sub (i32.mul (local.get $y) (local.get $sh)) (local.get $pt)))
        (local.set $ky0 (i32.div_s (i32.sub (local.get $dh1) (local.get $iy0)) (local.get $dh)))
        (local.set $ky0 (select (local.get $ky0) (i32.const 0) (i32.gt_s (local.get $ky0) (i32.const 0))))
        (local.set $t (i32.div_s (i32.add (i32.sub (local.get $H) (local.get $iy0)) (local.get $dh1)) (local.get $dh)))
        (local.set $t (select (local.get $KH) (local.get $t) (i32.gt_s (local.get $t) (local.get $KH))))
        (local.set $nky (i32.sub (local.get $t) (local.get $ky0)))
        (local.set $nky (select (local.get $nky) (i32.const 0) (i32.gt_s (local.get $nky) (i32.const 0))))
        (local.set $nBbB (i32.mul (local.get $nky) (local.get $KW)))
        (local.set $nky4 (i32.add (i32.shl (local.get $nky) (i32.const 2)) (local.get $c1off)))
        (local.set $kind (select (local.get $kcode) (i32.const 0) (i32.eq (local.get $nky) (local.get $kfull))))
        (local.set $nA (select (local.get $nky) (local.get $Cg) (local.get $mode)))
        (local.set $prow (i32.add (local.get $pin)
          (i32.mul (i32.add (local.get $iy0) (i32.mul (local.get $ky0) (local.get $dh))) (local.get $W))))
        (local.set $wrow (i32.add (local.get $pwoc) (i32.mul (local.get $ky0) (local.get $KW))))
        (local.set $po (i32.add (local.get $out) (i32.add (local.get $x0)
          (i32.mul (i32.add (i32.mul (local.get $oc) (local.get $OH)) (local.get $y)) (local.get $OW)))))
        ;; output pointers: of column xi0 (the first whole window) and past x1
        (local.set $pxi (i32.sub (i32.add (local.get $po) (local.get $xi0)) (local.get $x0)))
        (local.set $pend (i32.sub (i32.add (local.get $po) (local.get $x1)) (local.get $x0)))
        (local.set $ix0 (i32.sub (i32.mul (local.get $x0) (local.get $sw)) (local.get $pl)))
        (loop $xs
          (local.set $acc (local.get $bv))
          (block $done
          ;; columns: the same clipping, skipped for windows inside the input
          (if (i32.lt_u (i32.sub (local.get $po) (local.get $pxi)) (local.get $xn))
            (then
              ;; whole windows of a 3x3 (dw = 1) or 1x1 kernel: kind 2 or 1
              (block $gen
              (block $kw1
              (block $kw3
              (block $kw3c1
                (br_table $gen $kw1 $kw3 $kw3c1 (local.get $kind)))
              ;; 3x3 with one input channel per group: no channel loop
              (local.set $pib (i32.add (local.get $prow) (local.get $ix0)))
              (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
              (local.set $p2 (i32.add (local.get $p1) (local.get $rs)))
              (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                (local.get $acc)
                (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $wrow))))
                (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $wrow))))
                (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $wrow))))
                (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $wrow))))
                (i32.mul (i32.load8_s offset=1 (local.get $p1)) (i32.load8_s offset=4 (local.get $wrow))))
                (i32.mul (i32.load8_s offset=2 (local.get $p1)) (i32.load8_s offset=5 (local.get $wrow))))
                (i32.mul (i32.load8_s (local.get $p2)) (i32.load8_s offset=6 (local.get $wrow))))
                (i32.mul (i32.load8_s offset=1 (local.get $p2)) (i32.load8_s offset=7 (local.get $wrow))))
                (i32.mul (i32.load8_s offset=2 (local.get $p2)) (i32.load8_s offset=8 (local.get $wrow)))))
              (br $done))
              ;; 3x3: one straight-line region per input channel, constant
              ;; load offsets off the row pointers and the weights
              (local.set $pib (i32.add (local.get $prow) (local.get $ix0)))
              (local.set $pwb (local.get $wrow))
              (local.set $we (i32.add (local.get $wrow) (local.get $w9)))
              (loop $k3
                (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                (local.set $p2 (i32.add (local.get $p1) (local.get $rs)))
                  (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                    (local.get $acc)
                    (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $p1)) (i32.load8_s offset=4 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=2 (local.get $p1)) (i32.load8_s offset=5 (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p2)) (i32.load8_s offset=6 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $p2)) (i32.load8_s offset=7 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=2 (local.get $p2)) (i32.load8_s offset=8 (local.get $pwb)))))
                (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                (br_if $k3 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                  (br $done))
              ;; 1x1: eight channels per iteration, constant weight offsets
                  (local.set $pib (i32.add (local.get $prow) (local.get $ix0)))
                  (local.set $pwb (local.get $wrow))
                  (if (local.get $n8c)
                    (then
                      (local.set $qe (i32.add (local.get $pwb) (local.get $n8c8)))
                      (loop $k1
                      (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                        (local.get $acc)
                        (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                        (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a1))) (i32.load8_s offset=1 (local.get $pwb))))
                        (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a2))) (i32.load8_s offset=2 (local.get $pwb))))
                        (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a3))) (i32.load8_s offset=3 (local.get $pwb))))
                        (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a4))) (i32.load8_s offset=4 (local.get $pwb))))
                        (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a5))) (i32.load8_s offset=5 (local.get $pwb))))
                        (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a6))) (i32.load8_s offset=6 (local.get $pwb))))
                        (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a7))) (i32.load8_s offset=7 (local.get $pwb)))))
                        (local.set $pib (i32.add (local.get $pib) (local.get $a8)))
                        (br_if $k1 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 8))) (local.get $qe))))))
                  (local.set $acc
                    (block $t0 (result i32) (block $t1 (result i32) (block $t2 (result i32) (block $t3 (result i32)
                    (block $t4 (result i32) (block $t5 (result i32) (block $t6 (result i32) (block $t7 (result i32)
                      (br_table $t0 $t1 $t2 $t3 $t4 $t5 $t6 $t7 (local.get $acc) (local.get $nrc)))
                      (i32.add (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a6))) (i32.load8_s offset=6 (local.get $pwb)))))
                      (i32.add (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a5))) (i32.load8_s offset=5 (local.get $pwb)))))
                      (i32.add (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a4))) (i32.load8_s offset=4 (local.get $pwb)))))
                      (i32.add (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a3))) (i32.load8_s offset=3 (local.get $pwb)))))
                      (i32.add (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a2))) (i32.load8_s offset=2 (local.get $pwb)))))
                      (i32.add (i32.mul (i32.load8_s (i32.add (local.get $pib) (local.get $a1))) (i32.load8_s offset=1 (local.get $pwb)))))
                      (i32.add (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))))
                  (br $done))
              (local.set $kx0 (i32.const 0))
              (local.set $nkx (local.get $KW)))
            (else
              (local.set $kx0 (i32.div_s (i32.sub (local.get $dw1) (local.get $ix0)) (local.get $dw)))
              (local.set $kx0 (select (local.get $kx0) (i32.const 0) (i32.gt_s (local.get $kx0) (i32.const 0))))
              (local.set $t (i32.div_s (i32.add (i32.sub (local.get $W) (local.get $ix0)) (local.get $dw1)) (local.get $dw)))
              (local.set $t (select (local.get $KW) (local.get $t) (i32.gt_s (local.get $t) (local.get $KW))))
              (local.set $nkx (i32.sub (local.get $t) (local.get $kx0)))
              (local.set $nkx (select (local.get $nkx) (i32.const 0) (i32.gt_s (local.get $nkx) (i32.const 0))))))
            ;; clipped windows of a 3x3 kernel (dw = 1): one straight-line body
            ;; per window shape nky x nkx (both 0..=3), looping over the input
            ;; channels unless there is one per group (bodies 16..=31)
            (if (local.get $full3)
              (then
                (local.set $pib (i32.add (i32.add (local.get $prow) (local.get $ix0)) (local.get $kx0)))
                (local.set $pwb (i32.add (local.get $wrow) (local.get $kx0)))
                (block $c0 (block $c1 (block $c2 (block $c3 (block $c4 (block $c5 (block $c6 (block $c7 (block $c8 (block $c9 (block $c10 (block $c11 (block $c12 (block $c13 (block $c14 (block $c15 (block $c16 (block $c17 (block $c18 (block $c19 (block $c20 (block $c21 (block $c22 (block $c23 (block $c24 (block $c25 (block $c26 (block $c27 (block $c28 (block $c29 (block $c30 (block $c31
                  (br_table $c0 $c1 $c2 $c3 $c4 $c5 $c6 $c7 $c8 $c9 $c10 $c11 $c12 $c13 $c14 $c15 $c16 $c17 $c18 $c19 $c20 $c21 $c22 $c23 $c24 $c25 $c26 $c27 $c28 $c29 $c30 $c31 (i32.add (local.get $nky4) (local.get $nkx))))
                (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                (local.set $p2 (i32.add (local.get $p1) (local.get $rs)))
                (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                  (local.get $acc)
                  (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $pwb))))
                  (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $p1)) (i32.load8_s offset=4 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=2 (local.get $p1)) (i32.load8_s offset=5 (local.get $pwb))))
                  (i32.mul (i32.load8_s (local.get $p2)) (i32.load8_s offset=6 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $p2)) (i32.load8_s offset=7 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=2 (local.get $p2)) (i32.load8_s offset=8 (local.get $pwb)))))
                (br $done))
                (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                (local.set $p2 (i32.add (local.get $p1) (local.get $rs)))
                (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                  (local.get $acc)
                  (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                  (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $p1)) (i32.load8_s offset=4 (local.get $pwb))))
                  (i32.mul (i32.load8_s (local.get $p2)) (i32.load8_s offset=6 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $p2)) (i32.load8_s offset=7 (local.get $pwb)))))
                (br $done))
                (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                (local.set $p2 (i32.add (local.get $p1) (local.get $rs)))
                (local.set $acc (i32.add (i32.add (i32.add
                  (local.get $acc)
                  (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                  (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                  (i32.mul (i32.load8_s (local.get $p2)) (i32.load8_s offset=6 (local.get $pwb)))))
                (br $done))
                (br $done))
                (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                  (local.get $acc)
                  (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $pwb))))
                  (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $p1)) (i32.load8_s offset=4 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=2 (local.get $p1)) (i32.load8_s offset=5 (local.get $pwb)))))
                (br $done))
                (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                (local.set $acc (i32.add (i32.add (i32.add (i32.add
                  (local.get $acc)
                  (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                  (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $p1)) (i32.load8_s offset=4 (local.get $pwb)))))
                (br $done))
                (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                (local.set $acc (i32.add (i32.add
                  (local.get $acc)
                  (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                  (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb)))))
                (br $done))
                (br $done))
                (local.set $acc (i32.add (i32.add (i32.add
                  (local.get $acc)
                  (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $pwb)))))
                (br $done))
                (local.set $acc (i32.add (i32.add
                  (local.get $acc)
                  (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                  (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb)))))
                (br $done))
                (local.set $acc (i32.add
                  (local.get $acc)
                  (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb)))))
                (br $done))
                (br $done))
                (br $done))
                (br $done))
                (br $done))
                (br $done))
                (local.set $we (i32.add (local.get $pwb) (local.get $w9)))
                (loop $e15
                  (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                  (local.set $p2 (i32.add (local.get $p1) (local.get $rs)))
                  (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                    (local.get $acc)
                    (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $p1)) (i32.load8_s offset=4 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=2 (local.get $p1)) (i32.load8_s offset=5 (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p2)) (i32.load8_s offset=6 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $p2)) (i32.load8_s offset=7 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=2 (local.get $p2)) (i32.load8_s offset=8 (local.get $pwb)))))
                  (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                  (br_if $e15 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                (br $done))
                (local.set $we (i32.add (local.get $pwb) (local.get $w9)))
                (loop $e14
                  (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                  (local.set $p2 (i32.add (local.get $p1) (local.get $rs)))
                  (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                    (local.get $acc)
                    (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $p1)) (i32.load8_s offset=4 (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p2)) (i32.load8_s offset=6 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $p2)) (i32.load8_s offset=7 (local.get $pwb)))))
                  (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                  (br_if $e14 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                (br $done))
                (local.set $we (i32.add (local.get $pwb) (local.get $w9)))
                (loop $e13
                  (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                  (local.set $p2 (i32.add (local.get $p1) (local.get $rs)))
                  (local.set $acc (i32.add (i32.add (i32.add
                    (local.get $acc)
                    (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p2)) (i32.load8_s offset=6 (local.get $pwb)))))
                  (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                  (br_if $e13 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                (br $done))
                (br $done))
                (local.set $we (i32.add (local.get $pwb) (local.get $w9)))
                (loop $e11
                  (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                  (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                    (local.get $acc)
                    (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $p1)) (i32.load8_s offset=4 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=2 (local.get $p1)) (i32.load8_s offset=5 (local.get $pwb)))))
                  (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                  (br_if $e11 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                (br $done))
                (local.set $we (i32.add (local.get $pwb) (local.get $w9)))
                (loop $e10
                  (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                  (local.set $acc (i32.add (i32.add (i32.add (i32.add
                    (local.get $acc)
                    (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $p1)) (i32.load8_s offset=4 (local.get $pwb)))))
                  (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                  (br_if $e10 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                (br $done))
                (local.set $we (i32.add (local.get $pwb) (local.get $w9)))
                (loop $e9
                  (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                  (local.set $acc (i32.add (i32.add
                    (local.get $acc)
                    (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                    (i32.mul (i32.load8_s (local.get $p1)) (i32.load8_s offset=3 (local.get $pwb)))))
                  (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                  (br_if $e9 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                (br $done))
                (br $done))
                (local.set $we (i32.add (local.get $pwb) (local.get $w9)))
                (loop $e7
                  (local.set $acc (i32.add (i32.add (i32.add
                    (local.get $acc)
                    (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $pwb)))))
                  (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                  (br_if $e7 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                (br $done))
                (local.set $we (i32.add (local.get $pwb) (local.get $w9)))
                (loop $e6
                  (local.set $acc (i32.add (i32.add
                    (local.get $acc)
                    (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                    (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb)))))
                  (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                  (br_if $e6 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                (br $done))
                (local.set $we (i32.add (local.get $pwb) (local.get $w9)))
                (loop $e5
                  (local.set $acc (i32.add
                    (local.get $acc)
                    (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb)))))
                  (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                  (br_if $e5 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                (br $done))
                (br $done))
                (br $done))
                (br $done))
                (br $done))
                (br $done)))
          (if (i32.mul (local.get $nky) (local.get $nkx))
            (then
              (if (local.get $unit)
                (then
                  ;; unit inner strides (mode 0, dw = 1): constant load offsets off
                  ;; one input and one weight pointer, a window row at a time
                  (local.set $n8 (i32.shr_u (local.get $nkx) (i32.const 3)))
                  (local.set $nr (i32.and (local.get $nkx) (i32.const 7)))
                  (local.set $pia (i32.add (i32.add (local.get $prow) (local.get $ix0)) (local.get $kx0)))
                  (local.set $pwa (i32.add (local.get $wrow) (local.get $kx0)))
                  (if (local.get $n8)
                    (then
                      (local.set $n8b (i32.shl (local.get $n8) (i32.const 3)))
                      (local.set $aBf (i32.sub (local.get $aB) (local.get $n8b)))
                      (local.set $bBf (i32.sub (local.get $bB) (local.get $n8b)))))
                  (local.set $ja (local.get $Cg))
                  (loop $fa
                    (local.set $pib (local.get $pia))
                    (local.set $pwb (local.get $pwa))
                    (local.set $we (i32.add (local.get $pwa) (local.get $nBbB)))
                    (if (local.get $n8)
                      (then
                        (loop $fb8
                          (local.set $qe (i32.add (local.get $pwb) (local.get $n8b)))
                          (loop $f8
                            (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                            (local.get $acc)
                            (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))
                            (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb))))
                            (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $pwb))))
                            (i32.mul (i32.load8_s offset=3 (local.get $pib)) (i32.load8_s offset=3 (local.get $pwb))))
                            (i32.mul (i32.load8_s offset=4 (local.get $pib)) (i32.load8_s offset=4 (local.get $pwb))))
                            (i32.mul (i32.load8_s offset=5 (local.get $pib)) (i32.load8_s offset=5 (local.get $pwb))))
                            (i32.mul (i32.load8_s offset=6 (local.get $pib)) (i32.load8_s offset=6 (local.get $pwb))))
                            (i32.mul (i32.load8_s offset=7 (local.get $pib)) (i32.load8_s offset=7 (local.get $pwb)))))
                            (local.set $pib (i32.add (local.get $pib) (i32.const 8)))
                            (br_if $f8 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 8))) (local.get $qe))))
                          (local.set $acc
                            (block $s0 (result i32) (block $s1 (result i32) (block $s2 (result i32) (block $s3 (result i32)
                            (block $s4 (result i32) (block $s5 (result i32) (block $s6 (result i32) (block $s7 (result i32)
                              (br_table $s0 $s1 $s2 $s3 $s4 $s5 $s6 $s7 (local.get $acc) (local.get $nr)))
                              (i32.add (i32.mul (i32.load8_s offset=6 (local.get $pib)) (i32.load8_s offset=6 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s offset=5 (local.get $pib)) (i32.load8_s offset=5 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s offset=4 (local.get $pib)) (i32.load8_s offset=4 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s offset=3 (local.get $pib)) (i32.load8_s offset=3 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))))
                          (local.set $pib (i32.add (local.get $pib) (local.get $aBf)))
                          (br_if $fb8 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (local.get $bBf))) (local.get $we)))))
                      (else
                        (loop $fb
                          (local.set $acc
                            (block $s0 (result i32) (block $s1 (result i32) (block $s2 (result i32) (block $s3 (result i32)
                            (block $s4 (result i32) (block $s5 (result i32) (block $s6 (result i32) (block $s7 (result i32)
                              (br_table $s0 $s1 $s2 $s3 $s4 $s5 $s6 $s7 (local.get $acc) (local.get $nr)))
                              (i32.add (i32.mul (i32.load8_s offset=6 (local.get $pib)) (i32.load8_s offset=6 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s offset=5 (local.get $pib)) (i32.load8_s offset=5 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s offset=4 (local.get $pib)) (i32.load8_s offset=4 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s offset=3 (local.get $pib)) (i32.load8_s offset=3 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s offset=2 (local.get $pib)) (i32.load8_s offset=2 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s offset=1 (local.get $pib)) (i32.load8_s offset=1 (local.get $pwb)))))
                              (i32.add (i32.mul (i32.load8_s (local.get $pib)) (i32.load8_s (local.get $pwb))))))
                          (local.set $pib (i32.add (local.get $pib) (local.get $aB)))
                          (br_if $fb (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (local.get $bB))) (local.get $we))))))
                    (local.set $pia (i32.add (local.get $pia) (local.get $aA)))
                    (local.set $pwa (i32.add (local.get $pwa) (local.get $bA)))
                    (br_if $fa (local.tee $ja (i32.sub (local.get $ja) (i32.const 1))))))
                (else
              (local.set $nB (select (local.get $nkx) (local.get $nky) (local.get $mode)))
              (local.set $nC (select (local.get $Cg) (local.get $nkx) (local.get $mode)))
              (local.set $n8 (i32.shr_u (local.get $nC) (i32.const 3)))
              (local.set $nr (i32.and (local.get $nC) (i32.const 7)))
              (local.set $n8b (i32.mul (local.get $n8) (local.get $b8)))
              (local.set $pia (i32.add (i32.add (local.get $prow) (local.get $ix0))
                                       (i32.mul (local.get $kx0) (local.get $dw))))
              (local.set $pwa (i32.add (local.get $wrow) (local.get $kx0)))
              (local.set $ja (local.get $nA))
              (loop $la
                (local.set $pib (local.get $pia))
                (local.set $pwb (local.get $pwa))
                (local.set $jb (local.get $nB))
                (loop $lb
                  (local.set $p (local.get $pib))
                  (local.set $q (local.get $pwb))
                  (if (local.get $n8)
                    (then
                      (local.set $qe (i32.add (local.get $q) (local.get $n8b)))
                      (loop $l8
                        (local.set $acc (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add (i32.add
                          (local.get $acc)
                          (i32.mul (i32.load8_s (local.get $p)) (i32.load8_s (local.get $q))))
                          (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a1))) (i32.load8_s (i32.add (local.get $q) (local.get $b1)))))
                          (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a2))) (i32.load8_s (i32.add (local.get $q) (local.get $b2)))))
                          (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a3))) (i32.load8_s (i32.add (local.get $q) (local.get $b3)))))
                          (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a4))) (i32.load8_s (i32.add (local.get $q) (local.get $b4)))))
                          (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a5))) (i32.load8_s (i32.add (local.get $q) (local.get $b5)))))
                          (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a6))) (i32.load8_s (i32.add (local.get $q) (local.get $b6)))))
                          (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a7))) (i32.load8_s (i32.add (local.get $q) (local.get $b7))))))
                        (local.set $p (i32.add (local.get $p) (local.get $a8)))
                        (br_if $l8 (i32.ne (local.tee $q (i32.add (local.get $q) (local.get $b8))) (local.get $qe))))))
                  ;; the last nC % 8 products: jump into the unrolled run
                  (block $r0 (block $r1 (block $r2 (block $r3 (block $r4 (block $r5 (block $r6 (block $r7
                    (br_table $r0 $r1 $r2 $r3 $r4 $r5 $r6 $r7 (local.get $nr)))
                    (local.set $acc (i32.add (local.get $acc) (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a6))) (i32.load8_s (i32.add (local.get $q) (local.get $b6)))))))
                    (local.set $acc (i32.add (local.get $acc) (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a5))) (i32.load8_s (i32.add (local.get $q) (local.get $b5)))))))
                    (local.set $acc (i32.add (local.get $acc) (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a4))) (i32.load8_s (i32.add (local.get $q) (local.get $b4)))))))
                    (local.set $acc (i32.add (local.get $acc) (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a3))) (i32.load8_s (i32.add (local.get $q) (local.get $b3)))))))
                    (local.set $acc (i32.add (local.get $acc) (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a2))) (i32.load8_s (i32.add (local.get $q) (local.get $b2)))))))
                    (local.set $acc (i32.add (local.get $acc) (i32.mul (i32.load8_s (i32.add (local.get $p) (local.get $a1))) (i32.load8_s (i32.add (local.get $q) (local.get $b1)))))))
                    (local.set $acc (i32.add (local.get $acc) (i32.mul (i32.load8_s (local.get $p)) (i32.load8_s (local.get $q))))))
                  (local.set $pib (i32.add (local.get $pib) (local.get $aB)))
                  (local.set $pwb (i32.add (local.get $pwb) (local.get $bB)))
                  (br_if $lb (local.tee $jb (i32.sub (local.get $jb) (i32.const 1)))))
                (local.set $pia (i32.add (local.get $pia) (local.get $aA)))
                (local.set $pwa (i32.add (local.get $pwa) (local.get $bA)))
                (br_if $la (local.tee $ja (i32.sub (local.get $ja) (i32.const 1))))))))))
          ;; requantize: ((acc * m + 2^(s-1)) >> s) + zp, clamped to lo..=hi
          (i64.store8 (local.get $po)
            (select (local.get $hi)
              (local.tee $v
                (select (local.get $lo)
                  (local.tee $v
                    (i64.add (i64.shr_s (i64.add (i64.mul (i64.extend_i32_s (local.get $acc)) (local.get $m))
                                                 (local.get $rnd))
                                        (local.get $s))
                             (local.get $zp)))
                  (i64.lt_s (local.get $v) (local.get $lo))))
              (i64.gt_s (local.get $v) (local.get $hi))))
          (local.set $ix0 (i32.add (local.get $ix0) (local.get $sw)))
          (br_if $xs (i32.lt_u (local.tee $po (i32.add (local.get $po) (i32.const 1))) (local.get $pend))))
        (br_if $ys (i32.lt_u (local.tee $y (i32.add (local.get $y) (i32.const 1))) (local.get $y1))))
      (br_if $ocs (i32.lt_u (local.tee $oc (i32.add (local.get $oc) (i32.const 1))) (local.get $oc1)))))
"#,
};

/// The shapes and hyper-parameters of a conv, as `usize`.
#[derive(Clone, Copy, Debug)]
struct Geom {
    c: usize,
    h: usize,
    w: usize,
    oc: usize,
    cg: usize,
    ocpg: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    pad: [usize; 4],
    dil: [usize; 2],
    group: usize,
}

impl Geom {
    fn new(op: &Conv, p: &Program) -> Self {
        let last = |id: usize, n: usize| {
            let s = &p.tensors[id].shape;
            assert!(
                s.len() >= n,
                "conv tensor {} has shape {s:?}",
                p.tensors[id].name
            );
            s[s.len() - n..]
                .iter()
                .map(|v| *v as usize)
                .collect::<Vec<_>>()
        };
        let (i, w, o) = (last(op.input, 3), last(op.weight, 4), last(op.output, 3));
        let group = op.group.max(1) as usize;
        debug_assert!(i[0] % group == 0 && o[0] % group == 0 && w[1] * group == i[0]);
        let u = |v: u32| v as usize;
        Self {
            c: i[0],
            h: i[1],
            w: i[2],
            oc: o[0],
            cg: w[1],
            ocpg: (o[0] / group).max(1),
            kh: w[2],
            kw: w[3],
            oh: o[1],
            ow: o[2],
            stride: op.stride.map(u),
            pad: op.pad.map(u),
            dil: op.dilation.map(u),
            group,
        }
    }

    /// Weight bytes of one output channel.
    fn per_oc(&self) -> usize {
        self.cg * self.kh * self.kw
    }
}

/// Splits the conv into blocks of output channels, rows and columns that
/// stay within the budget.
pub fn schedule(op: &Conv, p: &Program, budget: &Budget) -> Scheduled {
    let g = Geom::new(op, p);
    let (oc, oh, ow) = (g.oc as u64, g.oh as u64, g.ow as u64);
    let (cg, kk) = (g.cg as u64, (g.kh * g.kw) as u64);
    // Input channel innermost when there are at least as many channels as
    // kernel columns, except for unit-dilation rows of four or more taps:
    // those run faster a row at a time with constant load offsets.
    let mode = g.cg >= g.kw && !(g.dil[1] == 1 && g.kw >= 4);
    // Fuel of one output element, an upper bound for every path of the
    // kernel (measured before the faster paths): ~11 per product, ~25 per
    // run of the innermost loop, ~150 for the window and the requantization.
    let per_elem = 11 * cg * kk + 25 * (g.kh * g.kw.min(g.cg)) as u64 + 150;
    let span = |n: u64, s: usize, k: usize, d: usize, full: usize| {
        ((n - 1) * s as u64 + ((k - 1) * d) as u64 + 1).min(full as u64)
    };
    let in_ch = |ob: u64| (cg * (ob.div_ceil(g.ocpg as u64) + 1)).min(g.c as u64);
    let weights = |ob: u64| ob * cg * kk;
    // A channel's rows start a new memory chunk (512 bytes by default) unless
    // the channels are small enough to share chunks.
    let input = |ob: u64, rb: u64, xb: u64| {
        let window =
            span(rb, g.stride[0], g.kh, g.dil[0], g.h) * span(xb, g.stride[1], g.kw, g.dil[1], g.w);
        in_ch(ob) * (window + CHUNK).min((g.h * g.w) as u64)
    };
    let (mut ob, mut rb, mut xb) = (oc.max(1), oh.max(1), ow.max(1));
    loop {
        let over_fuel = ob * rb * xb * per_elem > budget.unit_fuel;
        let bytes = weights(ob) + input(ob, rb, xb) + ob * rb * xb + 12 * ob;
        if !over_fuel && bytes <= budget.unit_bytes {
            break;
        }
        // Splitting columns saves fuel but hardly any memory chunks.
        if ob > 1 && (weights(ob) >= input(ob, rb, xb) || rb == 1) {
            ob = ob.div_ceil(2);
        } else if rb > 1 {
            rb = rb.div_ceil(2);
        } else if over_fuel && xb > 1 {
            xb = xb.div_ceil(2);
        } else {
            break;
        }
    }
    // Same number of blocks, evenly sized.
    let even = |n: u64, b: u64| n.div_ceil(n.div_ceil(b).max(1)).max(1);
    let (ob, rb, xb) = (even(oc, ob), even(oh, rb), even(ow, xb));
    let (nob, nyb, nxb) = (oc.div_ceil(ob), oh.div_ceil(rb), ow.div_ceil(xb));
    // Columns whose whole window lies inside the input: xi0..xi1.
    let xi0 = g.pad[1].div_ceil(g.stride[1]);
    let last = (g.w + g.pad[1]) as isize - 1 - ((g.kw - 1) * g.dil[1]) as isize;
    let xi1 = if last < 0 {
        0
    } else {
        (last as usize / g.stride[1] + 1).min(g.ow)
    };
    let t = |id: usize| p.tensors[id].offset;
    let r = &op.requant;
    let (hw, dh_w) = ((g.h * g.w) as u32, (g.dil[0] * g.w) as u32);
    let (kw, kk, dw) = (g.kw as u32, kk as u32, g.dil[1] as u32);
    // Strides (input, weight) of the outer, middle and inner loops.
    let strides = if mode {
        [dh_w, kw, dw, 1, hw, kk] // ky, kx, ic
    } else {
        [hw, kk, dh_w, kw, dw, 1] // ic, ky, kx
    };
    let mut descriptor = vec![
        t(op.input),
        t(op.weight),
        t(op.bias),
        t(op.output),
        t(r.multiplier),
        t(r.shift),
        g.h as u32,
        g.w as u32,
        g.kh as u32,
        kw,
        g.cg as u32,
        g.per_oc() as u32,
        g.ocpg as u32,
        g.oc as u32,
        g.oh as u32,
        g.ow as u32,
        g.stride[0] as u32,
        g.stride[1] as u32,
        g.pad[0] as u32,
        g.pad[1] as u32,
        g.dil[0] as u32,
        dw,
        ob as u32,
        rb as u32,
        xb as u32,
        nyb as u32,
        nxb as u32,
    ];
    descriptor.extend(strides);
    descriptor.extend([
        mode as u32,
        r.zero_point as u32,
        r.lo as u32,
        r.hi as u32,
        g.c as u32,
        g.group as u32,
        g.pad[2] as u32,
        g.pad[3] as u32,
        (g.cg * g.h * g.w) as u32,
        xi0 as u32,
        (xi1.max(xi0) - xi0) as u32,
    ]);
    Scheduled {
        kernel: KERNEL.name,
        units: (nob * nyb * nxb) as u32,
        descriptor,
    }
}

/// The valid taps `k0..k1` of a window starting at input position `start`
/// (possibly negative) with `k` taps `d` apart over an axis of `n` positions.
fn taps(start: isize, k: usize, d: usize, n: usize) -> (usize, usize) {
    let d = d as isize;
    let k0 = if start < 0 { (-start + d - 1) / d } else { 0 };
    let room = n as isize - start;
    let k1 = if room > 0 {
        ((room + d - 1) / d).min(k as isize)
    } else {
        0
    };
    (k0 as usize, k1.max(k0) as usize)
}

/// Output channels `oc0..` into `out` (whole `OH x OW` planes), reading
/// the memory image `mem`.
fn planes(op: &Conv, p: &Program, g: &Geom, mem: &[u8], oc0: usize, out: &mut [u8]) {
    let t = |id: usize| p.tensors[id].offset as usize;
    let (inp, wt, r) = (t(op.input), t(op.weight), &op.requant);
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dil;
    // Per kernel column: the output columns x0..x1 whose input column
    // x * sw + off lies inside the input.
    let cols: Vec<(usize, usize, usize)> = (0..g.kw)
        .map(|kx| {
            let base = (kx * dw) as isize - g.pad[1] as isize;
            let x0 = if base < 0 { (-base) as usize } else { 0 }.div_ceil(sw);
            let room = g.w as isize - base;
            let x1 = if room > 0 {
                (room as usize).div_ceil(sw).min(g.ow)
            } else {
                0
            };
            if x0 >= x1 {
                (0, 0, 0)
            } else {
                (x0, x1, (base + (x0 * sw) as isize) as usize)
            }
        })
        .collect();
    let mut acc = vec![0i32; g.ow];
    for (i, plane) in out.chunks_mut(g.oh * g.ow).enumerate() {
        let oc = oc0 + i;
        let ch0 = oc / g.ocpg * g.cg;
        let bias = read_i32(mem, t(op.bias) + 4 * oc);
        let mul = read_i32(mem, t(r.multiplier) + 4 * oc);
        let shift = read_i32(mem, t(r.shift) + 4 * oc);
        for (y, row) in plane.chunks_mut(g.ow).enumerate() {
            acc.fill(bias);
            let iy0 = (y * sh) as isize - g.pad[0] as isize;
            let (ky0, ky1) = taps(iy0, g.kh, dh, g.h);
            for ic in 0..g.cg {
                let chan = inp + (ch0 + ic) * g.h * g.w;
                let wrow = wt + (oc * g.cg + ic) * g.kh * g.kw;
                for ky in ky0..ky1 {
                    let irow = &mem[chan + (iy0 + (ky * dh) as isize) as usize * g.w..][..g.w];
                    for (kx, &(x0, x1, off)) in cols.iter().enumerate() {
                        let wv = mem[wrow + ky * g.kw + kx] as i8 as i32;
                        let acc = &mut acc[x0..x1];
                        if sw == 1 {
                            for (a, v) in acc.iter_mut().zip(&irow[off..]) {
                                *a = a.wrapping_add(*v as i8 as i32 * wv);
                            }
                        } else {
                            for (a, v) in acc.iter_mut().zip(irow[off..].iter().step_by(sw)) {
                                *a = a.wrapping_add(*v as i8 as i32 * wv);
                            }
                        }
                    }
                }
            }
            for (o, a) in row.iter_mut().zip(&acc) {
                *o = requantize(*a, mul, shift, r.zero_point, r.lo, r.hi) as u8;
            }
        }
    }
}

/// The whole convolution on the memory image (output channels split over
/// threads when the node is large).
pub fn run_native(op: &Conv, p: &Program, mem: &mut [u8]) {
    let g = Geom::new(op, p);
    let plane = g.oh * g.ow;
    let mut out = vec![0u8; g.oc * plane];
    if out.is_empty() {
        return;
    }
    let macs = out.len() * g.per_oc();
    let threads = if macs < 1 << 20 {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(g.oc)
    };
    let src: &[u8] = mem;
    if threads <= 1 {
        planes(op, p, &g, src, 0, &mut out);
    } else {
        let per = g.oc.div_ceil(threads);
        std::thread::scope(|s| {
            for (i, chunk) in out.chunks_mut(per * plane).enumerate() {
                let g = &g;
                s.spawn(move || planes(op, p, g, src, i * per, chunk));
            }
        });
    }
    let at = p.tensors[op.output].offset as usize;
    mem[at..at + out.len()].copy_from_slice(&out);
}
