//! Prints tract's decluttered graph of an ONNX model whose inputs are int64
//! `[1, SEQ]` or f32 of a concrete declared shape (a debugging aid for new import rules), and with `--time
//! TOKENS.npz` times tract's optimized f32 plan on the first row of the
//! npz arrays (named as the inputs), the reference of the speed ratios.
//! `--f32 1,1,8,8` makes every input f32 of that shape instead (image
//! models such as the digits CNN and its quantized variants).
use std::time::Instant;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

const SEQ: usize = 32;

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: dump_graph MODEL.onnx [--time TOKENS.npz | --f32 D0,D1,..]");
    let mut model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(path)?;
    let f32_shape: Option<Vec<usize>> =
        (args.get(2).map(String::as_str) == Some("--f32")).then(|| {
            args[3]
                .split(',')
                .map(|d| d.parse().expect("a dimension"))
                .collect()
        });
    for i in 0..model.inputs.len() {
        // `--f32 SHAPE` makes every input f32 of that shape; otherwise f32
        // inputs with a concrete shape (e.g. an LSTM's `[seq, 1, input]`)
        // keep it, and the others are token ids `[1, SEQ]`.
        let fact = model.input_fact(i)?.clone();
        let keep = fact.datum_type.concretize() == Some(f32::datum_type())
            && fact.shape.concretize().is_some();
        match &f32_shape {
            Some(s) => {
                model.set_input_fact(i, InferenceFact::dt_shape(f32::datum_type(), s.clone()))?
            }
            None if !keep => model
                .set_input_fact(i, InferenceFact::dt_shape(i64::datum_type(), [1usize, SEQ]))?,
            None => {}
        }
    }
    let typed = model.into_typed()?.into_decluttered()?;
    if args.get(2).map(String::as_str) == Some("--time") {
        let mut npz = npyz::npz::NpzArchive::open(&args[3])?;
        let mut inputs = TVec::new();
        for o in typed.input_outlets()? {
            let name = &typed.node(o.node).name;
            let arr = npz.by_name(name)?.expect("array named as the input");
            let v: Vec<i64> = arr.into_vec::<i64>()?[..SEQ].to_vec();
            inputs.push(tract_ndarray::Array2::from_shape_vec((1, SEQ), v)?.into_tvalue());
        }
        let plan = typed.into_optimized()?.into_runnable()?;
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = Instant::now();
            plan.run(inputs.clone())?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!("tract f32 optimized: median {:.4} s over 7 runs", times[3]);
        return Ok(());
    }
    for id in typed.eval_order()? {
        let n = typed.node(id);
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
