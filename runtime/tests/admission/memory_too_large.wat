;; The memory may grow beyond MAX_PAGES (16384).
(module
  (memory (export "memory") 1 20000)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32) (i32.const 0)))
