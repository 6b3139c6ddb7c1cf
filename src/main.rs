//! The geodns binary: parse the command line, set up logging, run the command, map errors to
//! exit codes.

use std::process::ExitCode;

use clap::Parser;
use geodns::app::{self, AppError};
use geodns::cli::{Cli, Command, EXIT_CONFIG, EXIT_FAILURE};
use geodns::telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log.as_deref());
    match cli.command {
        Command::Serve { config } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(error) => {
                    eprintln!("geodns: cannot start the runtime: {error}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            match runtime.block_on(app::serve(&config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("geodns: {error}");
                    ExitCode::from(match error {
                        AppError::Load(_) => EXIT_CONFIG,
                        _ => EXIT_FAILURE,
                    })
                }
            }
        }
    }
}
