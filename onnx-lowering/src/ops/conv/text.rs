//! The fixed text of the conv kernel between its generated runs (see
//! [`super::wat`]).

/// The function header: locals, descriptor loads, the unit's blocks, the
/// output-row set-up and the 3x3 one-channel window pointers.
pub const HEAD: &str = r#"
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
"#;

/// Set-up of the 3x3 channel loop.
pub const K3_HEAD: &str = r#"              (br $done))
              ;; 3x3: one straight-line region per input channel, constant
              ;; load offsets off the row pointers and the weights
              (local.set $pib (i32.add (local.get $prow) (local.get $ix0)))
              (local.set $pwb (local.get $wrow))
              (local.set $we (i32.add (local.get $wrow) (local.get $w9)))
              (loop $k3
                (local.set $p1 (i32.add (local.get $pib) (local.get $rs)))
                (local.set $p2 (i32.add (local.get $p1) (local.get $rs)))
"#;

/// End of the 3x3 channel loop and set-up of the 1x1 loop.
pub const K3_TAIL: &str = r#"                (local.set $pib (i32.add (local.get $pib) (local.get $hw)))
                (br_if $k3 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 9))) (local.get $we))))
                  (br $done))
              ;; 1x1: eight channels per iteration, constant weight offsets
                  (local.set $pib (i32.add (local.get $prow) (local.get $ix0)))
                  (local.set $pwb (local.get $wrow))
                  (if (local.get $n8c)
                    (then
                      (local.set $qe (i32.add (local.get $pwb) (local.get $n8c8)))
                      (loop $k1
"#;

/// End of the 1x1 eight-channel loop.
pub const K1_TAIL: &str = r#"                        (local.set $pib (i32.add (local.get $pib) (local.get $a8)))
                        (br_if $k1 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 8))) (local.get $qe))))))
"#;

/// Column clipping and set-up of the clipped 3x3 bodies.
pub const CLIP_HEAD: &str = r#"                  (br $done))
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
"#;

/// Set-up of the unit-stride path (window rows eight taps at a time).
pub const UNIT_HEAD: &str = r#"          (if (i32.mul (local.get $nky) (local.get $nkx))
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
"#;

/// End of the eight-tap loop of the unit-stride path.
pub const F8_TAIL: &str = r#"                            (local.set $pib (i32.add (local.get $pib) (i32.const 8)))
                            (br_if $f8 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (i32.const 8))) (local.get $qe))))
"#;

/// End of a window row with eight-tap runs; start of the short rows.
pub const FB8_TAIL: &str = r#"                          (local.set $pib (i32.add (local.get $pib) (local.get $aBf)))
                          (br_if $fb8 (i32.ne (local.tee $pwb (i32.add (local.get $pwb) (local.get $bBf))) (local.get $we)))))
                      (else
                        (loop $fb
"#;

/// End of the unit-stride path; set-up of the general reduction loops.
pub const GEN_HEAD: &str = r#"                          (local.set $pib (i32.add (local.get $pib) (local.get $aB)))
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
"#;

/// End of the general eight-product loop.
pub const L8_TAIL: &str = r#"                        (local.set $p (i32.add (local.get $p) (local.get $a8)))
                        (br_if $l8 (i32.ne (local.tee $q (i32.add (local.get $q) (local.get $b8))) (local.get $qe))))))
                  ;; the last nC % 8 products: jump into the unrolled run
"#;

/// End of the general loops, the requantization and the loops' ends.
pub const TAIL: &str = r#"                  (local.set $pib (i32.add (local.get $pib) (local.get $aB)))
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
"#;
