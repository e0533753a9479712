//! The webhook delivery worker, run by every instance inside `serve`: moves
//! endpoints' cursors along the feed (queueing deliveries), claims due
//! deliveries with a lease and a fencing token, sends each signed (Standard
//! Webhooks) through one HTTP client whose resolver lets it connect only to
//! addresses it checked, and completes the claims, delivered ones many to a
//! statement. No database connection is held while a receiver is being
//! called.

use std::{
    error::Error,
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::{sync::mpsc, task::JoinSet};

use crate::{
    config::Settings,
    db::Db,
    domain::{
        EventId,
        address::{self, Network},
    },
    store::delivery::{self, Attempt, Claim, Next},
};

/// Most attempts one instance runs at once (they wait on the network, not
/// on the database).
pub const MAX_IN_FLIGHT: usize = 128;
/// How often the worker looks for new events, and for due deliveries when
/// no attempt has ended meanwhile.
pub const POLL: Duration = Duration::from_millis(250);
/// Most delivered claims completed in one statement.
const COMPLETE_BATCH: usize = 256;

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

/// An attempt that has ended, waiting to be completed.
type Ended = (Claim, Attempt);

/// Runs until aborted (attempts in flight are dropped with it; their leases
/// run out and another instance takes them).
pub async fn run(db: Db, settings: DeliverySettings) {
    let client = match client(&settings.allowed, settings.timeout) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "could not build the webhook HTTP client: no deliveries from this instance");
            return;
        }
    };
    let settings = Arc::new(settings);
    let (ended, to_complete) = mpsc::channel(4 * MAX_IN_FLIGHT);
    tokio::select! {
        () = claim_and_send(db.clone(), settings.clone(), client, ended) => {}
        () = complete(db, settings, to_complete) => {}
    }
}

/// Queues new events every tick, and claims due deliveries every tick and
/// whenever a quarter of the attempts' room has come free, starting an
/// attempt for each.
async fn claim_and_send(db: Db, settings: Arc<DeliverySettings>, client: reqwest::Client, ended: mpsc::Sender<Ended>) {
    let mut in_flight = JoinSet::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ticked = tokio::select! {
            _ = tick.tick() => true,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => false,
        };
        while in_flight.try_join_next().is_some() {}
        if ticked && let Err(err) = delivery::queue_new_events(&db).await {
            tracing::warn!(error = %err, "could not queue webhook deliveries");
        }
        let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
        if room == 0 || (!ticked && room < MAX_IN_FLIGHT / 4) {
            continue;
        }
        match delivery::claim(&db, room as i64, settings.lease_secs).await {
            Ok(claims) => {
                for claim in claims {
                    in_flight.spawn(attempt(
                        db.clone(),
                        settings.clone(),
                        client.clone(),
                        claim,
                        ended.clone(),
                    ));
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not claim webhook deliveries"),
        }
    }
}

/// One attempt: send (renewing the lease meanwhile), then hand it over to
/// be completed.
async fn attempt(
    db: Db,
    settings: Arc<DeliverySettings>,
    client: reqwest::Client,
    claim: Claim,
    ended: mpsc::Sender<Ended>,
) {
    let started = Instant::now();
    let lease = settings.lease_secs;
    let renewing = async {
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
        sent = send(&client, &settings, &claim) => sent,
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
    // The completer outlives every attempt (both end with the worker).
    let _ = ended.send((claim, record)).await;
}

/// Completes ended attempts: those delivered together, as many as have
/// ended by the time the last statement finished; the others (failures,
/// rare) one by one, with their retries and the endpoint's failing streak.
async fn complete(db: Db, settings: Arc<DeliverySettings>, mut ended: mpsc::Receiver<Ended>) {
    let mut batch: Vec<Ended> = Vec::with_capacity(COMPLETE_BATCH);
    while ended.recv_many(&mut batch, COMPLETE_BATCH).await > 0 {
        let (delivered, failed): (Vec<Ended>, Vec<Ended>) = batch
            .drain(..)
            .partition(|(_, attempt)| attempt.next == Next::Delivered);
        if !delivered.is_empty() {
            match delivery::complete_delivered(&db, &delivered).await {
                Ok(held) if held < delivered.len() => tracing::warn!(
                    stale = delivered.len() - held,
                    "webhook deliveries whose claims no longer held when their attempts ended (their leases ran out, or the endpoints were deleted): not recorded"
                ),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "could not record delivered webhooks"),
            }
        }
        for (claim, attempt) in failed {
            match delivery::complete(&db, &claim, &attempt, settings.disable_after).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    webhook_id = claim.webhook_id,
                    event_id = claim.event_id,
                    "a webhook delivery's claim no longer held when its attempt ended (its lease ran out, or the endpoint was deleted): nothing recorded"
                ),
                Err(err) => tracing::warn!(error = %err, "could not record a webhook delivery attempt"),
            }
        }
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

/// A lookup refused every address the name has.
#[derive(Debug)]
struct NotAllowed;

impl fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("address not allowed")
    }
}

impl Error for NotAllowed {}

/// A lookup that found nothing.
#[derive(Debug)]
struct NotResolved;

impl fmt::Display for NotResolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("name not resolved")
    }
}

impl Error for NotResolved {}

/// The HTTP client's resolver: it looks the name up and hands the client
/// only the addresses the rules allow, so every connection the client makes
/// (and keeps for reuse) is to an address checked by the lookup that found
/// it. Written here because the check has to sit between the lookup and the
/// connect, which only a resolver of the client's own can do.
struct CheckedResolver {
    allowed: Vec<Network>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let found: Vec<IpAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|_| Box::new(NotResolved) as Box<dyn Error + Send + Sync>)?
                .map(|a| a.ip())
                .collect();
            let checked: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| address::refused_unless(*ip, &allowed).is_none())
                // The client puts the URL's port in.
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if checked.is_empty() {
                return Err(Box::new(NotAllowed) as Box<dyn Error + Send + Sync>);
            }
            Ok(Box::new(checked.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The one client every attempt of this instance sends with: no redirects,
/// no proxy, names resolved by [`CheckedResolver`], idle connections kept
/// a while for the next delivery to the same endpoint.
pub fn client(allowed: &[Network], timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(8)
        .dns_resolver(Arc::new(CheckedResolver {
            allowed: allowed.to_vec(),
        }))
        .build()
}

/// Why a request got no answer, in the words of the deliveries log.
fn failure(err: &reqwest::Error) -> &'static str {
    let mut cause = err.source();
    while let Some(inner) = cause {
        if inner.is::<NotAllowed>() {
            return "address not allowed";
        }
        if inner.is::<NotResolved>() {
            return "name not resolved";
        }
        cause = inner.source();
    }
    if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

/// Sends the claimed delivery once with `client`, following no redirect. A
/// host that is an address literal is checked here (the client looks up
/// names only).
pub async fn send(client: &reqwest::Client, settings: &DeliverySettings, claim: &Claim) -> Sent {
    match tokio::time::timeout(settings.timeout, send_once(client, settings, claim)).await {
        Ok(sent) => sent,
        Err(_) => Sent::failed("timed out"),
    }
}

async fn send_once(client: &reqwest::Client, settings: &DeliverySettings, claim: &Claim) -> Sent {
    let Ok(url) = url::Url::parse(&claim.url) else {
        return Sent::failed("bad URL");
    };
    let Some(host) = url.host() else {
        return Sent::failed("bad URL");
    };
    if let Some(ip) = address::literal(&host)
        && address::refused_unless(ip, &settings.allowed).is_some()
    {
        return Sent::failed("address not allowed");
    }
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
        Err(err) => Sent::failed(failure(&err)),
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
