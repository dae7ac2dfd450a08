//! Shared state of the service: configuration, storage, the task queue,
//! progress of running tasks and loaded artifacts.

use super::error::ApiError;
use super::metrics::Metrics;
use crate::store::{Files, Store};
use opml_lowering::Artifact;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Limits and options of a server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest request body (bytes).
    pub body_limit: usize,
    /// Tasks executed at once.
    pub workers: usize,
    /// Tasks waiting beyond those running; a full queue answers 503.
    pub queue_depth: usize,
    /// Requests handled at once; more are answered 503.
    pub max_in_flight: usize,
    /// Time a request may take (not counting a streamed body).
    pub timeout: Duration,
    /// Bearer token required on write endpoints.
    pub token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            body_limit: 64 << 20,
            workers: 2,
            queue_depth: 64,
            max_in_flight: 256,
            timeout: Duration::from_secs(60),
            token: None,
        }
    }
}

/// State shared by all handlers.
pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub files: Files,
    pub queue: mpsc::Sender<String>,
    /// Steps done by running wasm tasks.
    pub progress: Mutex<HashMap<String, u64>>,
    artifacts: Mutex<HashMap<String, Arc<Artifact>>>,
    pub metrics: Metrics,
    /// Held while a lowered model is saved and recorded, so two uploads of
    /// the same model never write its directory at once.
    pub save_lock: Mutex<()>,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// The state and the receiving end of its task queue (hand it to
    /// [`super::worker::start`]).
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        files: Files,
    ) -> (Shared, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let state = Arc::new(Self {
            config,
            store,
            files,
            queue: tx,
            progress: Mutex::new(HashMap::new()),
            artifacts: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            save_lock: Mutex::new(()),
        });
        (state, rx)
    }

    /// The artifact of a stored model, loaded once (blocking: call from a
    /// blocking thread).
    pub fn artifact(&self, id: &str) -> Result<Arc<Artifact>, ApiError> {
        if let Some(a) = self.lock_artifacts().get(id) {
            return Ok(a.clone());
        }
        let a = Arc::new(Artifact::load(&self.files.model_dir(id)).map_err(ApiError::internal)?);
        self.lock_artifacts().insert(id.to_string(), a.clone());
        Ok(a)
    }

    fn lock_artifacts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Artifact>>> {
        self.artifacts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_progress(&self, task: &str, steps: Option<u64>) {
        let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        match steps {
            Some(s) => p.insert(task.to_string(), s),
            None => p.remove(task),
        };
    }

    pub fn progress_of(&self, task: &str) -> Option<u64> {
        let p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        p.get(task).copied()
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
