//! The API's one error shape: `{"error": {"code", "message", "field"}}` with
//! the right status. A 5xx never echoes internals: they go to the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::plans::ApplyPlanError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: clients branch on it.
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, as a path (`items[0].amount`), when there is one.
    pub field: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// 400: the request is not well-formed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no token, or a token we do not know.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: a valid token without the right to this.
    pub fn forbidden() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may not do that",
        )
    }

    /// 404.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409: a duplicate with a different body.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// 422: well-formed, refused by a rule.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 500, logged with its cause and answered without it.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    /// 503: a dependency (the database) is unavailable.
    pub fn unavailable(cause: impl std::fmt::Display) -> ApiError {
        tracing::warn!(error = %cause, "dependency unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "service unavailable",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Conflict { .. } => ApiError::conflict("conflict", error.to_string()),
            StoreError::IdempotencyConflict { .. } => {
                ApiError::conflict("idempotency_conflict", error.to_string())
            }
            StoreError::NotFound { what, .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
                    .with_field(what)
            }
            StoreError::InsufficientFunds { .. } => {
                ApiError::unprocessable("insufficient_balance", error.to_string())
            }
            StoreError::BalanceOverflow { .. } => {
                ApiError::unprocessable("balance_overflow", error.to_string())
            }
            StoreError::Database(sqlx::Error::PoolTimedOut)
            | StoreError::CalendarChanged { .. }
            | StoreError::WriterRace(_) => ApiError::unavailable(error),
            StoreError::Corrupt(_)
            | StoreError::Queue(_)
            | StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::UnsafePlan(_) => ApiError::internal(error),
        }
    }
}

impl From<ApplyPlanError> for ApiError {
    fn from(error: ApplyPlanError) -> ApiError {
        match error {
            ApplyPlanError::Invalid(_) => {
                ApiError::unprocessable("invalid_plan", error.to_string())
            }
            ApplyPlanError::EffectiveInPast { .. } => {
                ApiError::unprocessable("plan_effective_in_past", error.to_string())
                    .with_field("effective_from")
            }
            ApplyPlanError::Store(store) => store.into(),
        }
    }
}
