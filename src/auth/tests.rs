//! The verifier against tokens made here with test-only keys
//! (`tests/fixtures/auth/`); the PyJWT probe makes its own.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;

const RSA: &[u8] = include_bytes!("../../tests/fixtures/auth/rsa-private.der");
const OTHER_RSA: &[u8] = include_bytes!("../../tests/fixtures/auth/other-rsa-private.der");
const RSA_PUBLIC_PEM: &[u8] = include_bytes!("../../tests/fixtures/auth/rsa-public.pem");
const EC: &[u8] = include_bytes!("../../tests/fixtures/auth/ec-p256-private.der");
const ED: &[u8] = include_bytes!("../../tests/fixtures/auth/ed25519-private.der");
const SECRET: &[u8] = b"a test secret of thirty-two bytes or more";

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// A JWK of `key`'s public part, with this `kid`.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

/// The set the tests verify against: one RSA, one P-256 and one Ed25519 key.
fn jwks() -> String {
    json!({"keys": [
        jwk(&EncodingKey::from_rsa_der(RSA), Algorithm::RS256, "rsa"),
        jwk(&EncodingKey::from_ec_der(EC), Algorithm::ES256, "ec"),
        jwk(&EncodingKey::from_ed_der(ED), Algorithm::EdDSA, "ed"),
    ]})
    .to_string()
}

const CHECKS: Checks<'static> = Checks {
    issuer: Some("https://issuer.test"),
    audience: Some("ecommerce-api"),
};

fn verifier() -> Verifier {
    Verifier::from_jwks(&jwks(), CHECKS, "sub").unwrap()
}

/// Claims that pass every check, for manager `mgr_1`.
fn claims() -> Value {
    json!({"sub": "mgr_1", "iss": "https://issuer.test", "aud": "ecommerce-api", "exp": now() + 300})
}

