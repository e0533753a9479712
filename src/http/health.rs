//! Liveness, readiness and metrics: not rate-limited, not audited.

use std::time::{Duration, Instant};

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
    state.readiness.database(&state.db).await?;
    Ok(Json(match state.redis.as_ref().is_some_and(|redis| !redis.is_up()) {
        true => Health {
            status: "degraded",
            redis: Some("unreachable"),
        },
        false => Health {
            status: "ok",
            redis: None,
        },
    }))
}

/// How long a readiness check's answer is reused.
const READINESS_FRESH: Duration = Duration::from_secs(1);

/// The database's readiness, checked at most once per [`READINESS_FRESH`]:
/// a flood of probes shares one check (the others wait for it, or reuse its
/// answer) instead of each taking a connection from the requests.
#[derive(Debug, Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Readiness {
    /// Whether the database answered its last check (made now if the last
    /// one is older than [`READINESS_FRESH`]) within 2 seconds.
    async fn database(&self, db: &crate::db::Db) -> Result<(), AppError> {
        let mut last = self.last.lock().await;
        let answer = match &*last {
            Some((at, answer)) if at.elapsed() < READINESS_FRESH => answer.clone(),
            _ => {
                crate::metrics::readiness_checked();
                let ping = sqlx::query_scalar!("select 1 as \"one!\"").fetch_one(db);
                let answer = match tokio::time::timeout(Duration::from_secs(2), ping).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("database did not answer within 2 s".to_owned()),
                };
                *last = Some((Instant::now(), answer.clone()));
                answer
            }
        };
        answer.map_err(|cause| AppError::unavailable(anyhow::anyhow!(cause)))
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
