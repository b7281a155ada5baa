//! [`ApiError`]: every error a client can get, as one JSON shape
//! `{"error": {"code", "message", …}}` with its HTTP status.

use std::time::Duration;

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    /// No or unknown client key (401).
    Unauthorized,
    /// The operator key is needed (401), or operator endpoints are off (404).
    Operator {
        /// Whether an operator key is configured at all.
        enabled: bool,
    },
    /// The client's request rate is spent (429).
    RateLimited {
        /// When to try again.
        retry_after: Duration,
    },
    /// The client has its most requests in flight already (429).
    TooManyInFlight(String),
    /// Parameters or body the proxy will not take (400).
    BadRequest {
        /// Machine-readable code (`bad_params`, `bad_image`, `no_denoiser`, …).
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The body or the image is larger than allowed (413).
    TooLarge(String),
    /// The body did not arrive in time (408).
    BodyTimeout(f64),
    /// The client's budget cannot hold the request's worst case (402).
    BudgetExhausted {
        /// What the request may cost.
        worst_usd: f64,
        /// What is left.
        remaining_usd: f64,
    },
    /// The provider's own budget ran out mid-request (402).
    ProviderBudget(String),
    /// The provider failed (502).
    ProviderFailed(String),
    /// The proxy's memory for requests in flight is taken (503).
    Busy(String),
    /// No such route (404).
    NotFound,
    /// The route exists, the method does not (405).
    MethodNotAllowed,
}

impl ApiError {
    /// A 400 with `code`.
    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Operator { enabled: true } => StatusCode::UNAUTHORIZED,
            ApiError::Operator { enabled: false } | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::RateLimited { .. } | ApiError::TooManyInFlight(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::BudgetExhausted { .. } | ApiError::ProviderBudget(_) => {
                StatusCode::PAYMENT_REQUIRED
            }
            ApiError::ProviderFailed(_) => StatusCode::BAD_GATEWAY,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Operator { enabled: true } => "operator_key_needed",
            ApiError::Operator { enabled: false } | ApiError::NotFound => "not_found",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooManyInFlight(_) => "too_many_in_flight",
            ApiError::BadRequest { code, .. } => code,
            ApiError::TooLarge(_) => "too_large",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::BudgetExhausted { .. } => "budget_exhausted",
            ApiError::ProviderBudget(_) => "provider_budget_exhausted",
            ApiError::ProviderFailed(_) => "provider_failed",
            ApiError::Busy(_) => "busy",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Unauthorized => {
                "a valid API key is needed (Authorization: Bearer KEY, or x-api-key)".into()
            }
            ApiError::Operator { enabled: true } => {
                "the operator key is needed (Authorization: Bearer KEY)".into()
            }
            ApiError::Operator { enabled: false } | ApiError::NotFound => "no such route".into(),
            ApiError::RateLimited { .. } => "too many requests".into(),
            ApiError::BadRequest { message, .. }
            | ApiError::TooLarge(message)
            | ApiError::ProviderBudget(message)
            | ApiError::ProviderFailed(message)
            | ApiError::TooManyInFlight(message)
            | ApiError::Busy(message) => message.clone(),
            ApiError::BodyTimeout(s) => format!("the request body did not arrive within {s} s"),
            ApiError::BudgetExhausted {
                worst_usd,
                remaining_usd,
            } => format!(
                "this request may cost ${worst_usd:.4}; ${remaining_usd:.4} of the client's budget is left"
            ),
            ApiError::MethodNotAllowed => "method not allowed on this route".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code(), "message": self.message()});
        if let ApiError::BudgetExhausted { remaining_usd, .. } = &self {
            body["remaining_usd"] = json!(remaining_usd);
        }
        let mut response = (self.status(), Json(json!({ "error": body }))).into_response();
        if let ApiError::RateLimited { retry_after } = &self
            && let Ok(v) = (retry_after.as_secs() + 1).to_string().parse()
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}
