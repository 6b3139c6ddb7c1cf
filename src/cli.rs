//! Command-line interface: the argument definitions and the process exit codes.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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

    /// Log line format on stderr: "text" for people, "json" (one JSON object a line: timestamp,
    /// level, target, message and the event's fields) for log pipelines.
    #[arg(long, global = true, value_enum, env = "GEODNS_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS (UDP and TCP on every server.dns_listen address) until SIGINT or SIGTERM.
    Serve {
        /// The YAML config file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a config, explain a routing decision, or run routing tests (offline or against
    /// a live server).
    #[command(long_about = CHECK_HELP)]
    Check(CheckArgs),
    /// DNSSEC keys: write a new key, print the DS records for the parent zone.
    #[command(subcommand)]
    Dnssec(DnssecCommand),
}

#[derive(Debug, Subcommand)]
pub enum DnssecCommand {
    /// Write a new signing key (PKCS#8 PEM, readable by its owner only) to FILE and print its
    /// DNSKEY and DS records; FILE must not exist.
    Keygen {
        /// Where to write the key.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// ecdsap256sha256 (13, the default) or ed25519 (15).
        #[arg(long, default_value = "ecdsap256sha256", value_name = "ALGORITHM")]
        algorithm: String,
    },
    /// Print the DS records (SHA-256) of the signed zones' keys, in zone-file syntax, for the
    /// parent zone (the registrar).
    Ds {
        /// The YAML config file naming the keys.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Only this zone (default: every signed zone).
        #[arg(value_name = "ZONE")]
        zone: Option<String>,
    },
}

const CHECK_HELP: &str = "Validate a config, explain a routing decision, or run routing tests.

  geodns check --config FILE
      Validate the config (every problem, with its path) and print a summary.
  geodns check --config FILE NAME [TYPE] --client IP|CIDR [--down SITE]... [--json]
      Explain what a client would get and why: its location, every site in order with its
      distance and health, the rule that decided, the answer, TTL and ECS scope. A CIDR is sent
      as ECS; an address is the query's source. --down forces sites down (\"what if\").
  geodns check --config FILE --tests TESTS.yaml [--json]
      Run routing test cases; prints PASS/FAIL per case and \"N passed, M failed\".
  geodns check --server ADDR:PORT NAME [TYPE] --client CIDR [--config FILE]
      Ask a live server (geodns or any other) with ECS; print the answer and scope. With
      --config, addresses are mapped back to sites.
  geodns check --server ADDR:PORT --tests TESTS.yaml [--config FILE]
      Run the test cases against a live server.
  geodns check --server ADDR:PORT --config FILE --dnssec [--trust-anchor FILE] [--warn-expiry D]
      Validate the signed zones' answers (DNSKEY against the DS, every RRSIG, NSEC proofs), as
      a resolver would; with --tests or a NAME, their answers too. Warns about signatures
      expiring within D (default: half the zone's refresh) and a DS matching no published key.

Exit codes: 0 all good, 1 a test failed or the server did not answer, 2 usage error,
78 invalid or unreadable config, GeoIP database or test file.";

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The YAML config file.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A live DNS server to query instead of (or as well as) the config.
    #[arg(long, value_name = "ADDR:PORT")]
    pub server: Option<std::net::SocketAddr>,
    /// A routing test file to run.
    #[arg(long, value_name = "FILE")]
    pub tests: Option<PathBuf>,
    /// The client: an address (the query's source) or a CIDR subnet (sent as ECS).
    #[arg(long, value_name = "IP|CIDR")]
    pub client: Option<String>,
    /// Force a site down for this check (repeatable).
    #[arg(long, value_name = "SITE")]
    pub down: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for a live server's answer.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// With --server and --config: validate the signed zones' answers (docs/dnssec.md).
    #[arg(long, requires_all = ["server", "config"])]
    pub dnssec: bool,
    /// With --dnssec: trust these DS (or DNSKEY) records, in zone-file syntax, such as the DS
    /// at the parent or what `geodns dnssec ds` printed (default: the DS of the config's keys).
    #[arg(long, value_name = "FILE", requires = "dnssec")]
    pub trust_anchor: Option<PathBuf>,
    /// With --dnssec: warn about signatures that expire within this (default: half the zone's
    /// dnssec.refresh).
    #[arg(long, value_name = "DURATION", requires = "dnssec", value_parser = parse_duration)]
    pub warn_expiry: Option<std::time::Duration>,
    /// The name to explain or query.
    pub name: Option<String>,
    /// The record type (default A).
    #[arg(value_name = "TYPE")]
    pub rtype: Option<String>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
}
