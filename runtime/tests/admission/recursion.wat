;; step -> $a -> $b -> $a: a cycle through functions 1 and 2.
(module
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32) (call $a))
  (func $a (result i32) (call $b))
  (func $b (result i32) (call $a)))
