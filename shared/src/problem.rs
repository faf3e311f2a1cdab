//! RFC 9457 problem details: the body of every error the HTTP API returns.

use serde::Serialize;

/// Media type of every error response.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON name of the field (`mediaUrls[2]` for an element).
    pub field: String,
    /// What is wrong and what is expected; never echoes the value.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A problem details document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem; stable, so clients may switch on it.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary of the kind.
    pub title: String,
    /// The HTTP status, repeated for clients that only see the body.
    pub status: u16,
    /// What went wrong this time and what to do about it.
    pub detail: String,
    /// For 400: every invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Base of the problem `type` URIs.
pub const TYPE_BASE: &str = "https://outbound-messages.dev/problems/";

impl Problem {
    pub fn new(status: u16, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{TYPE_BASE}{slug}"),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serialises.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}
