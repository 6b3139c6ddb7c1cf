//! Building one `kube::Client` per configured cluster from its kubeconfig file and context, or
//! from the in-cluster service account when neither is given.
//!
//! Resolution (DESIGN.md section 3, `kubernetes.clusters[]`):
//! - `kubeconfig: FILE` -> that file, with `context` (or the file's current context);
//! - no `kubeconfig` but a `context` -> `$KUBECONFIG` (merged, as kubectl does), else
//!   `~/.kube/config`, with that context;
//! - neither -> in-cluster config (service account token, `KUBERNETES_SERVICE_HOST`).
//!
//! Only reads files and the environment; never sets either.

use kube::Client;
use kube::client::ClientBuilder;
use kube::config::{Config, InClusterError, KubeConfigOptions, Kubeconfig, KubeconfigError};

use super::heartbeat::{Heartbeat, HeartbeatLayer};
use crate::config::ClusterConfig;

/// Why a cluster's client could not be built. The watcher task retries with a backoff and
/// reports the message in the cluster's status.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] KubeconfigError),
    #[error("in-cluster config: {0}")]
    InCluster(#[from] InClusterError),
    #[error("kube client: {0}")]
    Client(#[from] kube::Error),
}

impl ClientError {
    /// Closed label set for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Kubeconfig(_) => "kubeconfig",
            ClientError::InCluster(_) => "in_cluster",
            ClientError::Client(_) => "client",
        }
    }
}

/// The client configuration for one cluster (no connection is made).
pub async fn client_config(cluster: &ClusterConfig) -> Result<Config, ClientError> {
    let kubeconfig = match (&cluster.kubeconfig, &cluster.context) {
        (Some(path), _) => Kubeconfig::read_from(path)?,
        (None, Some(_)) => Kubeconfig::read()?,
        (None, None) => return Ok(Config::incluster()?),
    };
    let options = KubeConfigOptions { context: cluster.context.clone(), ..Default::default() };
    Ok(Config::from_custom_kubeconfig(kubeconfig, &options).await?)
}

/// Builds the client for one cluster (no connection is made); its watch responses beat
/// `heartbeat` with every event and bookmark.
pub async fn build(cluster: &ClusterConfig, heartbeat: Heartbeat) -> Result<Client, ClientError> {
    let config = client_config(cluster).await?;
    Ok(ClientBuilder::try_from(config)?.with_layer(&HeartbeatLayer(heartbeat)).build())
}
