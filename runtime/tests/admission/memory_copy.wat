;; Bulk memory: memory.copy.
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32)
    (memory.copy (i32.const 0) (i32.const 8) (i32.const 4))
    (i32.const 0)))
