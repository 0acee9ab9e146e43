//! The `scratchfs` command: parse, set up logging, then either mount or
//! print a mounted filesystem's stats. Every failure is one line on stderr
//! saying what went wrong and what to do, and a non-zero exit.

mod args;
mod daemon;
mod log;
mod stats;
pub mod units;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("scratchfs: {} (see scratchfs --help)", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    log::init();
    let result = match &cli.command {
        Some(Command::Stats(a)) => stats::run(a),
        None => cli.mount.settings().and_then(daemon::Plan::new).and_then(daemon::run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("scratchfs: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// A clap message folded into one line: its text up to the first blank line.
fn one_line(msg: &str) -> String {
    let text: Vec<&str> = msg.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    text.join(" ")
}
