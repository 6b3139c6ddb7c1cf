pub mod mmdb;
pub mod dns;
pub mod server;
