;; step takes a parameter and returns i64.
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (param i32) (result i64) (i64.const 0)))
