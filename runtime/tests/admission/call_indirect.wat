;; call_indirect (no table declared, so that the instruction is the first problem).
(module
  (type $t (func (result i32)))
  (memory (export "memory") 1 1)
  (global (export "opml_step_fuel") i64 (i64.const 100000))
  (func (export "step") (result i32)
    (call_indirect (type $t) (i32.const 0))))
