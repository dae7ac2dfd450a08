//! Task execution: workers take task ids from the queue and run them on a
//! blocking thread.
//!
//! Crash recovery: a task is `queued` or `running` in the store until its
//! result is committed. On start, every such task is re-queued (its inputs
//! are stored), and a half-recorded run directory is discarded by
//! [`crate::store::Files::open`]. A result is committed only after its run
//! directory is complete and renamed into place.

use super::state::Shared;
use crate::store::{TaskRecord, TaskResult, TaskStatus};
use opml_lowering::quant::dequantize;
use opml_lowering::{Artifact, Run};
use opml_runtime::recorder::{record, RecordOptions, RecordedRun};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex};

/// Spawns the workers and re-queues the tasks a previous process left
/// unfinished. Returns how many were re-queued.
pub fn start(state: Shared, rx: mpsc::Receiver<String>) -> Result<usize, crate::store::StoreError> {
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..state.config.workers.max(1) {
        let (state, rx) = (state.clone(), rx.clone());
        tokio::spawn(async move {
            loop {
                let Some(id) = rx.lock().await.recv().await else {
                    return;
                };
                let s = state.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || execute(&s, &id)).await {
                    tracing::error!(error = %e, "task worker panicked");
                }
            }
        });
    }
    let unfinished = state.store.unfinished_tasks()?;
    let n = unfinished.len();
    let queue = state.queue.clone();
    tokio::spawn(async move {
        for t in unfinished {
            tracing::info!(task = %t.id, "re-queueing a task left unfinished");
            if queue.send(t.id).await.is_err() {
                return;
            }
        }
    });
    Ok(n)
}

/// Runs one task to its end and stores the outcome.
pub fn execute(state: &Shared, id: &str) {
    let Ok(Some(mut task)) = state.store.task(id) else {
        tracing::error!(task = id, "queued task is not in the store");
        return;
    };
    if matches!(task.status, TaskStatus::Done | TaskStatus::Failed) {
        return;
    }
    task.status = TaskStatus::Running;
    if let Err(e) = state.store.update_task(&task) {
        tracing::error!(task = id, error = %e, "cannot mark task running");
        return;
    }
    let outcome = run(state, &mut task);
    state.set_progress(id, None);
    match outcome {
        Ok(result) => {
            task.status = TaskStatus::Done;
            task.result = Some(result);
            state.metrics.tasks_done.fetch_add(1, Relaxed);
            tracing::info!(task = id, "task done");
        }
        Err(e) => {
            task.status = TaskStatus::Failed;
            task.error = Some(e.clone());
            state.metrics.tasks_failed.fetch_add(1, Relaxed);
            tracing::warn!(task = id, error = %e, "task failed");
        }
    }
    if let Err(e) = state.store.update_task(&task) {
        tracing::error!(task = id, error = %e, "cannot store task result");
    }
}

fn run(state: &Shared, task: &mut TaskRecord) -> Result<TaskResult, String> {
    let artifact = state.artifact(&task.model_id).map_err(|e| e.message)?;
    task.total_steps = artifact.nodes.last().map_or(0, |n| n.end_step);
    let run = if task.engine == "wasm" {
        let r = run_recorded(state, &artifact, task)?;
        task.has_trace = true;
        r
    } else {
        artifact
            .run_native(&task.inputs)
            .map_err(|e| e.to_string())?
    };
    Ok(result(&artifact, &run))
}

fn run_recorded(state: &Shared, artifact: &Artifact, task: &TaskRecord) -> Result<Run, String> {
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    let tmp = state.files.run_tmp_dir(&task.id);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| fail(&e))?;
    }
    let mut sb = artifact.sandbox(&task.inputs).map_err(|e| fail(&e))?;
    let ends: Vec<u64> = artifact.nodes.iter().map(|n| n.end_step).collect();
    let mut boundaries = vec![sb.state()];
    record(&mut sb, &tmp, &RecordOptions::default(), |s| {
        state.set_progress(&task.id, Some(s.step));
        state.metrics.steps_executed.fetch_add(1, Relaxed);
        if ends.contains(&s.step) {
            boundaries.push(*s);
        }
    })
    .map_err(|e| fail(&e))?;
    if boundaries.len() != artifact.nodes.len() + 1 {
        return Err("the run ended before its last node".into());
    }
    // Check the recording reads back before publishing it.
    let mut recorded = RecordedRun::open(&tmp, sb.program().clone()).map_err(|e| fail(&e))?;
    for (n, s) in artifact.nodes.iter().zip(&boundaries[1..]) {
        if recorded.root_at(n.end_step).map_err(|e| fail(&e))? != s.hash() {
            return Err(format!("trace disagrees at the end of node {}", n.name));
        }
    }
    drop(recorded);
    state.files.publish_run(&task.id).map_err(|e| fail(&e))?;
    Ok(Run {
        boundaries,
        memory: sb.memory().to_vec(),
    })
}

fn result(artifact: &Artifact, run: &Run) -> TaskResult {
    let p = &artifact.program;
    let outputs: serde_json::Map<String, serde_json::Value> = p
        .outputs
        .iter()
        .map(|id| {
            let t = &p.tensors[*id];
            (
                t.name.clone(),
                serde_json::json!({"shape": t.shape, "data": dequantize(t, artifact.output(run, *id))}),
            )
        })
        .collect();
    let last = run.last();
    TaskResult {
        outputs: outputs.into(),
        initial_root: hex::encode(run.boundaries[0].hash()),
        final_root: hex::encode(last.hash()),
        status: last.status,
        steps: last.step,
        fuel: last.fuel,
        node_roots: serde_json::json!(crate::cli::run::node_roots(artifact, run)),
    }
}
