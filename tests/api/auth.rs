//! `AUTH_MODE=jwt` on a real instance: 401 without a valid bearer token (an
//! anonymous request: counted against no manager, audited under none), 403
//! for another manager's (counted and audited under the token's), the
//! request served with a valid one; and `AUTH_MODE=none` ignoring tokens.

use std::time::Duration;

use ecommerce_api::config::{AuthMode, AuthSettings, Settings};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, jwk::Jwk};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, error_of, header, settings, spawn_app, spawn_app_with};

const SECRET: &str = "the secret of these tests, 32 bytes at least";
const RSA: &[u8] = include_bytes!("../fixtures/auth/rsa-private.der");
const RSA_PUBLIC_PEM: &[u8] = include_bytes!("../fixtures/auth/rsa-public.pem");
const AUDIENCE: &str = "ecommerce-api";

fn jwt_settings(auth: AuthSettings) -> Settings {
    Settings {
        rate_limit_max: 3,
        auth: AuthSettings {
            auth_mode: AuthMode::Jwt,
            auth_audience: Some(AUDIENCE.into()),
            ..auth
        },
        ..settings()
    }
}

async fn spawn_hs256(db: PgPool) -> TestApp {
    let auth = AuthSettings {
        auth_hs256_secret: Some(SECRET.into()),
        ..AuthSettings::default()
    };
    spawn_app_with(db, jwt_settings(auth), None).await
}

fn claims(manager: &str, exp_in: i64) -> Value {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    json!({"sub": manager, "aud": AUDIENCE, "exp": now + exp_in})
}

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn token_for(manager: &str) -> String {
    hs256(&claims(manager, 300))
}

/// Sends `GET path` or `POST path body` with this request id and, if given,
/// `Authorization: Bearer token`.
async fn send(
    app: &TestApp,
    request_id: &str,
    token: Option<&str>,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let request = match body {
        Some(body) => app.client.post(app.url(path)).json(&body),
        None => app.client.get(app.url(path)),
    };
    let request = request.header("x-request-id", request_id);
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.expect("request failed")
}

/// The manager, status and error code of the one audit row of `request_id`.
async fn audited(app: &TestApp, request_id: &str) -> (String, i16, Option<String>) {
    for _ in 0..200 {
        let rows: Vec<(String, i16, Option<String>)> =
            sqlx::query_as("select manager_id, status, error_code from audit_log where request_id = $1")
                .bind(request_id)
                .fetch_all(&app.db)
                .await
                .unwrap();
        match rows.len() {
            0 => tokio::time::sleep(Duration::from_millis(20)).await,
            1 => return rows.into_iter().next().unwrap(),
            n => panic!("{n} audit rows for {request_id}"),
        }
    }
    panic!("no audit row for {request_id}")
}

