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

/// `AUTH_JWT_SECRET` is empty: HS256 needs a key (jsonwebtoken refuses an
/// empty one), so the producer refuses to start rather than to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("AUTH_JWT_SECRET is empty: an HS256 key is needed to verify bearer tokens")]
pub struct EmptySecret;

/// The scope that opens the admin routes (`/v1/admin/...`).
pub const ADMIN_SCOPE: &str = "messages:admin";

/// A verified caller: the account, and the scopes its token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account: AccountId,
    /// The `scope` claim, split on spaces (OAuth 2.0, RFC 8693 §4.2).
    pub scopes: Vec<String>,
}

impl Caller {
    /// `scope` is a space separated list, as JWTs carry it.
    pub fn new(account: AccountId, scope: Option<&str>) -> Self {
        Self {
            account,
            scopes: scope
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The claims this service reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    /// Space separated scopes (`messages:admin` for the admin routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
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
    pub fn new(secret: &str) -> Result<Self, EmptySecret> {
        hs256::install();
        let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|_| EmptySecret)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self { key, validation })
    }

    /// Reads `Authorization: Bearer <token>` and returns the account.
    pub fn verify_header(&self, header: Option<&[u8]>) -> Result<AccountId, AuthError> {
        self.verify_header_caller(header).map(|c| c.account)
    }

    /// Reads `Authorization: Bearer <token>` and returns the caller.
    pub fn verify_header_caller(&self, header: Option<&[u8]>) -> Result<Caller, AuthError> {
        let raw = header.ok_or(AuthError::Missing)?;
        let raw = std::str::from_utf8(raw).map_err(|_| AuthError::NotBearer)?;
        let (scheme, token) = raw.trim().split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::NotBearer);
        }
        self.verify_caller(token.trim())
    }

    pub fn verify(&self, token: &str) -> Result<AccountId, AuthError> {
        self.verify_caller(token).map(|c| c.account)
    }

    /// Verifies a token and returns its account and scopes.
    pub fn verify_caller(&self, token: &str) -> Result<Caller, AuthError> {
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
        let account = account_from_sub(&data.claims.sub)?;
        Ok(Caller::new(account, data.claims.scope.as_deref()))
    }
}

/// The account from a `sub` claim (verified by us or by the authorizer).
pub fn account_from_sub(sub: &str) -> Result<AccountId, AuthError> {
    AccountId::parse(sub).map_err(|e| AuthError::BadSubject(e.0))
}

/// Signs a local development token (`make token`, tests, the dev curl).
pub fn sign(secret: &str, sub: &str, now_secs: u64, ttl_secs: u64) -> Result<String, AuthError> {
    sign_with_scope(secret, sub, None, now_secs, ttl_secs)
}

/// [`sign`] with a `scope` claim (`make token SCOPE=messages:admin`).
pub fn sign_with_scope(
    secret: &str,
    sub: &str,
    scope: Option<&str>,
    now_secs: u64,
    ttl_secs: u64,
) -> Result<String, AuthError> {
    hs256::install();
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now_secs + ttl_secs,
        scope: scope.map(str::to_owned),
        nbf: Some(now_secs),
        iat: Some(now_secs),
    };
    let key = EncodingKey::from_secret(secret.as_bytes())
        .map_err(|_| AuthError::Invalid(EmptySecret.to_string()))?;
    encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| AuthError::Invalid(e.to_string()))
}

/// The one algorithm this service signs and verifies, as jsonwebtoken's
/// crypto provider: HMAC-SHA256 from RustCrypto's `hmac` and `sha2`. The
/// crate's own providers would bring aws-lc-rs (a C build) or RSA, ECDSA and
/// EdDSA that nothing here uses. Any other algorithm is refused.
mod hs256 {
    use hmac::{Hmac, KeyInit, Mac};
    use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
    use jsonwebtoken::errors::{ErrorKind, Result};
    use jsonwebtoken::signature::{self, Signer, Verifier};
    use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
    use sha2::Sha256;

    type HmacSha256 = Hmac<Sha256>;

    static PROVIDER: CryptoProvider = CryptoProvider {
        signer_factory,
        verifier_factory,
        key_utils: KeyUtils::new_unimplemented(),
    };

    /// Makes HS256 jsonwebtoken's process-wide provider; idempotent.
    pub(super) fn install() {
        // An Err means a provider is already installed, which is this one:
        // nothing else in the process installs any.
        let _ = PROVIDER.install_default();
    }

