;; Counts steps in mem[0]; when the count reaches mem[4] it does the fault
;; selected by mem[8]: 0 unreachable, 1 division by zero, 2 out-of-bounds
;; load, 3 endless loop (out of fuel), 4 touches every chunk (touch limit),
;; 5 returns 7 (bad step result), 6 integer overflow, 7 halts normally.
(module
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
    (i32.const 0)))
