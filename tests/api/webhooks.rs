//! Webhook endpoints over HTTP: register (secret shown once), list, read,
//! rotate, the deliveries log, replay, delete; the limit per manager; every
//! literal spelling of an internal address refused at registration.

use base64::Engine;
use ecommerce_api::{config::Settings, domain::address::Network};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{self, error_of, spawn_app, spawn_app_with};

const HOOKS: &str = "/api/webhooks";

async fn body(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

fn secret_bytes(secret: &Value) -> Vec<u8> {
    let text = secret.as_str().unwrap().strip_prefix("whsec_").expect("whsec_ prefix");
    base64::engine::general_purpose::STANDARD.decode(text).expect("base64")
}

#[sqlx::test]
async fn an_endpoint_is_registered_read_rotated_replayed_and_deleted(db: PgPool) {
    // No delivery worker: the test watches the cursor that it moves.
    let settings = Settings {
        webhook_delivery: false,
        ..helpers::settings()
    };
    let app = spawn_app_with(db, settings, None).await;
    let m = "mgr_hooks";
    app.seed(m, "Tea", 2.0, 5).await;

    let created = app
        .post(
            HOOKS,
            json!({"manager_id": m, "url": "https://erp.example.com/hooks", "event_types": ["inventory.changed"],
                   "description": "ERP"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let hook = body(created).await;
    assert_eq!(
        hook.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "created_at",
            "description",
            "event_types",
            "id",
            "secret",
            "status",
            "url"
        ]
    );
    assert_eq!(
        (&hook["id"], &hook["status"], &hook["event_types"]),
        (&json!("wh_001"), &json!("enabled"), &json!(["inventory.changed"]))
    );
    assert_eq!(secret_bytes(&hook["secret"]).len(), 32);

    // Shown once: neither the list nor the read has it.
    let listed = body(app.get(&format!("{HOOKS}?manager_id={m}")).await).await;
    let mut without = hook.clone();
    without.as_object_mut().unwrap().remove("secret");
    assert_eq!(listed, json!({"webhooks": [without.clone()]}));
    let one = app.get(&format!("{HOOKS}/wh_001?manager_id={m}")).await;
    assert_eq!(one.status(), 200);
    assert_eq!(body(one).await, without);
    for url in [
        format!("{HOOKS}/wh_001?manager_id=other"),
        format!("{HOOKS}/wh_1?manager_id={m}"),
    ] {
        let (status, error) = error_of(app.get(&url).await).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (404, Some("WEBHOOK_NOT_FOUND")),
            "{url}"
        );
    }

    // A new secret; the old one still signs for a day.
    let rotated = app
        .post(&format!("{HOOKS}/wh_001/rotate-secret"), json!({"manager_id": m}))
        .await;
    assert_eq!(rotated.status(), 200);
    let rotated = body(rotated).await;
    assert_ne!(rotated["secret"], hook["secret"]);
    assert_eq!(secret_bytes(&rotated["secret"]).len(), 32);
    let (previous, hours): (Option<String>, f64) = sqlx::query_as(
        "select previous_secret, extract(epoch from previous_secret_expires_at - now())::float8 / 3600 from webhook",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        previous.as_deref(),
        hook["secret"].as_str().unwrap().strip_prefix("whsec_")
    );
    assert!((23.9..=24.0).contains(&hours), "{hours}");
    let (status, _) = error_of(
        app.post(&format!("{HOOKS}/wh_001/rotate-secret"), json!({"manager_id": "other"}))
            .await,
    )
    .await;
    assert_eq!(status, 404);

    // The deliveries log (empty), and replays from a point of the feed.
    let log = app.get(&format!("{HOOKS}/wh_001/deliveries?manager_id={m}")).await;
    assert_eq!(log.status(), 200);
    assert_eq!(body(log).await, json!({"deliveries": []}));
    let (status, error) = error_of(
        app.get(&format!("{HOOKS}/wh_001/deliveries?manager_id={m}&limit=0&after=x"))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["details"].as_object().unwrap().len(), 2);
    let cursor = || async {
        sqlx::query_scalar::<_, i64>("select cursor from webhook")
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    let newest: i64 = sqlx::query_scalar("select max(id) from event")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(cursor().await, newest, "a new endpoint starts after the newest event");
    let first = format!("evt_{:03}", newest - 1);
    let replay = app
        .post(
            &format!("{HOOKS}/wh_001/replay"),
            json!({"manager_id": m, "after": first}),
        )
        .await;
    assert_eq!(replay.status(), 202);
    assert_eq!(cursor().await, newest - 1);
    assert_eq!(
        app.post(&format!("{HOOKS}/wh_001/replay"), json!({"manager_id": m}))
            .await
            .status(),
        202
    );
    assert_eq!(cursor().await, 0, "no `after`: every kept event");
    let theirs = app.seed("other", "Theirs", 1.0, 1).await;
    assert_eq!(theirs, "prod_002");
    let their_event: i64 = sqlx::query_scalar("select max(id) from event where manager_id = 'other'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let (status, error) = error_of(
        app.post(
            &format!("{HOOKS}/wh_001/replay"),
            json!({"manager_id": m, "after": format!("evt_{their_event:03}")}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &error["details"]["after"]),
        (400, &json!("is not an event of this manager's feed"))
    );

    // Deleted: gone, and again is not found.
    let deleted = app
        .client
        .delete(app.url(&format!("{HOOKS}/wh_001?manager_id={m}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get(&format!("{HOOKS}/wh_001?manager_id={m}")).await.status(), 404);
    let again = app
        .client
        .delete(app.url(&format!("{HOOKS}/wh_001?manager_id={m}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    // Every request left its one audit record, the writes in their transaction.
    let audited: Vec<(String, String, i16)> = sqlx::query_as(
        "select method, path, status from audit_log where path like '/api/webhooks%' and status < 300 order by id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let writes: Vec<_> = audited.iter().filter(|(method, ..)| method != "GET").collect();
    assert_eq!(writes.len(), 5, "{audited:?}");
    app.stop().await;
}

#[sqlx::test]
async fn registration_lists_every_bad_field_and_refuses_internal_addresses(db: PgPool) {
    let app = spawn_app(db).await;
    let (status, error) = error_of(
        app.post(
            HOOKS,
            json!({"manager_id": "m", "url": "gopher://x/", "event_types": ["nope"], "description": 5}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        error["details"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["description", "event_types[0]", "url"]
    );
    for url in [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://017700000001/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://100.64.1.1/",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0:8080/",
    ] {
        let (status, error) = error_of(app.post(HOOKS, json!({"manager_id": "m", "url": url})).await).await;
        assert_eq!(status, 400, "{url}");
        assert!(
            error["details"]["url"]
                .as_str()
                .unwrap()
                .starts_with("address not allowed"),
            "{url}: {error}"
        );
    }
    let count: i64 = sqlx::query_scalar("select count(*) from webhook")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
    app.stop().await;
}

#[sqlx::test]
async fn a_manager_has_at_most_twenty_endpoints_and_allowed_networks_open_loopback(db: PgPool) {
    let settings = Settings {
        webhook_allowed_networks: vec![Network::parse("127.0.0.0/8").unwrap()],
        ..helpers::settings()
    };
    let app = spawn_app_with(db, settings, None).await;
    for i in 0..20 {
        let response = app
            .post(
                HOOKS,
                json!({"manager_id": "m", "url": format!("http://127.0.0.1:9/{i}")}),
            )
            .await;
        assert_eq!(response.status(), 201, "{i}");
    }
    let (status, error) = error_of(
        app.post(HOOKS, json!({"manager_id": "m", "url": "http://127.0.0.1:9/x"}))
            .await,
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (409, Some("WEBHOOK_LIMIT_REACHED")));
    let other = app
        .post(HOOKS, json!({"manager_id": "n", "url": "https://example.com/"}))
        .await;
    assert_eq!(other.status(), 201, "the limit is per manager");
    app.stop().await;
}
