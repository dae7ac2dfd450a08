;; A SIMD operation.
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32)
    (i32x4.extract_lane 0 (i32x4.add (v128.const i32x4 1 2 3 4) (v128.const i32x4 1 2 3 4)))))
