//! The geodns binary: parse the command line, set up logging, run the command, map errors to
//! exit codes.

use std::process::ExitCode;

use clap::Parser;
use geodns::app::{self, AppError};
use geodns::check::{self, CheckError};
use geodns::cli::{Cli, Command, EXIT_CONFIG, EXIT_FAILURE, EXIT_USAGE, LogFormat};
use geodns::dnssec;
use geodns::telemetry;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormat::Text => telemetry::Format::Text,
        LogFormat::Json => telemetry::Format::Json,
    };
    telemetry::init(cli.log.as_deref(), format);
    telemetry::log_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("geodns: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match cli.command {
        Command::Check(a) => {
            let args = check::Args {
                config: a.config,
                server: a.server,
                tests: a.tests,
                name: a.name,
                rtype: a.rtype,
                client: a.client,
                down: a.down,
                json: a.json,
                timeout: a.timeout,
                dnssec: a
                    .dnssec
                    .then_some(check::DnssecOptions { trust_anchor: a.trust_anchor, warn_expiry: a.warn_expiry }),
            };
            match runtime.block_on(check::run(&args)) {
                Ok(report) => {
                    print!("{}", report.output);
                    if report.ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILURE) }
                }
                Err(error) => {
                    eprintln!("geodns check: {error}");
                    ExitCode::from(match error {
                        CheckError::Load(_) | CheckError::Tests(_) | CheckError::TrustAnchor(_) => EXIT_CONFIG,
                        CheckError::Usage(_) => EXIT_USAGE,
                        CheckError::Live(_) => EXIT_FAILURE,
                    })
                }
            }
        }
        Command::Dnssec(command) => match dnssec::tool::run(command) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("geodns: {error}");
                ExitCode::from(if error.is_config() { EXIT_CONFIG } else { EXIT_FAILURE })
            }
        },
        Command::Serve { config } => match runtime.block_on(app::serve(&config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("geodns: {error}");
                ExitCode::from(match error {
                    AppError::Load(_) => EXIT_CONFIG,
                    _ => EXIT_FAILURE,
                })
            }
        },
    }
}
