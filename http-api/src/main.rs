//! The `opml` command line.

use clap::Parser;
use opml_http::cli::args::{Cli, Command};
use opml_http::cli::error::CliError;
use opml_http::cli::{dispute, lower, prove, run};
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

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Lower(a) => lower::lower(a).map(|r| emit(&r, a.json, lower::print)),
        Command::Run(a) => run::run(a).map(|r| emit(&r, a.json, run::print)),
        Command::Prove(a) => prove::prove(a).and_then(|r| checked(r, a.json)),
        Command::Verify(a) => prove::verify(a).and_then(|r| checked(r, a.json)),
        Command::Dispute(a) => dispute::dispute(a).map(|r| emit(&r, a.json, dispute::print)),
    };
    if let Err(e) = result {
        eprintln!("opml: {e}");
        std::process::exit(e.exit_code());
    }
}
