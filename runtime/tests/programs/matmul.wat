;; C = A x B for 24x24 i32 matrices; step 1 fills A and B, each later step
;; computes one row of C. A at 0x1000, B at 0x2000, C at 0x3000 (bytes);
;; mem[0] = rows done, mem[4] = initialised flag.
(module
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
    (i32.lt_u (i32.add (local.get $r) (i32.const 1)) (global.get $n))))
