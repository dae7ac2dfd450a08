//! The `opml` command line.

use clap::Parser;
use opml_http::cli::args::{Cli, Command};
use opml_http::cli::{lower, run};

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Lower(args) => lower::lower(args).map(|r| {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                lower::print(&r);
            }
        }),
        Command::Run(args) => run::run(args).map(|r| {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                run::print(&r);
            }
        }),
    };
    if let Err(e) = result {
        eprintln!("opml: {e}");
        std::process::exit(e.exit_code());
    }
}
