//! The webhook delivery worker, run by every instance inside `serve`: moves
//! endpoints' cursors along the feed (queueing deliveries), claims due
//! deliveries with a lease and a fencing token, sends each signed (Standard
//! Webhooks) to the one address it checked, and completes the claim. No
//! database connection is held while a receiver is being called.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::task::JoinSet;

use crate::{
    config::Settings,
    db::Db,
    domain::{
        EventId,
        address::{self, Network},
    },
    store::delivery::{self, Attempt, Claim, Next},
};

/// Most attempts one instance runs at once.
pub const MAX_IN_FLIGHT: usize = 32;
/// How often the worker looks for new events and due deliveries.
pub const POLL: Duration = Duration::from_millis(250);

/// What the worker needs of the settings.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Longest an attempt may take.
    pub timeout: Duration,
    /// Seconds before each retry.
    pub schedule: Vec<u64>,
    /// Internal ranges allowed anyway.
    pub allowed: Vec<Network>,
    /// Seconds a claim holds before another instance may take the delivery;
    /// renewed every third of it while the attempt runs.
    pub lease_secs: i32,
    /// How long an endpoint's attempts may all fail before it is disabled.
    pub disable_after: Duration,
}

impl From<&Settings> for DeliverySettings {
    fn from(settings: &Settings) -> Self {
        Self {
            timeout: Duration::from_secs(settings.webhook_timeout_secs),
            schedule: settings.webhook_retry_schedule_secs.clone(),
            allowed: settings.webhook_allowed_networks.clone(),
            lease_secs: i32::try_from(settings.webhook_lease_secs).unwrap_or(i32::MAX),
            disable_after: settings.webhook_disable_after,
        }
    }
}

/// Runs until aborted (attempts in flight are dropped with it; their leases
/// run out and another instance takes them).
pub async fn run(db: Db, settings: DeliverySettings) {
    let settings = Arc::new(settings);
    let mut in_flight = JoinSet::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        while in_flight.try_join_next().is_some() {}
        if let Err(err) = delivery::queue_new_events(&db).await {
            tracing::warn!(error = %err, "could not queue webhook deliveries");
        }
        let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
        if room == 0 {
            continue;
        }
        match delivery::claim(&db, room as i64, settings.lease_secs).await {
            Ok(claims) => {
                for claim in claims {
                    in_flight.spawn(attempt(db.clone(), settings.clone(), claim));
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not claim webhook deliveries"),
        }
    }
}

/// One attempt: send (renewing the lease meanwhile), then complete.
async fn attempt(db: Db, settings: Arc<DeliverySettings>, claim: Claim) {
    let started = Instant::now();
    let renewing = async {
        let lease = settings.lease_secs;
        let mut every = tokio::time::interval(Duration::from_secs_f64(f64::from(lease) / 3.0));
        every.tick().await;
        loop {
            every.tick().await;
            if let Err(err) = delivery::renew(&db, &claim, lease).await {
                tracing::warn!(error = %err, "could not renew a webhook delivery's lease");
            }
        }
    };
    let sent = tokio::select! {
        sent = send(&settings, &claim) => sent,
        () = renewing => unreachable!("renewing never ends"),
    };
    let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let next = next_step(&sent, claim.attempt, &settings.schedule, jitter());
    if next == Next::Delivered {
        crate::metrics::webhook_delivery_lag((Utc::now() - claim.occurred_at).to_std().unwrap_or_default());
    }
    let record = Attempt {
        status_code: sent.status.and_then(|s| i16::try_from(s).ok()),
        error: sent.error.clone(),
        duration_ms,
        next,
    };
    match delivery::complete(&db, &claim, &record, settings.disable_after).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            webhook_id = claim.webhook_id,
            event_id = claim.event_id,
            "a webhook delivery's claim no longer held when its attempt ended (its lease ran out, or the endpoint was deleted): nothing recorded"
        ),
        Err(err) => tracing::warn!(error = %err, "could not record a webhook delivery attempt"),
    }
}

/// What an attempt came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// The answer's status, if there was one.
    pub status: Option<u16>,
    /// `Retry-After` in seconds, if the answer had one.
    pub retry_after: Option<u64>,
    /// Why there was no answer.
    pub error: Option<String>,
}

impl Sent {
    fn failed(error: &str) -> Self {
        Self {
            error: Some(error.to_owned()),
            ..Self::default()
        }
    }
}

/// A factor in 0.8 … 1.2.
fn jitter() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    0.8 + 0.4 * (bits as f64 / u64::MAX as f64)
}

/// What follows attempt number `attempt` that came to `sent`.
pub fn next_step(sent: &Sent, attempt: i32, schedule: &[u64], jitter: f64) -> Next {
    match sent.status {
        Some(200..=299) => return Next::Delivered,
        Some(410) => return Next::Disable("the endpoint answered 410 Gone".into()),
        _ => {}
    }
    let Some(&scheduled) = usize::try_from(attempt - 1).ok().and_then(|i| schedule.get(i)) else {
        return Next::GiveUp;
    };
    let delay = scheduled as f64 * jitter;
    let delay = match (sent.status, sent.retry_after) {
        (Some(429 | 503), Some(asked)) => (asked as f64).clamp(delay, 2.0 * delay),
        _ => delay,
    };
    Next::Retry(Utc::now() + chrono::Duration::milliseconds((delay * 1000.0) as i64))
}

