//! Liveness, readiness and metrics: not rate-limited, not audited.

use std::time::Duration;

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::error::{AppError, ErrorEnvelope};

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: 200 when the database answers within 2 seconds, else 503.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, description = "The database does not answer", body = ErrorEnvelope)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, AppError> {
    let ping = sqlx::query_scalar!("select 1 as \"one!\"").fetch_one(&state.db);
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(Json(Health { status: "ready" })),
        Ok(Err(err)) => Err(AppError::Unavailable(err.into())),
        Err(_) => Err(AppError::Unavailable(anyhow::anyhow!(
            "database did not answer within 2 s"
        ))),
    }
}

/// Prometheus metrics in the text exposition format.
pub async fn metrics(State(state): State<AppState>) -> String {
    crate::metrics::observe(state.audit.depth(), state.db.size(), state.db.num_idle());
    state.metrics.render()
}
