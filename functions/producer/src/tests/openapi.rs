//! `openapi.yaml` against the route table.

use super::*;

// ---------------------------------------------------------------- openapi.yaml

/// Every (route, method, status) the handler can answer, from the route
/// table the handler enforces, is documented in `openapi.yaml`.
#[test]
fn openapi_documents_every_route_method_and_status() {
    use yaml_rust2::{Yaml, YamlLoader};
    let docs = YamlLoader::load_from_str(include_str!("../../../../openapi.yaml")).unwrap();
    let doc = &docs[0];
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.1")),
        Some(true)
    );
    let has_key = |map: &Yaml, status: u16| {
        map.as_hash().is_some_and(|h| {
            h.contains_key(&Yaml::String(status.to_string()))
                || h.contains_key(&Yaml::Integer(i64::from(status)))
        })
    };
    let paths = &doc["paths"];
    for e in ENDPOINTS {
        let op = &paths[e.resource.template()][e.method.to_ascii_lowercase().as_str()];
        assert!(
            !op.is_badvalue(),
            "openapi.yaml lacks {} {}",
            e.method,
            e.resource.template()
        );
        for status in e.statuses {
            assert!(
                has_key(&op["responses"], *status),
                "openapi.yaml lacks status {status} for {} {}",
                e.method,
                e.resource.template()
            );
        }
        // Authenticated operations inherit the global bearer requirement;
        // /health opts out with an empty list.
        let security = &op["security"];
        if e.authenticated {
            assert!(
                security.is_badvalue() || security.as_vec().is_some_and(|v| !v.is_empty()),
                "{} {} must require the bearer token",
                e.method,
                e.resource.template()
            );
        } else {
            assert_eq!(
                security.as_vec().map(Vec::len),
                Some(0),
                "{} must need no auth",
                e.resource.template()
            );
        }
    }
    assert!(
        !doc["security"].is_badvalue(),
        "no global security requirement"
    );
    assert!(!doc["components"]["securitySchemes"]["bearerAuth"].is_badvalue());
    for (status, name) in FALLBACK_STATUSES {
        let r = &doc["components"]["responses"][name];
        assert!(
            !r.is_badvalue(),
            "openapi.yaml lacks components.responses.{name} ({status})"
        );
    }
    // And nothing documented that the table does not know.
    for (path, ops) in paths.as_hash().unwrap() {
        for (method, _) in ops.as_hash().unwrap() {
            let (path, method) = (path.as_str().unwrap(), method.as_str().unwrap());
            if method == "parameters" {
                continue;
            }
            assert!(
                ENDPOINTS
                    .iter()
                    .any(|e| e.resource.template() == path && e.method.eq_ignore_ascii_case(method)),
                "openapi.yaml documents {method} {path}, which the handler does not serve"
            );
        }
    }
}
