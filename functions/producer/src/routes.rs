//! The route table and path matching.
//!
//! [`ENDPOINTS`] is the single list of what this API answers: each route's
//! path template, method and every status the handler can return for it.
//! The handler checks in test builds that each response it produces is
//! declared here, and a unit test checks that `openapi.yaml` documents every
//! entry, so a new status cannot ship undocumented.

use http::Method;

/// A path this API serves, independent of the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `/v1/messages`
    Messages,
    /// `/v1/messages/{id}`
    Message,
    /// `/v1/status`
    Status,
    /// `/health`
    Health,
    /// `/v1/limits`: the caller's own limit.
    Limits,
    /// `/v1/admin/accounts/{accountId}/limits`: any account's limit
    /// (scope `messages:admin`).
    AccountLimits,
    /// `/v1/campaigns`
    Campaigns,
    /// `/v1/campaigns/{id}`
    Campaign,
    /// `/v1/campaigns/{id}/recipients`
    CampaignRecipients,
    /// `/v1/campaigns/{id}/messages`
    CampaignMessages,
}

impl Resource {
    /// The path as API Gateway and `openapi.yaml` spell it.
    pub const fn template(self) -> &'static str {
        match self {
            Resource::Messages => "/v1/messages",
            Resource::Message => "/v1/messages/{id}",
            Resource::Status => "/v1/status",
            Resource::Health => "/health",
            Resource::Limits => "/v1/limits",
            Resource::AccountLimits => "/v1/admin/accounts/{accountId}/limits",
            Resource::Campaigns => "/v1/campaigns",
            Resource::Campaign => "/v1/campaigns/{id}",
            Resource::CampaignRecipients => "/v1/campaigns/{id}/recipients",
            Resource::CampaignMessages => "/v1/campaigns/{id}/messages",
        }
    }
}

/// One route: a resource and a method, and every status it can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub resource: Resource,
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// Every status the handler may return here (sorted).
    pub statuses: &'static [u16],
    /// Whether a caller must authenticate.
    pub authenticated: bool,
}

/// Every route of the API.
///
/// 401 comes from authentication, 500 from a corrupt store record (a bug or
/// tampering, never a client's fault), 503 from Redis or SQS not answering or
/// intake being closed. 403 only on the admin routes (scope `messages:admin`).
pub const ENDPOINTS: [Endpoint; 14] = [
    Endpoint {
        resource: Resource::Messages,
        method: "POST",
        statuses: &[202, 400, 401, 409, 413, 415, 500, 503],
        authenticated: true,
    },
    Endpoint {
        resource: Resource::Message,
        method: "GET",
        statuses: &[200, 400, 401, 404, 500, 503],
        authenticated: true,
    },
    // Cancel: 409 once the message is `sending` or settled.
    Endpoint {
        resource: Resource::Message,
        method: "DELETE",
        statuses: &[200, 400, 401, 404, 409, 500, 503],
        authenticated: true,
    },
    Endpoint {
        resource: Resource::Status,
        method: "GET",
        statuses: &[200, 401, 503],
        authenticated: true,
    },
    Endpoint {
        resource: Resource::Health,
        method: "GET",
        statuses: &[200, 503],
        authenticated: false,
    },
    Endpoint {
        resource: Resource::Limits,
        method: "GET",
        statuses: &[200, 401, 503],
        authenticated: true,
    },
    Endpoint {
        resource: Resource::AccountLimits,
        method: "GET",
        statuses: &[200, 400, 401, 403, 503],
        authenticated: true,
    },
    Endpoint {
        resource: Resource::AccountLimits,
        method: "PUT",
        statuses: &[200, 400, 401, 403, 413, 415, 503],
        authenticated: true,
    },
    Endpoint {
        resource: Resource::AccountLimits,
        method: "DELETE",
        statuses: &[200, 400, 401, 403, 503],
        authenticated: true,
    },
    // 409: the Idempotency-Key was used with another body, or is in progress.
    Endpoint {
        resource: Resource::Campaigns,
        method: "POST",
        statuses: &[202, 400, 401, 409, 413, 415, 500, 503],
        authenticated: true,
    },
    // 409: the campaign is cancelled.
    Endpoint {
        resource: Resource::CampaignRecipients,
        method: "POST",
        statuses: &[202, 400, 401, 404, 409, 413, 415, 500, 503],
        authenticated: true,
    },
    Endpoint {
        resource: Resource::Campaign,
        method: "GET",
        statuses: &[200, 400, 401, 404, 500, 503],
        authenticated: true,
    },
    Endpoint {
        resource: Resource::Campaign,
        method: "DELETE",
        statuses: &[200, 400, 401, 404, 500, 503],
        authenticated: true,
    },
    Endpoint {
        resource: Resource::CampaignMessages,
        method: "GET",
        statuses: &[200, 400, 401, 404, 500, 503],
        authenticated: true,
    },
];

