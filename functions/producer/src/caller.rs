//! Who is calling.
//!
//! In AWS the HTTP API's JWT authorizer has verified the token before the
//! function runs and passes its claims in the request context; the account
//! is the claims' `sub`. Without such claims (locally, under
//! `cargo lambda watch`) the producer verifies `Authorization: Bearer <JWT>`
//! itself, unless `AUTH_REQUIRE_AUTHORIZER` forbids trusting anything but the
//! authorizer.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use shared::auth::{AuthError, Caller, Verifier, account_from_sub};

/// Why a caller was refused, and whether they presented a token at all
/// (RFC 6750: `error="invalid_token"` only when one was presented).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Unauthorized {
    pub reason: AuthError,
    pub token_presented: bool,
}

impl Unauthorized {
    fn new(reason: AuthError) -> Self {
        let token_presented = !matches!(
            reason,
            AuthError::Missing | AuthError::NotBearer | AuthError::NoAuthorizer
        );
        Self {
            reason,
            token_presented,
        }
    }
}

/// The `sub` claim an API Gateway JWT authorizer verified, if any.
pub fn authorizer_sub(req: &Request) -> Option<&str> {
    authorizer_claim(req, "sub")
}

/// One claim an API Gateway JWT authorizer verified, if any.
fn authorizer_claim<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx
            .authorizer
            .as_ref()?
            .jwt
            .as_ref()?
            .claims
            .get(name)
            .map(String::as_str),
        _ => None,
    }
}

/// The caller: its account and the scopes its token grants. Behind an
/// authorizer the scopes are read from the verified `scope` claim: the
/// route's `AuthorizationScopes` already refused a token without the admin
/// scope, and the handler checks again (defence in depth: a route
/// deployed without the scope, or a template edit, still cannot open the
/// admin routes to every caller).
pub fn authenticate(
    verifier: &Verifier,
    require_authorizer: bool,
    req: &Request,
) -> Result<Caller, Unauthorized> {
    if let Some(sub) = authorizer_sub(req) {
        let account = account_from_sub(sub).map_err(Unauthorized::new)?;
        return Ok(Caller::new(account, authorizer_claim(req, "scope")));
    }
    if require_authorizer {
        return Err(Unauthorized::new(AuthError::NoAuthorizer));
    }
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    verifier
        .verify_header_caller(header)
        .map_err(Unauthorized::new)
}
