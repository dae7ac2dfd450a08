//! `opml trace`: inspect a trace file or run directory, or slice it.

use super::args::TraceArgs;
use super::error::CliError;
use opml_runtime::recorder::MANIFEST_FILE;
use opml_runtime::trace::{TraceHeader, TraceManifest, TraceReader, TraceRecord};
use serde::Serialize;
use std::io::BufReader;

/// Most records printed by one slice.
pub const MAX_SLICE: u64 = 1_000_000;

/// What `opml trace --json` prints.
#[derive(Debug, Serialize)]
pub struct TraceReport {
    pub file: String,
    pub header: TraceHeader,
    /// Complete records in the file.
    pub steps: u64,
    /// The file ends in a partial record (an interrupted download).
    pub partial_tail: bool,
    /// The run directory's manifest, if there is one (checked against the trace).
    pub manifest: Option<ManifestSummary>,
    pub records: Vec<TraceRecord>,
}

#[derive(Debug, Serialize)]
pub struct ManifestSummary {
    pub steps: u64,
    pub final_state_root: String,
    pub final_status: opml_runtime::Status,
    pub final_fuel: u64,
    pub checkpoint_interval: u64,
    pub checkpoints: usize,
}

pub fn trace(args: &TraceArgs) -> Result<TraceReport, CliError> {
    let bad =
        |e: &dyn std::fmt::Display| CliError::BadInput(format!("{}: {e}", args.path.display()));
    let (file, manifest) = if args.path.is_dir() {
        let text = std::fs::read_to_string(args.path.join(MANIFEST_FILE)).map_err(|e| bad(&e))?;
        let m = TraceManifest::from_json(&text).map_err(|e| bad(&e))?;
        (args.path.join(&m.trace_file), Some(m))
    } else {
        (args.path.clone(), None)
    };
    let f = std::fs::File::open(&file).map_err(|e| bad(&e))?;
    let mut reader = TraceReader::open(BufReader::new(f)).map_err(|e| bad(&e))?;
    if let Some(m) = &manifest {
        m.check_trace(&mut reader).map_err(|e| bad(&e))?;
    }
    let records = slice(args, &mut reader).map_err(|e| bad(&e))?;
    Ok(TraceReport {
        file: file.display().to_string(),
        header: *reader.header(),
        steps: reader.len(),
        partial_tail: reader.has_partial_tail(),
        manifest: manifest.map(|m| ManifestSummary {
            steps: m.steps,
            final_state_root: hex::encode(m.final_state_root),
            final_status: m.final_state.status,
            final_fuel: m.final_state.fuel,
            checkpoint_interval: m.checkpoint_interval,
            checkpoints: m.checkpoints.len(),
        }),
        records,
    })
}

fn slice<R: std::io::Read + std::io::Seek>(
    args: &TraceArgs,
    reader: &mut TraceReader<R>,
) -> Result<Vec<TraceRecord>, String> {
    if args.from.is_none() && args.to.is_none() {
        return Ok(Vec::new());
    }
    let len = reader.len();
    let from = args.from.unwrap_or(1);
    let to = args.to.unwrap_or(len);
    if from == 0 || from > to || to > len || to - from >= MAX_SLICE {
        return Err(format!(
            "--from/--to: need 1 <= from <= to <= {len}, at most {MAX_SLICE} steps"
        ));
    }
    reader
        .records(from, to)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// Human-readable report.
pub fn print(r: &TraceReport) {
    println!("trace       {}", r.file);
    println!("code hash   {}", hex::encode(r.header.code_hash));
    println!("initial     {}", hex::encode(r.header.initial_root));
    println!(
        "steps       {}{}",
        r.steps,
        if r.partial_tail {
            " (+ a partial record)"
        } else {
            ""
        }
    );
    if let Some(m) = &r.manifest {
        println!(
            "final       {} {:?} fuel {}",
            m.final_state_root, m.final_status, m.final_fuel
        );
        println!(
            "checkpoints {} (every {} steps)",
            m.checkpoints, m.checkpoint_interval
        );
    }
    for rec in &r.records {
        println!(
            "step {:>10} fuel {:>14} root {}",
            rec.step,
            rec.fuel,
            hex::encode(rec.state_root)
        );
    }
}
