//! The admin HTTP server: `/metrics` (Prometheus), `/livez`, `/readyz`, `/status` (JSON) and `/`
//! (a status page for people). It serves what the app publishes on a watch channel and knows
//! nothing of how it was computed.
//!
//! Imports `model` and the `metrics` handle only; never `dns` or `sources`.

mod metrics;
mod page;
mod status;

use std::io;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use status::*;

/// What the admin server reads.
#[derive(Clone)]
pub struct AdminState {
    /// Written by the app's builder task whenever the table, health or sources change; read
    /// per request. A watch channel because only the latest status matters.
    pub status: watch::Receiver<Arc<Status>>,
    pub metrics: &'static PrometheusHandle,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: CancellationToken) -> io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let status = s.status.borrow().clone();
    if status.ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let mut body = String::from("not ready:\n");
        for reason in &status.not_ready {
            body.push_str(&format!("  {reason}\n"));
        }
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn status_json(State(s): State<AdminState>) -> Response {
    let status = s.status.borrow().clone();
    axum::Json(status.as_ref()).into_response()
}

/// The recorder's series, then those written from the status (see [`metrics`]).
async fn metrics(State(s): State<AdminState>) -> Response {
    let status = s.status.borrow().clone();
    let mut body = s.metrics.render();
    body.push_str(&metrics::render_status(&status));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn page() -> Html<&'static str> {
    Html(page::PAGE)
}
