//! What the server answers: JSON bodies, error statuses, cache headers and
//! entity tags, and a log line per request.

use std::hash::{Hash, Hasher};

use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::LogServer;
use crate::Error;
use crate::http::wire::ErrorJson;
use crate::process::worker::error_chain;

/// For a full section with a next one: it never changes.
pub(super) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For a section that may still grow: caches must ask again each time.
pub(super) const REVALIDATE: &str = "no-cache";
/// For long-poll answers: not worth keeping.
pub(super) const NO_STORE: &str = "no-store";

/// A refused or failed request: its status and what to say.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
    /// The `WWW-Authenticate` challenge of a 401.
    challenge: Option<&'static str>,
}

impl ApiError {
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub(super) fn unknown_app(app: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("no application `{app}` here; `GET /` lists the applications you may read"),
        )
    }

    pub(super) fn unauthorized(message: &str, challenge: &'static str) -> Self {
        Self {
            challenge: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            challenge: None,
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = match &error {
            Error::SectionId { .. } => StatusCode::BAD_REQUEST,
            Error::UnknownPartition { .. } => StatusCode::NOT_FOUND,
            // The database is unreachable for now: the client may retry.
            e if crate::process::outage::is_transient(e) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error_chain(&error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorJson { error: self.message };
        let mut response = json(self.status, NO_STORE, &body);
        if let Some(challenge) = self.challenge {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// `value` as a JSON response with `status` and `cache_control`.
pub(super) fn json(status: StatusCode, cache_control: &'static str, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_bytes(status, cache_control, body),
        Err(e) => ApiError::internal(format!("cannot write the answer as JSON: {e}")).into_response(),
    }
}

fn json_bytes(status: StatusCode, cache_control: &'static str, body: Vec<u8>) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (CACHE_CONTROL, HeaderValue::from_static(cache_control)),
    ];
    (status, headers, body).into_response()
}

/// `body` with an entity tag, or 304 with no body when the request's
/// `If-None-Match` already names that tag.
pub(super) fn tagged(request: &HeaderMap, cache_control: &'static str, body: Vec<u8>) -> Response {
    let tag = entity_tag(&body);
    let mut response = if matches_tag(request, &tag) {
        let headers = [(CACHE_CONTROL, HeaderValue::from_static(cache_control))];
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        json_bytes(StatusCode::OK, cache_control, body)
    };
    if let Ok(value) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(ETAG, value);
    }
    response
}

/// A strong entity tag: 128 bits of hash of the body, quoted. (SipHash
/// under two keys; the tags may change with the Rust release, which costs
/// caches one download, never a wrong body.)
fn entity_tag(body: &[u8]) -> String {
    let hash = |key: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        key.hash(&mut hasher);
        body.hash(&mut hasher);
        hasher.finish()
    };
    format!("\"{:016x}{:016x}\"", hash(0), hash(1))
}

/// Whether `If-None-Match` names `tag` (or is `*`). The comparison is weak,
/// as RFC 9110 says for this header: `W/"x"` matches `"x"`.
fn matches_tag(request: &HeaderMap, tag: &str) -> bool {
    request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| {
            let candidate = candidate.trim();
            candidate.strip_prefix("W/").unwrap_or(candidate)
        })
        .any(|candidate| candidate == "*" || candidate == tag)
}

/// Any route this server does not have: 404, once the client has shown
/// a token if one is needed (who has none learns nothing of the routes).
pub(super) async fn unknown_route(
    State(server): State<LogServer>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
) -> ApiError {
    if let Err(unauthorized) = server.tokens.client(&headers) {
        return unauthorized;
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {method} {}; the routes are GET /, /{{app}}, /{{app}}/sections/{{id}}, /{{app}}/partitions/{{partition}}/sections/{{id}} and /{{app}}/notifications",
            uri.path()
        ),
    )
}

/// A route asked for with another method than GET.
pub(super) async fn method_not_allowed(
    State(server): State<LogServer>,
    headers: HeaderMap,
    method: Method,
    uri: Uri,
) -> ApiError {
    if let Err(unauthorized) = server.tokens.client(&headers) {
        return unauthorized;
    }
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is read with GET, not {method}", uri.path()),
    )
}

/// Logs each request: at debug level, or as a warning when the server
/// failed it.
pub(super) async fn log_request(request: Request, next: Next) -> Response {
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(%method, %uri, %status, "log server failed a request");
    } else {
        tracing::debug!(%method, %uri, %status, "log server request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn if_none_match(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn entity_tags_are_quoted_and_differ_with_the_body() {
        let tag = entity_tag(b"{\"items\":[]}");
        assert_eq!((tag.len(), tag.starts_with('"'), tag.ends_with('"')), (34, true, true));
        assert_eq!(tag, entity_tag(b"{\"items\":[]}"));
        assert_ne!(tag, entity_tag(b"{\"items\":[1]}"));
    }

    #[test]
    fn if_none_match_matches_the_tag_in_a_list_weakly_or_star() {
        let tag = "\"abc\"";
        assert!(matches_tag(&if_none_match("\"abc\""), tag));
        assert!(matches_tag(&if_none_match("\"x\", W/\"abc\""), tag));
        assert!(matches_tag(&if_none_match("*"), tag));
        assert!(!matches_tag(&if_none_match("\"abcd\""), tag));
        assert!(!matches_tag(&HeaderMap::new(), tag));
    }

    #[test]
    fn a_transient_store_error_is_503_and_others_500_with_the_cause() {
        let lost = Error::Database {
            app: "dogs".to_owned(),
            action: "selecting notifications",
            source: Box::new(sqlx::Error::PoolTimedOut),
        };
        let refused = Error::Database {
            app: "dogs".to_owned(),
            action: "selecting notifications",
            source: Box::new(sqlx::Error::RowNotFound),
        };
        let lost = ApiError::from(lost);
        assert_eq!(lost.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            lost.message.contains("dogs") && lost.message.contains("pool timed out"),
            "{}",
            lost.message
        );
        assert_eq!(ApiError::from(refused).status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
