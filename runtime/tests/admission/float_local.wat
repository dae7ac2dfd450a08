;; A float local (local 1, after one i32 param).
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32) (i32.const 0))
  (func $helper (param i32) (local f64)
    (nop)))