/// Statuses answered outside any route: (status, name of the shared response
/// in `openapi.yaml`'s `components.responses`).
pub const FALLBACK_STATUSES: [(u16, &str); 2] = [(404, "RouteNotFound"), (405, "MethodNotAllowed")];

/// What a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched<'a> {
    pub resource: Resource,
    /// The `{id}` segment of `/v1/messages/{id}` (or the `{accountId}` of
    /// the admin routes), still unparsed.
    pub id: Option<&'a str>,
}

/// The outcome of routing one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing<'a> {
    Found(&'static Endpoint, Option<&'a str>),
    /// The path exists, the method does not; `allow` lists the methods.
    MethodNotAllowed {
        resource: Resource,
        allow: &'static str,
    },
    NotFound,
}

/// Strips what sits in front of the API's own path:
/// - `cargo lambda watch` serves HTTP functions under `/lambda-url/<name>/`;
/// - an API Gateway HTTP API stage other than `$default` is the first
///   segment of `rawPath`.
///
/// A trailing slash is ignored (`/v1/status/` is `/v1/status`).
pub fn normalize<'a>(raw: &'a str, stage: Option<&str>) -> &'a str {
    let mut path = raw;
    if let Some(rest) = path.strip_prefix("/lambda-url/") {
        path = rest.find('/').map_or("/", |i| &rest[i..]);
    }
    if let Some(stage) = stage.filter(|s| !s.is_empty() && *s != "$default")
        && let Some(rest) = path.strip_prefix('/').and_then(|p| p.strip_prefix(stage))
        && (rest.is_empty() || rest.starts_with('/'))
    {
        path = if rest.is_empty() { "/" } else { rest };
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

/// Which resource a normalised path names, if any.
pub fn match_path(path: &str) -> Option<Matched<'_>> {
    let resource = |resource| Some(Matched { resource, id: None });
    match path {
        "/v1/messages" => resource(Resource::Messages),
        "/v1/status" => resource(Resource::Status),
        "/health" => resource(Resource::Health),
        "/v1/limits" => resource(Resource::Limits),
        "/v1/campaigns" => resource(Resource::Campaigns),
        _ => {
            let segment = |id: &&str| !id.is_empty() && !id.contains('/');
            let message = path
                .strip_prefix("/v1/messages/")
                .filter(segment)
                .map(|id| Matched {
                    resource: Resource::Message,
                    id: Some(id),
                });
            let campaign = || {
                let rest = path.strip_prefix("/v1/campaigns/")?;
                let (id, resource) = match rest.split_once('/') {
                    None => (rest, Resource::Campaign),
                    Some((id, "recipients")) => (id, Resource::CampaignRecipients),
                    Some((id, "messages")) => (id, Resource::CampaignMessages),
                    Some(_) => return None,
                };
                segment(&id).then_some(Matched {
                    resource,
                    id: Some(id),
                })
            };
            message.or_else(campaign).or_else(|| {
                path.strip_prefix("/v1/admin/accounts/")?
                    .strip_suffix("/limits")
                    .filter(segment)
                    .map(|id| Matched {
                        resource: Resource::AccountLimits,
                        id: Some(id),
                    })
            })
        }
    }
}

/// The `Allow` header value of a resource.
pub const fn allow(resource: Resource) -> &'static str {
    match resource {
        Resource::Messages => "POST",
        Resource::Message => "GET, DELETE",
        Resource::Status | Resource::Health | Resource::Limits => "GET",
        Resource::AccountLimits => "GET, PUT, DELETE",
        Resource::Campaigns | Resource::CampaignRecipients => "POST",
        Resource::Campaign => "GET, DELETE",
        Resource::CampaignMessages => "GET",
    }
}

