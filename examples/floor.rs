//! The floor of the HTTP stack: the service's own server (`server::serve`,
//! with its connection limits and defaults) and allocator, on the same tokio
//! runtime, answering every request with one fixed, small JSON body and
//! nothing else. `bench/run` loads it beside the service to show what the
//! stack alone costs.
//!
//! `PORT` (default 8081) is the port to listen on, on 127.0.0.1.

use std::time::Duration;

use axum::{Router, http::header, response::IntoResponse};
use ecommerce_api::{config::Settings, server};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: &str = r#"{"products":[{"id":"prod_001","name":"Premium Coffee Beans","price":15.99,"quantity":100}]}"#;

async fn fixed() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], BODY)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8081u16);
    let settings = Settings::default();
    let limits = server::Limits {
        header_timeout: Duration::from_secs(settings.header_timeout_secs),
        idle_timeout: Duration::from_secs(settings.idle_timeout_secs),
        max_connections: settings.max_connections,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    server::serve(listener, Router::new().fallback(fixed), limits, std::future::pending()).await
}
