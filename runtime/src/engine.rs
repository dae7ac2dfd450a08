//! The wasmi engine configuration and how a finished `step()` call becomes a
//! committed status. Shared by the prover and the verifier, so both classify
//! every outcome the same way.

use crate::instrument::{FUEL_GLOBAL, OOF_GLOBAL};
use crate::state::{Fault, Status};
use crate::vmem::HostStop;
use wasmi::{CompilationMode, Config, Engine, Instance, Store, TrapCode, Val};

/// wasmi value-stack limit (in cells). Admission bounds the frame weight of
/// any call chain to half of it, so no variant can overflow the stack.
const MAX_STACK_HEIGHT: usize = 2 * crate::limits::MAX_STACK_WEIGHT as usize;

/// The engine every opml module runs on: eager compilation, no floats, no
/// SIMD, no bulk memory, no reference types, no tail calls. Fuel is opml's
/// own (see [`crate::instrument`]), so wasmi's fuel metering stays off.
pub fn engine() -> Engine {
    let mut c = Config::default();
    c.floats(false)
        .compilation_mode(CompilationMode::Eager)
        .consume_fuel(false)
        .wasm_bulk_memory(false)
        .wasm_reference_types(false)
        .wasm_tail_call(false)
        .wasm_extended_const(false)
        .wasm_saturating_float_to_int(false)
        .wasm_multi_memory(true)
        .set_max_recursion_depth(4 * crate::limits::MAX_CALL_DEPTH as usize)
        .set_max_stack_height(MAX_STACK_HEIGHT);
    Engine::new(&c)
}

/// The fuel and out-of-fuel globals of an instrumented instance.
pub struct Meter {
    fuel: wasmi::Global,
    oof: wasmi::Global,
}

/// An instance lacked an export the instrumenter always adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingExport(pub &'static str);

impl Meter {
    pub fn new<T>(store: &Store<T>, instance: &Instance) -> Result<Self, MissingExport> {
        Ok(Self {
            fuel: instance
                .get_global(store, FUEL_GLOBAL)
                .ok_or(MissingExport(FUEL_GLOBAL))?,
            oof: instance
                .get_global(store, OOF_GLOBAL)
                .ok_or(MissingExport(OOF_GLOBAL))?,
        })
    }

    /// Arms the meter for one step.
    pub fn arm<T>(&self, store: &mut Store<T>, step_fuel: u64) {
        // Both globals are mutable and of the right type, by construction.
        let _ = self.fuel.set(&mut *store, Val::I64(step_fuel as i64));
        let _ = self.oof.set(&mut *store, Val::I32(0));
    }

    /// Fuel left in the step.
    pub fn left<T>(&self, store: &Store<T>) -> u64 {
        self.fuel.get(store).i64().unwrap_or(0) as u64
    }

    /// Did the step stop for lack of fuel?
    pub fn out_of_fuel<T>(&self, store: &Store<T>) -> bool {
        self.oof.get(store).i32() == Some(1)
    }
}

/// How a `step()` call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepEnd {
    /// The call finished with a status (running, halted or a trap fault).
    Status(Status),
    /// A host memory function stopped the step.
    Host(HostStop),
}

/// A wasmi error that is not a deterministic trap: a bug or a host resource
/// failure. Never committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineError(pub alloc::string::String);

/// Classifies the result of calling `step()`.
pub fn classify(
    result: Result<i32, wasmi::Error>,
    out_of_fuel: bool,
) -> Result<StepEnd, EngineError> {
    let e = match result {
        Ok(1) => return Ok(StepEnd::Status(Status::Running)),
        Ok(0) => return Ok(StepEnd::Status(Status::Halted)),
        Ok(_) => return Ok(StepEnd::Status(Status::Faulted(Fault::BadStepResult))),
        Err(e) => e,
    };
    if let Some(stop) = e.downcast_ref::<HostStop>() {
        return Ok(StepEnd::Host(*stop));
    }
    if out_of_fuel {
        return Ok(StepEnd::Status(Status::Faulted(Fault::OutOfFuel)));
    }
    let fault = match e.as_trap_code() {
        Some(TrapCode::UnreachableCodeReached) => Fault::Unreachable,
        Some(TrapCode::MemoryOutOfBounds) => Fault::MemoryOutOfBounds,
        Some(TrapCode::IntegerOverflow) => Fault::IntegerOverflow,
        Some(TrapCode::IntegerDivisionByZero) => Fault::IntegerDivisionByZero,
        Some(TrapCode::StackOverflow) => Fault::StackOverflow,
        Some(TrapCode::OutOfSystemMemory) | None => {
            return Err(EngineError(alloc::format!("{e}")));
        }
        Some(_) => Fault::OtherTrap,
    };
    Ok(StepEnd::Status(Status::Faulted(fault)))
}

/// How one step of the virtual variant ended.
pub struct VirtualStep<B> {
    pub end: StepEnd,
    /// Fuel the step used (meaningful unless a host stop ended it).
    pub fuel_used: u64,
    /// The host memory after the step.
    pub memory: crate::vmem::HostMemory<B>,
}

/// Runs one `step()` of a compiled virtual variant over `memory`: the
/// sequence the verifier and the recording prover share, so they cannot
/// drift apart.
pub fn run_virtual_step<B: crate::vmem::Backing + 'static>(
    engine: &Engine,
    module: &wasmi::Module,
    memory: crate::vmem::HostMemory<B>,
    step_fuel: u64,
) -> Result<VirtualStep<B>, EngineError> {
    let err = |e: &dyn core::fmt::Display| EngineError(alloc::format!("{e}"));
    let mut store = Store::new(engine, memory);
    let instance = crate::vmem::linker::<B>(engine)
        .map_err(|e| err(&e))?
        .instantiate_and_start(&mut store, module)
        .map_err(|e| err(&e))?;
    let meter = Meter::new(&store, &instance).map_err(|e| EngineError(e.0.into()))?;
    let step = instance
        .get_typed_func::<(), i32>(&store, "step")
        .map_err(|e| err(&e))?;
    meter.arm(&mut store, step_fuel);
    let result = step.call(&mut store, ());
    let end = classify(result, meter.out_of_fuel(&store))?;
    let fuel_used = step_fuel.saturating_sub(meter.left(&store));
    Ok(VirtualStep {
        end,
        fuel_used,
        memory: store.into_data(),
    })
}