/// Routes a request.
pub fn route<'a>(method: &Method, path: &'a str, stage: Option<&str>) -> Routing<'a> {
    let Some(matched) = match_path(normalize(path, stage)) else {
        return Routing::NotFound;
    };
    match ENDPOINTS
        .iter()
        .find(|e| e.resource == matched.resource && e.method == method.as_str())
    {
        Some(endpoint) => Routing::Found(endpoint, matched.id),
        None => Routing::MethodNotAllowed {
            resource: matched.resource,
            allow: allow(matched.resource),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_stripped() {
        assert_eq!(
            normalize("/lambda-url/producer/v1/messages", None),
            "/v1/messages"
        );
        assert_eq!(normalize("/lambda-url/producer", None), "/");
        assert_eq!(normalize("/v1/messages", Some("$default")), "/v1/messages");
        assert_eq!(normalize("/prod/v1/messages", Some("prod")), "/v1/messages");
        assert_eq!(normalize("/production/v1", Some("prod")), "/production/v1");
        assert_eq!(normalize("/v1/status/", None), "/v1/status");
        assert_eq!(normalize("", None), "/");
    }

    #[test]
    fn paths_match_resources() {
        assert_eq!(
            match_path("/v1/messages").map(|m| m.resource),
            Some(Resource::Messages)
        );
        assert_eq!(
            match_path("/v1/messages/abc"),
            Some(Matched {
                resource: Resource::Message,
                id: Some("abc")
            })
        );
        assert_eq!(match_path("/v1/messages/a/b"), None);
        assert_eq!(
            match_path("/v1/limits").map(|m| m.resource),
            Some(Resource::Limits)
        );
        assert_eq!(
            match_path("/v1/admin/accounts/acct_9/limits"),
            Some(Matched {
                resource: Resource::AccountLimits,
                id: Some("acct_9")
            })
        );
        assert_eq!(match_path("/v1/admin/accounts//limits"), None);
        assert_eq!(match_path("/v1/admin/accounts/a/b/limits"), None);
        assert_eq!(match_path("/v1/admin/accounts/a"), None);
        assert_eq!(match_path("/v1/statuses"), None);
        assert_eq!(
            match_path("/v1/campaigns").map(|m| m.resource),
            Some(Resource::Campaigns)
        );
        for (path, resource) in [
            ("/v1/campaigns/c1", Resource::Campaign),
            ("/v1/campaigns/c1/recipients", Resource::CampaignRecipients),
            ("/v1/campaigns/c1/messages", Resource::CampaignMessages),
        ] {
            assert_eq!(
                match_path(path),
                Some(Matched {
                    resource,
                    id: Some("c1")
                }),
                "{path}"
            );
        }
        assert_eq!(match_path("/v1/campaigns//messages"), None);
        assert_eq!(match_path("/v1/campaigns/c1/other"), None);
        assert_eq!(match_path("/v1/campaigns/c1/messages/x"), None);
        assert_eq!(match_path("/"), None);
    }

    #[test]
    fn methods_are_checked() {
        assert!(
            matches!(route(&Method::POST, "/v1/messages", None), Routing::Found(e, None) if e.method == "POST")
        );
        assert_eq!(
            route(&Method::GET, "/v1/messages", None),
            Routing::MethodNotAllowed {
                resource: Resource::Messages,
                allow: "POST"
            }
        );
        assert_eq!(route(&Method::GET, "/nope", None), Routing::NotFound);
    }

    #[test]
    fn only_health_is_unauthenticated() {
        // The handler authenticates every route but /health.
        for e in ENDPOINTS {
            assert_eq!(e.authenticated, e.resource != Resource::Health, "{e:?}");
        }
    }

    #[test]
    fn allow_agrees_with_the_table() {
        for r in [
            Resource::Messages,
            Resource::Message,
            Resource::Status,
            Resource::Health,
            Resource::Limits,
            Resource::AccountLimits,
            Resource::Campaigns,
            Resource::Campaign,
            Resource::CampaignRecipients,
            Resource::CampaignMessages,
        ] {
            let methods: Vec<&str> = ENDPOINTS
                .iter()
                .filter(|e| e.resource == r)
                .map(|e| e.method)
                .collect();
            assert_eq!(methods.join(", "), allow(r));
        }
    }
}
