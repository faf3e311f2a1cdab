//! Building responses with no fallible step.
//!
//! `http::response::Builder` reports a bad header value only at `body()`;
//! here a response is built first and each header inserted on its own, so a
//! value that cannot be a header is left out instead of turning into an
//! error path (every value this crate sets is ASCII it made itself).

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use lambda_http::Body;
use serde::Serialize;

/// Media type of every successful body.
pub const JSON: &str = "application/json";

/// A response with a text body, a content type and extra headers.
pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    headers: &[(HeaderName, String)],
) -> Response<Body> {
    let mut resp = Response::new(Body::Text(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name.clone(), v);
        }
    }
    resp
}

/// A JSON response. Serialising the plain structs and `serde_json::Value`s
/// this crate uses does not fail; if it ever did, `Err` carries why.
pub fn json(
    status: StatusCode,
    value: &impl Serialize,
    headers: &[(HeaderName, String)],
) -> Result<Response<Body>, serde_json::Error> {
    serde_json::to_string(value).map(|body| text(status, JSON, body, headers))
}
