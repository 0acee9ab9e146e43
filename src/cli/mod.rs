//! The `scratchfs` command: parse, set up logging, then either mount or
//! print a mounted filesystem's stats. Every failure is one line on stderr
//! saying what went wrong and what to do, and a non-zero exit.

mod alloc;
mod args;
mod daemon;
mod log;
mod remount;
mod stats;
pub mod units;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let inherited = daemon::open_descriptors();
    alloc::configure();
    let cli = match Cli::try_parse_from(args::helper_argv(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // Status 1, as for a bad `-o` option: mount(8)'s "incorrect
            // invocation" (its 2 means a system error).
            eprintln!("scratchfs: {} (see scratchfs --help)", one_line(&e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    log::init();
    let result = match &cli.command {
        Some(Command::Stats(a)) => stats::run(a),
        None => match cli.mount.settings() {
            Ok(s) if s.remount => remount::run(&s),
            Ok(s) => daemon::Plan::new(s).and_then(|plan| daemon::run(plan, inherited)),
            Err(e) => Err(e),
        },
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
