//! The command line: parse, call the library, map the outcome to an exit code
//! (0 expectations held, 1 an expectation broken, 2 usage or environment error).

mod args;
mod clean;
mod commands;
mod wire_matrix;

pub use args::{Cli, Command};

use clap::Parser;

/// Exit code: every expectation held.
pub const EXIT_OK: i32 = 0;
/// Exit code: an expectation was broken.
pub const EXIT_BROKEN: i32 = 1;
/// Exit code: bad usage or input, or an environment that cannot run it.
pub const EXIT_USAGE: i32 = 2;

/// Runs dlab with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    match commands::dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dlab: error: {e:#}");
            EXIT_USAGE
        }
    }
}
