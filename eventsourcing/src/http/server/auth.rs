//! Bearer tokens: which applications a client may read. Without tokens,
//! every client reads every application served.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use super::respond::ApiError;

/// The tokens a server knows, each with the applications it may read.
#[derive(Clone, Default)]
pub(super) struct Tokens(Arc<Vec<(String, BTreeSet<String>)>>);

/// The applications a request may read.
pub(super) enum Client<'a> {
    /// No tokens are required: all of them.
    Anyone,
    /// Those of the request's token.
    Only(&'a BTreeSet<String>),
}

impl Client<'_> {
    pub(super) fn may_read(&self, app: &str) -> bool {
        match self {
            Client::Anyone => true,
            Client::Only(apps) => apps.contains(app),
        }
    }
}

impl Tokens {
    /// These tokens, with `token` also reading `apps`.
    pub(super) fn with(&self, token: String, apps: impl IntoIterator<Item = String>) -> Self {
        let mut tokens = (*self.0).clone();
        match tokens.iter_mut().find(|(known, _)| *known == token) {
            Some((_, readable)) => readable.extend(apps),
            None => tokens.push((token, apps.into_iter().collect())),
        }
        Self(Arc::new(tokens))
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// What the request with `headers` may read, or 401.
    pub(super) fn client(&self, headers: &HeaderMap) -> Result<Client<'_>, ApiError> {
        if self.0.is_empty() {
            return Ok(Client::Anyone);
        }
        let Some(given) = bearer(headers) else {
            return Err(ApiError::unauthorized(
                "this server needs a bearer token: send `Authorization: Bearer <token>`",
                "Bearer",
            ));
        };
        // Every token is compared, in time that does not depend on where
        // the given one differs, so timing tells nothing of the tokens.
        let mut found = None;
        for (token, apps) in self.0.iter() {
            if constant_time_eq(given.as_bytes(), token.as_bytes()) {
                found = Some(apps);
            }
        }
        found.map(Client::Only).ok_or_else(|| {
            ApiError::unauthorized(
                "the bearer token is not one this server knows",
                "Bearer error=\"invalid_token\"",
            )
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in
/// any case, as HTTP allows).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `a` and `b` are equal, looking at every byte whatever the
/// first difference (only the lengths are compared up front).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        headers
    }

    #[test]
    fn equal_bytes_and_only_those_compare_equal() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn a_token_reads_its_applications_only() {
        let tokens = Tokens::default()
            .with("a".to_owned(), ["dogs".to_owned()])
            .with("b".to_owned(), ["cats".to_owned()])
            .with("a".to_owned(), ["birds".to_owned()]);
        let client = tokens
            .client(&headers("bearer a"))
            .unwrap_or_else(|_| panic!("token a is known"));
        assert!(client.may_read("dogs") && client.may_read("birds") && !client.may_read("cats"));
        assert!(tokens.client(&headers("Bearer c")).is_err());
        assert!(tokens.client(&headers("Basic a")).is_err());
        assert!(tokens.client(&HeaderMap::new()).is_err());
    }

    #[test]
    fn without_tokens_anyone_reads_everything() {
        let tokens = Tokens::default();
        let client = tokens
            .client(&HeaderMap::new())
            .unwrap_or_else(|_| panic!("no token needed"));
        assert!(client.may_read("dogs"));
    }
}
