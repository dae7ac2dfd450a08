;; No opml_step_fuel.
(module
  (memory (export "memory") 1 1)
  (global (export "opml_chunk_log2") i32 (i32.const 12))
  (func (export "step") (result i32) (i32.const 0)))
