;; A good module: counts memory[0] up to 10, one increment per step.
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (i32.lt_u (i32.load (i32.const 0)) (i32.const 10))))
