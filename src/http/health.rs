//! Liveness, readiness and metrics: not rate-limited, not audited.

use std::time::Duration;

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, docs};
use crate::error::AppError;

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// `ok`, or `degraded` while the service serves without Redis.
    #[schema(pattern = "^(ok|degraded)$")]
    pub status: &'static str,
    /// `unreachable` while the shared Redis cannot be reached; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^unreachable$")]
    pub redis: Option<&'static str>,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses(
    (status = 200, description = "The process runs", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        redis: None,
    })
}

/// Readiness: 200 when the database answers within 2 seconds, else 503.
/// While the shared Redis cannot be reached the service still serves (with a
/// per-instance rate limit and uncached lists) and says `degraded`.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses(
    (status = 200, description = "Ready: `ok`, or `degraded` while Redis is unreachable", body = Health,
        examples(("ok" = (value = json!({"status": "ok"}))),
                 ("degraded" = (value = json!({"status": "degraded", "redis": "unreachable"}))))),
    ReadyzErrors))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, AppError> {
    let ping = sqlx::query_scalar!("select 1 as \"one!\"").fetch_one(&state.db);
    let degraded = state.redis.as_ref().is_some_and(|redis| !redis.is_up());
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) if degraded => Ok(Json(Health {
            status: "degraded",
            redis: Some("unreachable"),
        })),
        Ok(Ok(_)) => Ok(Json(Health {
            status: "ok",
            redis: None,
        })),
        Ok(Err(err)) => Err(AppError::unavailable(err)),
        Err(_) => Err(AppError::unavailable(anyhow::anyhow!(
            "database did not answer within 2 s"
        ))),
    }
}

docs::errors!(
    /// The errors of `GET /readyz`.
    ReadyzErrors: Health [ServiceUnavailable]
);

/// Prometheus metrics in the text exposition format.
pub async fn metrics(State(state): State<AppState>) -> String {
    let (connections, idle) = state.db.connections();
    crate::metrics::observe(state.audit.depth(), connections, idle);
    state.metrics.render()
}
