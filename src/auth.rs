//! Optional identity (`AUTH_MODE=jwt`): bearer JWTs verified against the
//! keys the operator configured, a JWK Set (RS256, ES256, EdDSA) or an HS256
//! secret. The algorithm of each key is fixed when the key is loaded, from
//! the key itself (its `kty`, `crv` and `alg`), never from a token's header:
//! a token whose header names another algorithm is refused, so `alg: none`
//! and algorithm confusion (an HS256 token "signed" with an RSA public key)
//! cannot pass. No HTTP here: the pipeline turns a [`Refusal`] into a 401.

use std::{collections::HashSet, fmt, path::Path};

use anyhow::{Context, bail, ensure};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use serde_json::{Map, Value};

use crate::{
    config::{AuthMode, AuthSettings},
    domain::ManagerId,
};

/// Seconds of clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;

/// The shortest HS256 secret accepted, in bytes (RFC 7518: a key at least
/// as long as the hash).
pub const MIN_SECRET_BYTES: usize = 32;

/// Checks bearer tokens and says which manager each one is for.
pub struct Verifier {
    keys: Vec<Key>,
    /// True for a JWK Set: a token's `kid` picks the key.
    by_kid: bool,
    claim: String,
}

/// One key and the one algorithm it verifies.
struct Key {
    kid: Option<String>,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key material stays out of logs, even public keys.
        let algorithms: Vec<_> = self.keys.iter().map(|k| k.validation.algorithms[0]).collect();
        f.debug_struct("Verifier")
            .field("algorithms", &algorithms)
            .field("claim", &self.claim)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused; the text is sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Past its `exp` (plus the leeway).
    Expired,
    /// Before its `nbf` (less the leeway).
    NotYetValid,
    /// Its `iss` is not `AUTH_ISSUER`.
    WrongIssuer,
    /// Its `aud` does not include `AUTH_AUDIENCE`.
    WrongAudience,
    /// It lacks this claim (or its manager claim is not a valid manager id).
    MissingClaim(String),
    /// Malformed, an algorithm its key does not have, no such key, or a bad
    /// signature.
    Invalid,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired => f.write_str("the token has expired"),
            Self::NotYetValid => f.write_str("the token is not valid yet"),
            Self::WrongIssuer => f.write_str("the token has another issuer"),
            Self::WrongAudience => f.write_str("the token is for another audience"),
            Self::MissingClaim(claim) => write!(f, "the token lacks a valid `{claim}` claim"),
            Self::Invalid => f.write_str("the token is malformed, has no known key, or its signature does not verify"),
        }
    }
}

impl Verifier {
    /// The verifier `AUTH_MODE` asks for: none for `none`; for `jwt`, one
    /// made from the key source given. A missing, unreadable or invalid key
    /// source is an error naming its setting.
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Option<Self>> {
        if settings.auth_mode == AuthMode::None {
            return Ok(None);
        }
        let claim = settings.auth_manager_claim.trim();
        ensure!(!claim.is_empty(), "AUTH_MANAGER_CLAIM must name a claim");
        let checks = Checks {
            issuer: settings.auth_issuer.as_deref(),
            audience: settings.auth_audience.as_deref(),
        };
        let verifier = match (&settings.auth_jwks_file, &settings.auth_hs256_secret) {
            (Some(_), Some(_)) => {
                bail!("AUTH_MODE=jwt takes one key source: AUTH_JWKS_FILE or AUTH_HS256_SECRET, not both")
            }
            (None, None) => bail!("AUTH_MODE=jwt needs a key source: set AUTH_JWKS_FILE or AUTH_HS256_SECRET"),
            (Some(path), None) => Self::from_jwks_file(path, checks, claim)?,
            (None, Some(secret)) => Self::hs256(secret.expose().as_bytes(), checks, claim)?,
        };
        Ok(Some(verifier))
    }

    /// A verifier of the keys in the JWK Set file at `path`.
    pub fn from_jwks_file(path: &Path, checks: Checks<'_>, claim: &str) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("AUTH_JWKS_FILE: cannot read {}", path.display()))?;
        Self::from_jwks(&text, checks, claim).with_context(|| format!("AUTH_JWKS_FILE ({})", path.display()))
    }

