//! Prometheus metrics: request counts and latency by route and status, cache
//! hits and misses, rate-limit refusals, audit queue depth and flush latency,
//! database pool use. Rendered at `GET /metrics`.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide recorder once and returns its handle; later
/// calls (tests build many apps in one process) get the same handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed: keep a detached one so
                // rendering still works.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// The `method` label of a request: one of the methods the API knows, or
/// `other`, so made-up method names never create new series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One finished HTTP request.
pub fn request(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    let labels = [
        ("route", route.to_owned()),
        ("method", method.to_owned()),
        ("status", status.to_string()),
    ];
    counter!("http_requests_total", &labels).increment(1);
    histogram!("http_request_duration_seconds", &labels[..2]).record(elapsed.as_secs_f64());
}

/// A request that named no manager refused, unaudited, past its client
/// address's limit.
pub fn anonymous_refused() {
    counter!("anonymous_requests_refused_total").increment(1);
}

/// A readiness check of the database made (not one answered from the last).
pub fn readiness_checked() {
    counter!("readiness_checks_total").increment(1);
}

/// A product-list cache lookup.
pub fn cache_lookup(hit: bool) {
    counter!("product_cache_lookups_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// A request refused by the rate limiter.
pub fn rate_limited() {
    counter!("rate_limit_rejections_total").increment(1);
}

/// A batch of audit records written.
pub fn audit_flushed(records: usize, elapsed: Duration) {
    counter!("audit_records_written_total").increment(records as u64);
    histogram!("audit_flush_duration_seconds").record(elapsed.as_secs_f64());
}

/// An audit record set aside in the spill folder's quarantine file:
/// `corrupt` (a spilled line that is not a record) or `refused` (a record
/// the database refused).
pub fn audit_quarantined(reason: &'static str) {
    counter!("audit_records_quarantined_total", "reason" => reason).increment(1);
}

/// An audit record that could not be spilled (the spill folder is at its
/// cap, or the disk failed): it is in the process log only.
pub fn audit_not_spilled() {
    counter!("audit_records_not_spilled_total").increment(1);
}

/// How old an event was when a reader at the end of the feed was given it.
pub fn event_feed_lag(age: Duration) {
    histogram!("event_feed_lag_seconds").record(age.as_secs_f64());
}

/// How old an event was when a webhook endpoint accepted it (retries
/// included).
pub fn webhook_delivery_lag(age: Duration) {
    histogram!("webhook_delivery_lag_seconds").record(age.as_secs_f64());
}

/// Gauges read at scrape time.
pub fn observe(audit_queue_depth: usize, pool_size: usize, pool_idle: usize) {
    gauge!("audit_queue_depth").set(audit_queue_depth as f64);
    gauge!("db_pool_connections").set(pool_size as f64);
    gauge!("db_pool_connections_in_use").set(pool_size.saturating_sub(pool_idle) as f64);
}
