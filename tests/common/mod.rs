pub mod backend;
pub mod dns;
pub mod fake_kube;
pub mod mmdb;
pub mod server;
pub mod wait;
pub mod wire;
