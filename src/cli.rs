//! Command-line interface: the argument definitions and the process exit codes.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a run-time failure (a socket that cannot be bound, ...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for command-line usage errors (clap's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a config file or GeoIP database that cannot be read or is invalid (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "geodns",
    version,
    about = "GeoDNS authoritative server and health-checking load balancer",
    long_about = "geodns answers each DNS query with the addresses of the nearest healthy site. It \
locates the client by GeoIP on the EDNS Client Subnet (or the resolver's address) and learns the \
sites from its config file.\n\nExit codes: 0 success, 1 run-time failure, 2 usage error, 78 invalid \
or unreadable config or GeoIP database."
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. "debug" or "info,geodns=debug"); overrides RUST_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS (UDP and TCP on every server.dns_listen address) until SIGINT or SIGTERM.
    Serve {
        /// The YAML config file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
}
