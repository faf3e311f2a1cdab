//! Bearer tokens: who is calling.
//!
//! In AWS the HTTP API's JWT authorizer verifies the token and the producer
//! reads the verified claims from the request context. Locally (no
//! authorizer) the producer verifies an HS256 token itself with
//! `AUTH_JWT_SECRET`: signature, `exp` and `nbf`. Either way the account is
//! the token's `sub`.

use crate::message::AccountId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send 'Authorization: Bearer <JWT>'")]
    Missing,
    #[error("malformed Authorization header: expected 'Bearer <JWT>'")]
    NotBearer,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token's sub is not a valid account id: {0}")]
    BadSubject(String),
    #[error("no verified claims from the API Gateway authorizer")]
    NoAuthorizer,
}

/// The claims this service reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Verifies HS256 tokens; built once at cold start.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Reads `Authorization: Bearer <token>` and returns the account.
    pub fn verify_header(&self, header: Option<&[u8]>) -> Result<AccountId, AuthError> {
        let raw = header.ok_or(AuthError::Missing)?;
        let raw = std::str::from_utf8(raw).map_err(|_| AuthError::NotBearer)?;
        let (scheme, token) = raw.trim().split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::NotBearer);
        }
        self.verify(token.trim())
    }

    pub fn verify(&self, token: &str) -> Result<AccountId, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm must be HS256".into()),
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::Invalid(format!("missing claim {c}"))
                }
                _ => AuthError::Invalid("not a well-formed JWT".into()),
            })?;
        account_from_sub(&data.claims.sub)
    }
}

/// The account from a `sub` claim (verified by us or by the authorizer).
pub fn account_from_sub(sub: &str) -> Result<AccountId, AuthError> {
    AccountId::parse(sub).map_err(|e| AuthError::BadSubject(e.0))
}

/// Signs a local development token (`make token`, tests, the dev curl).
pub fn sign(secret: &str, sub: &str, now_secs: u64, ttl_secs: u64) -> Result<String, AuthError> {
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now_secs + ttl_secs,
        nbf: Some(now_secs),
        iat: Some(now_secs),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "test-secret";

    fn now() -> u64 {
        crate::now_ms() / 1000
    }

    #[test]
    fn a_signed_token_verifies_to_its_sub() {
        let t = sign(S, "acct_1", now(), 3600).unwrap();
        let v = Verifier::new(S);
        assert_eq!(v.verify(&t).unwrap().as_str(), "acct_1");
        let h = format!("Bearer {t}");
        assert_eq!(
            v.verify_header(Some(h.as_bytes())).unwrap().as_str(),
            "acct_1"
        );
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let v = Verifier::new(S);
        assert_eq!(v.verify_header(None), Err(AuthError::Missing));
        assert_eq!(
            v.verify_header(Some(b"Basic abc")),
            Err(AuthError::NotBearer)
        );
        assert_eq!(v.verify_header(Some(b"Bearer ")), Err(AuthError::NotBearer));
        assert!(matches!(
            v.verify("abc.def.ghi"),
            Err(AuthError::Invalid(_))
        ));
        let other = sign("other-secret", "acct_1", now(), 3600).unwrap();
        assert!(matches!(v.verify(&other), Err(AuthError::Invalid(_))));
        let expired = sign(S, "acct_1", now() - 7200, 3600).unwrap();
        assert_eq!(v.verify(&expired), Err(AuthError::Expired));
        let future = sign(S, "acct_1", now() + 3600, 3600).unwrap();
        assert_eq!(v.verify(&future), Err(AuthError::NotYetValid));
        let bad_sub = sign(S, "a{b}", now(), 3600).unwrap();
        assert!(matches!(v.verify(&bad_sub), Err(AuthError::BadSubject(_))));
    }

    #[test]
    fn tampered_payload_is_refused() {
        let t = sign(S, "acct_1", now(), 3600).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let forged = sign("x", "acct_2", now(), 3600).unwrap();
        let forged_payload = forged.split('.').nth(1).unwrap();
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(Verifier::new(S).verify(&tampered).is_err());
    }
}
