//! `opml serve`: the HTTP service.

use super::args::ServeArgs;
use super::error::CliError;
use crate::server::app::app;
use crate::server::state::{AppState, Config};
use crate::server::worker;
use crate::store::{Files, RedbStore};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The default data directory: the platform's user data dir.
pub fn default_data_dir() -> Result<PathBuf, CliError> {
    directories::ProjectDirs::from("", "", "opml")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| CliError::BadInput("no home directory: pass --data DIR".into()))
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

pub fn serve(args: &ServeArgs) -> Result<(), CliError> {
    init_logs(args.log_json);
    let data = match &args.data {
        Some(d) => d.clone(),
        None => default_data_dir()?,
    };
    let failed = |e: &dyn std::fmt::Display| CliError::Failed(e.to_string());
    // The database first: its lock keeps a second server off this data
    // directory before anything in it is cleaned up.
    std::fs::create_dir_all(&data).map_err(|e| failed(&format!("{}: {e}", data.display())))?;
    let store = RedbStore::open(&Files::db_path(&data)).map_err(|e| failed(&e))?;
    let files = Files::open(&data).map_err(|e| failed(&format!("{}: {e}", data.display())))?;
    let config = Config {
        body_limit: args.body_limit,
        workers: args.workers,
        queue_depth: args.queue_depth,
        max_in_flight: args.max_in_flight.max(1),
        timeout: Duration::from_secs(args.timeout.max(1)),
        token: args.token.clone().filter(|t| !t.is_empty()),
    };
    let rt = tokio::runtime::Runtime::new().map_err(|e| failed(&e))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| CliError::BadInput(format!("--listen {}: {e}", args.listen)))?;
        let addr = listener.local_addr().map_err(|e| failed(&e))?;
        let (state, rx) = AppState::new(config, Arc::new(store), files);
        let requeued = worker::start(state.clone(), rx).map_err(|e| failed(&e))?;
        tracing::info!(%addr, data = %data.display(), requeued, "serving");
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        // Small JSON answers go out at once (no Nagle delay).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app(state))
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(|e| failed(&e))
    })
}

/// Ctrl-C or SIGTERM: stop accepting, finish the requests in flight. (Tasks
/// still queued are re-queued by the next start.)
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