/// The `webhook-signature` header: `v1,<base64 HMAC-SHA256>` per secret
/// (the base64 of its bytes), space-separated.
pub fn signature(secrets: &[String], id: &str, timestamp: i64, body: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut parts = Vec::new();
    for secret in secrets {
        let Ok(key) = b64.decode(secret) else { continue };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        parts.push(format!("v1,{}", b64.encode(mac.finalize().into_bytes())));
    }
    parts.join(" ")
}

/// The body of a delivery: `{type, timestamp, data}`.
pub fn body(claim: &Claim) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": claim.kind, "timestamp": claim.occurred_at, "data": claim.data}))
        .expect("JSON values serialize")
}

/// The address to connect to for `url`: its literal, or the first address
/// its host resolves to that the rules allow. Every address refused → the
/// attempt fails "address not allowed" and nothing is connected to.
async fn address_for(url: &url::Url, allowed: &[Network]) -> Result<(Option<String>, SocketAddr), Sent> {
    let port = url.port_or_known_default().ok_or_else(|| Sent::failed("bad URL"))?;
    let host = url.host().ok_or_else(|| Sent::failed("bad URL"))?;
    let (name, candidates): (Option<String>, Vec<IpAddr>) = match address::literal(&host) {
        Some(ip) => (None, vec![ip]),
        None => {
            let name = host.to_string();
            let resolved: Vec<IpAddr> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|_| Sent::failed("name not resolved"))?
                .map(|a| a.ip())
                .collect();
            (Some(name), resolved)
        }
    };
    let ip = candidates
        .into_iter()
        .find(|ip| address::refused_unless(*ip, allowed).is_none())
        .ok_or_else(|| Sent::failed("address not allowed"))?;
    Ok((name, SocketAddr::new(ip, port)))
}

/// Sends the claimed delivery once, to the address checked (a client per
/// attempt, told that address, so no second lookup happens), following no
/// redirect.
pub async fn send(settings: &DeliverySettings, claim: &Claim) -> Sent {
    match tokio::time::timeout(settings.timeout, send_once(settings, claim)).await {
        Ok(sent) => sent,
        Err(_) => Sent::failed("timed out"),
    }
}

async fn send_once(settings: &DeliverySettings, claim: &Claim) -> Sent {
    let Ok(url) = url::Url::parse(&claim.url) else {
        return Sent::failed("bad URL");
    };
    let (name, addr) = match address_for(&url, &settings.allowed).await {
        Ok(found) => found,
        Err(failed) => return failed,
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(settings.timeout)
        .pool_max_idle_per_host(0);
    if let Some(name) = &name {
        builder = builder.resolve(name, addr);
    }
    let Ok(client) = builder.build() else {
        return Sent::failed("client not built");
    };
    let id = EventId::from_db(claim.event_id).to_string();
    let timestamp = Utc::now().timestamp();
    let body = body(claim);
    let signature = signature(&claim.secrets, &id, timestamp, &body);
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match answer {
        Ok(response) => Sent {
            status: Some(response.status().as_u16()),
            retry_after: response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
            error: None,
        },
        Err(err) if err.is_timeout() => Sent::failed("timed out"),
        Err(err) if err.is_connect() => Sent::failed("connection failed"),
        Err(_) => Sent::failed("request failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16, retry_after: Option<u64>) -> Sent {
        Sent {
            status: Some(status),
            retry_after,
            error: None,
        }
    }

    fn delay_of(next: Next) -> f64 {
        let Next::Retry(at) = next else { panic!("{next:?}") };
        (at - Utc::now()).num_milliseconds() as f64 / 1000.0
    }

    #[test]
    fn delivery_steps_follow_the_schedule_retry_after_and_410() {
        let schedule = [5, 300];
        assert_eq!(next_step(&answered(204, None), 1, &schedule, 1.0), Next::Delivered);
        assert!(matches!(
            next_step(&answered(410, None), 1, &schedule, 1.0),
            Next::Disable(_)
        ));
        assert!(matches!(
            next_step(&answered(301, None), 3, &schedule, 1.0),
            Next::GiveUp
        ));
        let d = delay_of(next_step(&answered(500, None), 2, &schedule, 1.2));
        assert!((359.0..=360.1).contains(&d), "{d}");
        // Retry-After within [delay, 2 × delay].
        let d = delay_of(next_step(&answered(429, Some(1000)), 1, &schedule, 1.0));
        assert!((9.0..=10.1).contains(&d), "{d}");
        let d = delay_of(next_step(&answered(503, Some(7)), 1, &schedule, 1.0));
        assert!((6.0..=7.1).contains(&d), "{d}");
        let d = delay_of(next_step(&answered(500, Some(7)), 1, &schedule, 1.0));
        assert!((4.0..=5.1).contains(&d), "{d}");
        let d = delay_of(next_step(&Sent::failed("timed out"), 1, &schedule, 0.8));
        assert!((3.0..=4.1).contains(&d), "{d}");
    }

    #[test]
    fn delivery_signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's libraries.
        let secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
