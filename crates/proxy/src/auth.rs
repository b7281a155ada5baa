//! Who is asking: a client by its key, or the operator by theirs. Keys are stored hashed
//! and compared in full, so timing says nothing about which key is close.

use axum::http::{HeaderMap, header};

use crate::api_error::ApiError;
use crate::config::hash_key;
use crate::state::{Client, ProxyState};

/// The key presented: `Authorization: Bearer KEY` or `x-api-key: KEY`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Compares two hex hashes in constant time.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl ProxyState {
    /// The client whose key `headers` carry.
    pub(crate) fn client(&self, headers: &HeaderMap) -> Result<&Client, ApiError> {
        let hash = hash_key(presented(headers).ok_or(ApiError::Unauthorized)?);
        let mut found = None;
        for c in &self.clients {
            if same(&c.key_sha256, &hash) {
                found = Some(c);
            }
        }
        found.ok_or(ApiError::Unauthorized)
    }

    /// Checks that `headers` carry the operator's key.
    pub(crate) fn operator(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.operator_key_sha256 else {
            return Err(ApiError::Operator { enabled: false });
        };
        match presented(headers) {
            Some(p) if same(key, &hash_key(p)) => Ok(()),
            _ => Err(ApiError::Operator { enabled: true }),
        }
    }
}
