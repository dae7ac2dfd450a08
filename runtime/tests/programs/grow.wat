;; Each step grows memory by one page and writes the step number at the start
;; and the end of the new page; halts when memory.grow fails at the maximum.
(module
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
    ;; unaligned i64 store straddling two chunks of the new page
    (i64.store offset=250 (i32.mul (local.get $old) (i32.const 65536))
      (i64.extend_i32_u (local.get $n)))
    (i32.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 4))
      (i32.mul (local.get $n) (i32.const 3)))
    (i32.const 1)))
