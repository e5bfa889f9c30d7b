//! The `silentmon` binary: parses arguments, runs one subcommand, prints any error chain and
//! picks the exit code. Everything else lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    silentmon::cli::main()
}
