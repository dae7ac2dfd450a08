;; A float parameter in type 1.
(module
  (type (func (result i32)))
  (type (func (param f32)))
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (type 0) (i32.const 0)))
