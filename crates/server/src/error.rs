//! The one place where errors become HTTP statuses and Prometheus `errorType`s. For remote
//! write senders the status decides whether they retry: 4xx never, 5xx and 429 yes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or invalid (400 bad_data).
    #[error("{0}")]
    BadData(String),
    /// The query could not be executed (422 execution).
    #[error("{0}")]
    Execution(String),
    /// 503 timeout.
    #[error("{0}")]
    Timeout(String),
    /// 503 canceled: the query was stopped (its client went away).
    #[error("{0}")]
    Canceled(String),
    /// 503 unavailable: not ready yet (WAL replay) or shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// 413: the body is larger than the named limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: content type, encoding or message not supported.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: a limit rejected the request; retry later.
    #[error("{0}")]
    TooManyRequests(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// A server-side fault (disk, WAL, object store): 500, senders retry.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadData(_) => StatusCode::BAD_REQUEST,
            ApiError::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Timeout(_) | ApiError::Canceled(_) | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::BadData(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType(_) => "bad_data",
            ApiError::Execution(_) | ApiError::TooManyRequests(_) => "execution",
            ApiError::Timeout(_) => "timeout",
            ApiError::Canceled(_) => "canceled",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotFound(_) => "not_found",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<model::SeamError> for ApiError {
    fn from(e: model::SeamError) -> Self {
        match e {
            model::SeamError::Storage(m) => ApiError::Internal(m),
            model::SeamError::Limit(m) => ApiError::Execution(m),
            model::SeamError::Canceled => ApiError::Canceled("query canceled".into()),
        }
    }
}

impl From<promql::Error> for ApiError {
    fn from(e: promql::Error) -> Self {
        match e {
            promql::Error::Parse(_)
            | promql::Error::InvalidQuery(_)
            | promql::Error::TestScript { .. } => ApiError::BadData(e.to_string()),
            promql::Error::Execution(_) | promql::Error::TooManySamples(_) => {
                ApiError::Execution(e.to_string())
            }
            promql::Error::Timeout(_) => ApiError::Timeout(e.to_string()),
            promql::Error::Canceled => ApiError::Canceled(e.to_string()),
            promql::Error::Storage(s) => s.into(),
        }
    }
}

impl From<storage::StorageError> for ApiError {
    fn from(e: storage::StorageError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "status": "error",
            "errorType": self.error_type(),
            "error": self.to_string(),
        });
        if self.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (self.status(), axum::Json(body)).into_response()
    }
}
