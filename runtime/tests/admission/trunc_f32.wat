;; A conversion from float, i32.trunc_f32_s (operand left to `unreachable`).
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32)
    unreachable
    i32.trunc_f32_s))
