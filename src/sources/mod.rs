//! Sources of run-time inputs for the routing builder: each watches the world (health probes,
//! the Kubernetes API) and publishes immutable snapshots on watch channels. Sources are
//! siblings: they never import each other, nor routing, dns, admin or app.

pub mod health;
pub mod kube;