fn with(changes: Value) -> Value {
    let mut claims = claims();
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn signed(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(Into::into);
    encode(&header, claims, key).unwrap()
}

fn rs256(claims: &Value) -> String {
    signed(Algorithm::RS256, Some("rsa"), &EncodingKey::from_rsa_der(RSA), claims)
}

fn manager(name: &str) -> Result<ManagerId, Refusal> {
    Ok(ManagerId::parse(name).unwrap())
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn a_valid_token_names_its_manager() {
    assert_eq!(verifier().verify(&rs256(&claims())), manager("mgr_1"));
}

#[test]
fn es256_and_eddsa_keys_from_the_set_verify_their_tokens() {
    let es = signed(Algorithm::ES256, Some("ec"), &EncodingKey::from_ec_der(EC), &claims());
    let ed = signed(Algorithm::EdDSA, Some("ed"), &EncodingKey::from_ed_der(ED), &claims());
    assert_eq!(verifier().verify(&es), manager("mgr_1"));
    assert_eq!(verifier().verify(&ed), manager("mgr_1"));
    // Without a `kid`, the keys of the token's algorithm are tried.
    let ed = signed(Algorithm::EdDSA, None, &EncodingKey::from_ed_der(ED), &claims());
    assert_eq!(verifier().verify(&ed), manager("mgr_1"));
}

#[test]
fn an_expired_token_is_refused_past_the_leeway_only() {
    let expired = with(json!({"exp": now() - 120}));
    assert_eq!(verifier().verify(&rs256(&expired)), Err(Refusal::Expired));
    let within = with(json!({"exp": now() - 30}));
    assert_eq!(verifier().verify(&rs256(&within)), manager("mgr_1"));
}

#[test]
fn a_token_not_yet_valid_is_refused_past_the_leeway_only() {
    let early = with(json!({"nbf": now() + 300}));
    assert_eq!(verifier().verify(&rs256(&early)), Err(Refusal::NotYetValid));
    let within = with(json!({"nbf": now() + 30}));
    assert_eq!(verifier().verify(&rs256(&within)), manager("mgr_1"));
}

#[test]
fn issuer_and_audience_are_checked_when_set() {
    let issuer = with(json!({"iss": "https://elsewhere.test"}));
    assert_eq!(verifier().verify(&rs256(&issuer)), Err(Refusal::WrongIssuer));
    let audience = with(json!({"aud": "another-api"}));
    assert_eq!(verifier().verify(&rs256(&audience)), Err(Refusal::WrongAudience));
    let listed = with(json!({"aud": ["another-api", "ecommerce-api"]}));
    assert_eq!(verifier().verify(&rs256(&listed)), manager("mgr_1"));
    // Required when set.
    assert_eq!(
        verifier().verify(&rs256(&with(json!({"iss": null})))),
        Err(Refusal::MissingClaim("iss".into()))
    );
    // Not checked when not set.
    let lax = Verifier::from_jwks(&jwks(), Checks::default(), "sub").unwrap();
    let other = with(json!({"iss": "https://elsewhere.test", "aud": "another-api"}));
    assert_eq!(lax.verify(&rs256(&other)), manager("mgr_1"));
}

#[test]
fn exp_and_the_manager_claim_are_required() {
    assert_eq!(
        verifier().verify(&rs256(&with(json!({"exp": null})))),
        Err(Refusal::MissingClaim("exp".into()))
    );
    let missing = Err(Refusal::MissingClaim("sub".into()));
    assert_eq!(verifier().verify(&rs256(&with(json!({"sub": null})))), missing);
    assert_eq!(verifier().verify(&rs256(&with(json!({"sub": "bad id"})))), missing);
    assert_eq!(verifier().verify(&rs256(&with(json!({"sub": 5})))), missing);
    // Another claim may name the manager.
    let by_claim = Verifier::from_jwks(&jwks(), CHECKS, "manager_id").unwrap();
    let token = rs256(&with(json!({"manager_id": "mgr_2"})));
    assert_eq!(by_claim.verify(&token), manager("mgr_2"));
}

#[test]
fn alg_none_is_refused() {
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "kid": "rsa"}),
    ] {
        let token = format!("{}.{}.", b64(&header), b64(&claims()));
        assert_eq!(verifier().verify(&token), Err(Refusal::Invalid), "{header}");
        let hs = Verifier::hs256(SECRET, CHECKS, "sub").unwrap();
        assert_eq!(hs.verify(&token), Err(Refusal::Invalid));
    }
}

