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

/// `content`'s `pattern` in `openapi.yaml` is exactly the server's rule "not
/// only whitespace" (`Content::parse`: `char::is_whitespace`, Unicode's
/// White_Space): a class of every whitespace character, negated. Rebuilt
/// here from `char::is_whitespace` over all of Unicode and compared as text,
/// so the document cannot drift from the rule (ECMA-262's `\S` would: it
/// differs on U+0085 and U+FEFF).
#[test]
fn openapi_content_pattern_is_the_whitespace_rule() {
    use yaml_rust2::YamlLoader;
    let docs = YamlLoader::load_from_str(include_str!("../../../../openapi.yaml")).unwrap();
    let declared =
        docs[0]["components"]["schemas"]["NewMessage"]["properties"]["content"]["pattern"]
            .as_str()
            .map(str::to_owned);
    let escape = |c: char| match u32::from(c) {
        n @ 0..=0xFF => format!("\\x{n:02X}"),
        n => format!("\\u{n:04X}"),
    };
    let spaces: Vec<char> = (0..=u32::from(char::MAX))
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace())
        .collect();
    let mut class = String::new();
    let mut i = 0;
    while i < spaces.len() {
        let mut j = i;
        while j + 1 < spaces.len() && u32::from(spaces[j + 1]) == u32::from(spaces[j]) + 1 {
            j += 1;
        }
        if j - i >= 2 {
            class.push_str(&format!("{}-{}", escape(spaces[i]), escape(spaces[j])));
        } else {
            spaces[i..=j]
                .iter()
                .for_each(|c| class.push_str(&escape(*c)));
        }
        i = j + 1;
    }
    assert_eq!(declared, Some(format!("[^{class}]")));
    // And the rule itself: whitespace-only content is refused.
    assert!(shared::message::Content::parse("\u{85}\u{3000} \t").is_err());
    assert!(shared::message::Content::parse("\u{FEFF}").is_ok());
}
