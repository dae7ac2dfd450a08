//! The `opml` command line.

use clap::Parser;
use opml_http::cli::args::{Cli, Command};
use opml_http::cli::error::CliError;
use opml_http::cli::{audit, dispute, download, lower, prove, run, serve, trace};
use serde::Serialize;

/// Prints a report as JSON or for people.
fn emit<T: Serialize>(report: &T, json: bool, human: fn(&T)) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    } else {
        human(report);
    }
}

fn checked(r: prove::ProofReport, json: bool) -> Result<(), CliError> {
    emit(&r, json, prove::print);
    if r.verified {
        Ok(())
    } else {
        Err(CliError::Failed(
            "the proof's post-state root differs from the expected one".into(),
        ))
    }
}

fn audited(r: audit::AuditReport, json: bool) -> Result<(), CliError> {
    emit(&r, json, audit::print);
    match r.first_bad_step {
        None => Ok(()),
        Some(s) => Err(CliError::Failed(format!(
            "the trace is wrong from step {s}"
        ))),
    }
}

/// Lets a closed stdout (`opml trace run | head`) end the process quietly,
/// as it does for other Unix tools, instead of a panic in `println!`. Not
/// for `serve`: its sockets must see EPIPE as an error, never a signal.
#[cfg(unix)]
fn default_sigpipe() {
    // SAFETY: called once at start-up, before any thread is spawned;
    // restoring a signal's default disposition has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn default_sigpipe() {}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        default_sigpipe();
    }
    let result = match &cli.command {
        Command::Lower(a) => lower::lower(a).map(|r| emit(&r, a.json, lower::print)),
        Command::Run(a) => run::run(a).map(|r| emit(&r, a.json, run::print)),
        Command::Prove(a) => prove::prove(a).and_then(|r| checked(r, a.json)),
        Command::Verify(a) => prove::verify(a).and_then(|r| checked(r, a.json)),
        Command::Dispute(a) => dispute::dispute(a).map(|r| emit(&r, a.json, dispute::print)),
        Command::Serve(a) => serve::serve(a),
        Command::Trace(a) => trace::trace(a).map(|r| emit(&r, a.json, trace::print)),
        Command::Audit(a) => audit::audit(a).and_then(|r| audited(r, a.json)),
        Command::Download(a) => download::download(a).map(|r| emit(&r, a.json, download::print)),
    };
    if let Err(e) = result {
        eprintln!("opml: {e}");
        std::process::exit(e.exit_code());
    }
}
