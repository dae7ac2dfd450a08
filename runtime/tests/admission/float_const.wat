;; A float constant, dropped at once: still forbidden.
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32)
    (drop (f64.const 1.5))
    (i32.const 0)))
