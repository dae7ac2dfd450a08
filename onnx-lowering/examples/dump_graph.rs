//! Prints tract's decluttered graph of an ONNX model with `[1, 32]` int64
//! inputs (a debugging aid for new import rules).
use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    let path = std::env::args()
        .nth(1)
        .expect("usage: dump_graph MODEL.onnx");
    let mut model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(path)?;
    for i in 0..model.inputs.len() {
        model.set_input_fact(i, InferenceFact::dt_shape(i64::datum_type(), [1usize, 32]))?;
    }
    let model = model.into_typed()?.into_decluttered()?;
    for id in model.eval_order()? {
        let n = model.node(id);
        let shapes: Vec<String> = n.outputs.iter().map(|o| format!("{:?}", o.fact)).collect();
        println!(
            "{} {} [{}] in={:?} -> {}",
            id,
            n.name,
            n.op.name(),
            n.inputs,
            shapes.join(", ")
        );
        println!("      {:?}", n.op);
    }
    Ok(())
}
