;; Chunks of 2^20 bytes are larger than a page.
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (global (export "opml_chunk_log2") i32 (i32.const 20))
  (func (export "step") (result i32) (i32.const 0)))