#[sqlx::test]
async fn auth_jwt_refuses_a_request_without_a_valid_token_as_anonymous(db: PgPool) {
    let app = spawn_hs256(db).await;
    let list = "/api/inventory/products?manager_id=mgr_a";
    let expired = hs256(&claims("mgr_a", -600));
    let other_audience = hs256(&json!({"sub": "mgr_a", "aud": "another", "exp": claims("mgr_a", 300)["exp"]}));
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("none-1", None, "Bearer"),
        ("garbage-1", Some("not-a-jwt"), r#"Bearer error="invalid_token""#),
        ("expired-1", Some(&expired), r#"Bearer error="invalid_token""#),
        ("audience-1", Some(&other_audience), r#"Bearer error="invalid_token""#),
        ("basic-1", None, r#"Bearer error="invalid_token""#),
    ];
    for (id, token, challenge) in cases {
        let response = if id == "basic-1" {
            app.client
                .get(app.url(list))
                .header("x-request-id", id)
                .header("authorization", "Basic bWdyX2E6cHc=")
                .send()
                .await
                .unwrap()
        } else {
            send(&app, id, token, list, None).await
        };
        assert_eq!(header(&response, "www-authenticate"), challenge, "{id}");
        assert!(
            response.headers().get("x-ratelimit-remaining").is_none(),
            "{id}: counted against mgr_a"
        );
        let (status, body) = error_of(response).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{id}");
        assert!(body["details"]["Authorization"].is_string(), "{id}: {body}");
        assert_eq!(
            audited(&app, id).await,
            (String::new(), 401, Some("UNAUTHENTICATED".into())),
            "{id}"
        );
    }
    let (_, body) = error_of(send(&app, "expired-2", Some(&expired), list, None).await).await;
    assert_eq!(body["details"]["Authorization"], "the token has expired");

    // A write without a token changes nothing and is not read further.
    let add = json!({"manager_id": "mgr_a", "products": [{"name": "Mug", "price": 5, "quantity": 1}]});
    let response = send(&app, "write-1", None, "/api/inventory/products", Some(add)).await;
    assert_eq!(response.status(), 401);
    assert_eq!(audited(&app, "write-1").await.1, 401);
    let products: i64 = sqlx::query_scalar("select count(*) from product")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(products, 0);

    // None of those counted against mgr_a (a limit of 3): its own requests
    // still have the whole window.
    let response = send(&app, "valid-1", Some(&token_for("mgr_a")), list, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-ratelimit-remaining"), "2");
    app.stop().await;
}

#[sqlx::test]
async fn auth_jwt_forbids_another_managers_request_under_the_tokens_manager(db: PgPool) {
    let app = spawn_hs256(db).await;
    let token = token_for("mgr_a");
    let response = send(
        &app,
        "read-b",
        Some(&token),
        "/api/inventory/products?manager_id=mgr_b",
        None,
    )
    .await;
    // Counted against the caller, mgr_a.
    assert_eq!(header(&response, "x-ratelimit-remaining"), "2");
    let (status, body) = error_of(response).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("FORBIDDEN")));
    assert_eq!(
        audited(&app, "read-b").await,
        ("mgr_a".into(), 403, Some("FORBIDDEN".into()))
    );

    let add = json!({"manager_id": "mgr_b", "products": [{"name": "Mug", "price": 5, "quantity": 1}]});
    let (status, _) = error_of(send(&app, "write-b", Some(&token), "/api/inventory/products", Some(add)).await).await;
    assert_eq!(status, 403);
    assert_eq!(
        audited(&app, "write-b").await,
        ("mgr_a".into(), 403, Some("FORBIDDEN".into()))
    );
    let products: i64 = sqlx::query_scalar("select count(*) from product")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(products, 0);
    app.stop().await;
}

#[sqlx::test]
async fn auth_jwt_serves_a_request_with_a_valid_token_for_its_manager(db: PgPool) {
    let app = spawn_hs256(db).await;
    let token = token_for("mgr_a");
    let add = json!({"manager_id": "mgr_a", "products": [{"name": "Mug", "price": 5, "quantity": 1}]});
    let response = send(&app, "add-a", Some(&token), "/api/inventory/products", Some(add)).await;
    assert_eq!(response.status(), 201);
    assert_eq!(audited(&app, "add-a").await, ("mgr_a".into(), 201, None));
    let response = send(
        &app,
        "list-a",
        Some(&token),
        "/api/inventory/products?manager_id=mgr_a",
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["products"][0]["name"], "Mug");
    assert_eq!(audited(&app, "list-a").await, ("mgr_a".into(), 200, None));
    // Naming no manager: the handler's 400, audited under the token's.
    let (status, _) = error_of(send(&app, "list-none", Some(&token), "/api/inventory/products", None).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        audited(&app, "list-none").await,
        ("mgr_a".into(), 400, Some("INVALID_REQUEST".into()))
    );
    // Health and the document need no token.
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/openapi.json").await.status(), 200);
    app.stop().await;
}

#[sqlx::test]
async fn auth_jwt_with_a_jwks_file_takes_the_algorithm_from_the_key(db: PgPool) {
    let rsa = EncodingKey::from_rsa_der(RSA);
    let mut jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let dir = std::env::temp_dir().join(format!("ecommerce-api-jwks-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwks.json");
    std::fs::write(&file, json!({"keys": [jwk]}).to_string()).unwrap();
    let auth = AuthSettings {
        auth_jwks_file: Some(file),
        auth_issuer: Some("https://issuer.test".into()),
        ..AuthSettings::default()
    };
    let app = spawn_app_with(db, jwt_settings(auth), None).await;
    let mut claims = claims("mgr_a", 300);
    claims["iss"] = json!("https://issuer.test");
    let list = "/api/inventory/products?manager_id=mgr_a";

    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let valid = encode(&header, &claims, &rsa).unwrap();
    assert_eq!(send(&app, "rs-valid", Some(&valid), list, None).await.status(), 200);

    // An HS256 token "signed" with the public key the service holds.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let confused = encode(&header, &claims, &EncodingKey::from_secret(RSA_PUBLIC_PEM).unwrap()).unwrap();
    let (status, _) = error_of(send(&app, "rs-confused", Some(&confused), list, None).await).await;
    assert_eq!(status, 401);
    assert_eq!(
        audited(&app, "rs-confused").await,
        (String::new(), 401, Some("UNAUTHENTICATED".into()))
    );
    app.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[sqlx::test]
async fn auth_none_ignores_tokens_as_before(db: PgPool) {
    let app = spawn_app(db).await;
    let list = "/api/inventory/products?manager_id=mgr_b";
    for (id, token) in [("plain", None), ("stray", Some(token_for("mgr_a")))] {
        let response = send(&app, id, token.as_deref(), list, None).await;
        assert_eq!(response.status(), 200, "{id}");
        assert!(response.headers().get("www-authenticate").is_none());
        assert_eq!(audited(&app, id).await, ("mgr_b".into(), 200, None));
    }
    app.stop().await;
}

#[tokio::test]
async fn auth_jwt_start_up_refuses_a_missing_key_source() {
    let settings = Settings {
        auth: AuthSettings {
            auth_mode: AuthMode::Jwt,
            ..AuthSettings::default()
        },
        ..settings()
    };
    let db = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    let err = ecommerce_api::app::state(settings, db, None)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("AUTH_JWKS_FILE or AUTH_HS256_SECRET"),
        "{err:#}"
    );
}