#[test]
fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
    let public_der = URL_SAFE_NO_PAD
        .decode(
            serde_json::from_str::<Value>(&jwks()).unwrap()["keys"][0]["n"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    for public in [RSA_PUBLIC_PEM, &public_der] {
        let key = EncodingKey::from_secret(public).unwrap();
        for kid in [Some("rsa"), None] {
            let token = signed(Algorithm::HS256, kid, &key, &claims());
            assert_eq!(verifier().verify(&token), Err(Refusal::Invalid));
        }
    }
}

#[test]
fn a_token_signed_with_another_key_is_refused() {
    let other = EncodingKey::from_rsa_der(OTHER_RSA);
    assert_eq!(
        verifier().verify(&signed(Algorithm::RS256, Some("rsa"), &other, &claims())),
        Err(Refusal::Invalid)
    );
    assert_eq!(
        verifier().verify(&signed(Algorithm::RS256, None, &other, &claims())),
        Err(Refusal::Invalid)
    );
    // A kid the set does not have.
    let rsa = EncodingKey::from_rsa_der(RSA);
    assert_eq!(
        verifier().verify(&signed(Algorithm::RS256, Some("nope"), &rsa, &claims())),
        Err(Refusal::Invalid)
    );
    // The kid of another key: that key's algorithm is not the token's.
    assert_eq!(
        verifier().verify(&signed(Algorithm::RS256, Some("ec"), &rsa, &claims())),
        Err(Refusal::Invalid)
    );
    // Not a JWT at all.
    assert_eq!(verifier().verify("not.a.token"), Err(Refusal::Invalid));
    assert_eq!(verifier().verify(""), Err(Refusal::Invalid));
}

#[test]
fn an_hs256_secret_verifies_its_tokens_only() {
    let hs = Verifier::hs256(SECRET, CHECKS, "sub").unwrap();
    let key = EncodingKey::from_secret(SECRET).unwrap();
    assert_eq!(
        hs.verify(&signed(Algorithm::HS256, None, &key, &claims())),
        manager("mgr_1")
    );
    let wrong = EncodingKey::from_secret(b"another secret of thirty-two bytes or more").unwrap();
    assert_eq!(
        hs.verify(&signed(Algorithm::HS256, None, &wrong, &claims())),
        Err(Refusal::Invalid)
    );
    // HS384 with the same secret: not the key's algorithm.
    assert_eq!(
        hs.verify(&signed(Algorithm::HS384, None, &key, &claims())),
        Err(Refusal::Invalid)
    );
    assert_eq!(hs.verify(&rs256(&claims())), Err(Refusal::Invalid));
    let expired = with(json!({"exp": now() - 120}));
    assert_eq!(
        hs.verify(&signed(Algorithm::HS256, None, &key, &expired)),
        Err(Refusal::Expired)
    );
}

fn settings(jwks: Option<&Path>, secret: Option<&str>) -> AuthSettings {
    AuthSettings {
        auth_mode: AuthMode::Jwt,
        auth_jwks_file: jwks.map(Into::into),
        auth_hs256_secret: secret.map(Into::into),
        ..AuthSettings::default()
    }
}

fn refused(settings: &AuthSettings) -> String {
    format!("{:#}", Verifier::from_settings(settings).unwrap_err())
}

#[test]
fn start_up_refuses_a_bad_key_source_naming_the_setting() {
    assert!(Verifier::from_settings(&AuthSettings::default()).unwrap().is_none());
    assert!(refused(&settings(None, None)).contains("AUTH_JWKS_FILE or AUTH_HS256_SECRET"));
    let dir = std::env::temp_dir().join(format!("ecommerce-api-auth-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = file("good.json", &jwks());
    assert!(refused(&settings(Some(&good), Some(std::str::from_utf8(SECRET).unwrap()))).contains("not both"));
    assert!(refused(&settings(None, Some("short"))).contains("AUTH_HS256_SECRET"));
    assert!(refused(&settings(Some(&dir.join("missing.json")), None)).contains("AUTH_JWKS_FILE"));
    let rsa = serde_json::from_str::<Value>(&jwks()).unwrap()["keys"][0].clone();
    let mut mismatched = rsa.clone();
    mismatched["alg"] = json!("ES256");
    let mut encryption = rsa.clone();
    encryption["use"] = json!("enc");
    for (name, text, says) in [
        ("garbage.json", "not json".to_owned(), "not a JWK Set"),
        ("empty.json", r#"{"keys": []}"#.to_owned(), "no keys"),
        (
            "oct.json",
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string(),
            "symmetric",
        ),
        (
            "mismatched.json",
            json!({"keys": [mismatched]}).to_string(),
            "not a supported",
        ),
        ("enc.json", json!({"keys": [encryption]}).to_string(), "encryption"),
        (
            "bad-key.json",
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "!!", "y": "!!"}]}).to_string(),
            "invalid key",
        ),
    ] {
        let message = refused(&settings(Some(&file(name, &text)), None));
        assert!(
            message.contains("AUTH_JWKS_FILE") && message.contains(says),
            "{name}: {message}"
        );
    }
    let claimless = AuthSettings {
        auth_manager_claim: " ".into(),
        ..settings(Some(&good), None)
    };
    assert!(refused(&claimless).contains("AUTH_MANAGER_CLAIM"));
    let verifier = Verifier::from_settings(&settings(Some(&good), None)).unwrap().unwrap();
    assert_eq!(verifier.claim(), "sub");
    assert!(!format!("{verifier:?}").contains(&rsa["n"].as_str().unwrap()[..20]));
    std::fs::remove_dir_all(&dir).ok();
}
