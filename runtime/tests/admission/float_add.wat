;; f32.add in function 1 (the helper), after an integer-only step. The
;; operands are left to `unreachable` so that f32.add is the first float op.
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32) (i32.const 0))
  (func $helper (result i32)
    unreachable
    f32.add
    drop
    i32.const 0))
