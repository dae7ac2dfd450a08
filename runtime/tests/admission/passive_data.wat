;; A passive data segment (segment 1).
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (data (i32.const 0) "active")
  (data "passive")
  (func (export "step") (result i32) (i32.const 0)))