    fn hmac(algorithm: Algorithm, family: AlgorithmFamily, key: &[u8]) -> Result<HmacSha256> {
        if algorithm != Algorithm::HS256 {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        if family != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        HmacSha256::new_from_slice(key).map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }

    fn signer_factory(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
        Ok(Box::new(Hs256(hmac(
            *algorithm,
            key.family(),
            key.as_bytes(),
        )?)))
    }

    fn verifier_factory(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
        Ok(Box::new(Hs256(hmac(
            *algorithm,
            key.family(),
            key.try_get_as_bytes()?,
        )?)))
    }

    struct Hs256(HmacSha256);

    impl Signer<Vec<u8>> for Hs256 {
        fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
            let mut mac = self.0.clone();
            mac.update(msg);
            Ok(mac.finalize().into_bytes().to_vec())
        }
    }

    impl Verifier<Vec<u8>> for Hs256 {
        fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
            let mut mac = self.0.clone();
            mac.update(msg);
            // Constant time, as `Mac::verify_slice` promises.
            mac.verify_slice(sig).map_err(|_| signature::Error::new())
        }
    }

    impl JwtSigner for Hs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::HS256
        }
    }

    impl JwtVerifier for Hs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::HS256
        }
    }
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
        let v = Verifier::new(S).unwrap();
        assert_eq!(v.verify(&t).unwrap().as_str(), "acct_1");
        let h = format!("Bearer {t}");
        assert_eq!(
            v.verify_header(Some(h.as_bytes())).unwrap().as_str(),
            "acct_1"
        );
    }

    #[test]
    fn scopes_are_read_from_the_space_separated_claim() {
        let v = Verifier::new(S).unwrap();
        let t =
            sign_with_scope(S, "ops", Some("messages:read  messages:admin"), now(), 60).unwrap();
        let c = v.verify_caller(&t).unwrap();
        assert_eq!(c.account.as_str(), "ops");
        assert!(c.has_scope(ADMIN_SCOPE));
        assert!(!c.has_scope("messages"));
        let plain = v
            .verify_caller(&sign(S, "ops", now(), 60).unwrap())
            .unwrap();
        assert!(plain.scopes.is_empty());
        assert!(!Caller::new(c.account, Some("messages:administrator")).has_scope(ADMIN_SCOPE));
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let v = Verifier::new(S).unwrap();
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
    fn hs256_matches_the_rfc_7515_example() {
        // RFC 7515, appendix A.1: the HS256 example JWS and its key.
        super::hs256::install();
        let message = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\
                       eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let key = DecodingKey::from_base64_secret(
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ+EstJQLr/T+1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow==",
        )
        .unwrap();
        let good = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let verify =
            |sig: &str, alg| jsonwebtoken::crypto::verify(sig, message.as_bytes(), &key, alg);
        assert!(verify(good, Algorithm::HS256).unwrap());
        let flipped = "eBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(!verify(flipped, Algorithm::HS256).unwrap());
        // Only HS256 is provided: any other algorithm is an error, not a pass.
        assert!(verify(good, Algorithm::HS384).is_err());
        assert!(verify(good, Algorithm::RS256).is_err());
    }

    #[test]
    fn a_token_of_another_algorithm_is_refused() {
        let v = Verifier::new(S).unwrap();
        let t = sign(S, "acct_1", now(), 3600).unwrap();
        let (_, rest) = t.split_once('.').unwrap();
        // {"typ":"JWT","alg":"HS384"} and {"alg":"none"} over the same payload.
        for header in [
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzM4NCJ9",
            "eyJhbGciOiJub25lIn0",
        ] {
            let forged = format!("{header}.{rest}");
            assert!(
                matches!(v.verify(&forged), Err(AuthError::Invalid(_))),
                "{header}"
            );
        }
    }

    #[test]
    fn an_empty_secret_is_refused_up_front() {
        assert_eq!(Verifier::new("").err(), Some(EmptySecret));
        assert!(matches!(
            sign("", "acct_1", now(), 60),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn tampered_payload_is_refused() {
        let t = sign(S, "acct_1", now(), 3600).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let forged = sign("x", "acct_2", now(), 3600).unwrap();
        let forged_payload = forged.split('.').nth(1).unwrap();
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(Verifier::new(S).unwrap().verify(&tampered).is_err());
    }
}