    /// A verifier of the keys of a JWK Set (its JSON text).
    pub fn from_jwks(json: &str, checks: Checks<'_>, claim: &str) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_str(json).context("not a JWK Set (`{\"keys\": [...]}`)")?;
        ensure!(!set.keys.is_empty(), "the JWK Set has no keys");
        let keys = set
            .keys
            .iter()
            .enumerate()
            .map(|(i, jwk)| {
                let name = jwk
                    .common
                    .key_id
                    .as_deref()
                    .map_or_else(|| format!("key {i}"), |kid| format!("key `{kid}`"));
                let algorithm = algorithm_of(jwk).with_context(|| name.clone())?;
                let decoding = DecodingKey::from_jwk(jwk).with_context(|| format!("{name}: invalid key"))?;
                Ok(Key {
                    kid: jwk.common.key_id.clone(),
                    decoding,
                    validation: checks.validation(algorithm),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            keys,
            by_kid: true,
            claim: claim.to_owned(),
        })
    }

    /// A verifier of HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8], checks: Checks<'_>, claim: &str) -> anyhow::Result<Self> {
        ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "AUTH_HS256_SECRET must be at least {MIN_SECRET_BYTES} bytes long"
        );
        let decoding = DecodingKey::from_secret(secret).context("AUTH_HS256_SECRET: invalid secret")?;
        Ok(Self {
            keys: vec![Key {
                kid: None,
                decoding,
                validation: checks.validation(Algorithm::HS256),
            }],
            by_kid: false,
            claim: claim.to_owned(),
        })
    }

    /// The claim that names the caller's manager.
    pub fn claim(&self) -> &str {
        &self.claim
    }

    /// The manager `token` (the text after `Bearer `) is for, or why it is
    /// refused.
    pub fn verify(&self, token: &str) -> Result<ManagerId, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Invalid)?;
        // With a JWK Set the `kid` picks the key; without one, every key of
        // the token's algorithm is tried. Each key checks the algorithm
        // itself: the header only narrows the search.
        let candidates = self.keys.iter().filter(|key| match (&header.kid, self.by_kid) {
            (Some(kid), true) => key.kid.as_deref() == Some(kid.as_str()),
            _ => key.validation.algorithms.contains(&header.alg),
        });
        let mut refusal = Refusal::Invalid;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &key.validation) {
                Ok(data) => {
                    return data
                        .claims
                        .get(&self.claim)
                        .and_then(Value::as_str)
                        .and_then(|text| ManagerId::parse(text).ok())
                        .ok_or_else(|| Refusal::MissingClaim(self.claim.clone()));
                }
                Err(err) => {
                    // A refusal for the claims means the signature verified:
                    // that is the answer, whatever other keys say.
                    let why = refusal_of(err.kind());
                    if why != Refusal::Invalid {
                        refusal = why;
                    }
                }
            }
        }
        Err(refusal)
    }
}

/// The claims checked besides `exp`/`nbf`: `iss` and `aud`, when set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checks<'a> {
    /// `AUTH_ISSUER`.
    pub issuer: Option<&'a str>,
    /// `AUTH_AUDIENCE`.
    pub audience: Option<&'a str>,
}

impl Checks<'_> {
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required: HashSet<String> = HashSet::from(["exp".to_owned()]);
        if let Some(issuer) = self.issuer {
            validation.set_issuer(&[issuer]);
            required.insert("iss".into());
        }
        match self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.insert("aud".into());
            }
            // No audience configured: a token's `aud` is not checked.
            None => validation.validate_aud = false,
        }
        validation.required_spec_claims = required;
        validation
    }
}

/// The one algorithm a JWK verifies, from its type and curve; its `alg`,
/// when present, must agree.
fn algorithm_of(jwk: &Jwk) -> anyhow::Result<Algorithm> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        bail!("is an encryption key (`use: enc`), not a signing key");
    }
    let stated = jwk.common.key_algorithm;
    let algorithm = match (&jwk.algorithm, stated) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS384)) => Algorithm::RS384,
        (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::RS512)) => Algorithm::RS512,
        (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::PS256)) => Algorithm::PS256,
        (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::PS384)) => Algorithm::PS384,
        (AlgorithmParameters::RSA(_), Some(KeyAlgorithm::PS512)) => Algorithm::PS512,
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES384))
            if ec.curve == EllipticCurve::P384 =>
        {
            Algorithm::ES384
        }
        (AlgorithmParameters::OctetKeyPair(okp), None | Some(KeyAlgorithm::EdDSA))
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        (AlgorithmParameters::OctetKey(_), _) => {
            bail!("is a symmetric key (`kty: oct`): give an HS256 secret as AUTH_HS256_SECRET instead")
        }
        (_, stated) => bail!(
            "is not a supported signing key (RSA, EC P-256/P-384 or OKP Ed25519, with a matching `alg`); alg {stated:?}"
        ),
    };
    Ok(algorithm)
}

/// What a decoding error says about the token.
fn refusal_of(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
        ErrorKind::InvalidAudience => Refusal::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => Refusal::MissingClaim(claim.clone()),
        _ => Refusal::Invalid,
    }
}

#[cfg(test)]
mod tests;
