;; A shared memory (threads proposal).
(module
  (memory (export "memory") 1 1 shared)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32) (i32.const 0)))
