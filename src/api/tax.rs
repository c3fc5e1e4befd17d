//! `/v1/tax/declarations` (SPEC §2.6, §4): the accountant's monthly
//! withholding declaration as CSV or XLSX, live or as the schedule prepared it.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{Path, Query};
use crate::api::policy::{AccountantOrAdmin, Allowed};
use crate::api::responses::AuthRefusals;
use crate::domain::tax::Month;
use crate::engine::declaration::{DeclarationError, to_csv, to_xlsx};
use crate::state::AppState;

impl From<DeclarationError> for ApiError {
    fn from(error: DeclarationError) -> ApiError {
        match error {
            DeclarationError::Store(store) => store.into(),
            other => ApiError::internal(other),
        }
    }
}

#[utoipa::path(
    get, path = "/v1/tax/declarations/{file}", tag = "tax",
    params(("file" = String, Path, description = "`YYYY-MM.csv` or `YYYY-MM.xlsx`"), DeclarationQuery),
    responses(
        (status = 200, description = "one row per distributor paid in the month, then 合计; amounts in yuan to the fen", content(
            (String = "text/csv"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        )),
        (status = 400, description = "invalid_file, invalid_month (not a month and a known extension); invalid_field (as_prepared not a boolean)", body = ErrorBody),
        AuthRefusals,
        (status = 404, description = "as_prepared: the schedule has not prepared this month", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn declaration(
    State(state): State<AppState>,
    _caller: Allowed<AccountantOrAdmin>,
    Path(file): Path<String>,
    Query(query): Query<DeclarationQuery>,
) -> Result<Response, ApiError> {
    let invalid = || {
        ApiError::bad_request("invalid_file", "ask for YYYY-MM.csv or YYYY-MM.xlsx")
            .with_field("file")
    };
    let (month_text, extension) = file.rsplit_once('.').ok_or_else(invalid)?;
    if !matches!(extension, "csv" | "xlsx") {
        return Err(invalid());
    }
    let month = Month::parse(month_text).map_err(|error| {
        ApiError::bad_request("invalid_month", error.to_string()).with_field("file")
    })?;
    if query.as_prepared.unwrap_or(false) {
        let body = state
            .store
            .prepared_declaration_file(month, extension == "xlsx")
            .await?
            .ok_or_else(|| ApiError::not_found("prepared declaration"))?;
        return Ok(declaration_response(body, month, extension, true));
    }
    let layouts = state.declarations.layouts()?;
    let declaration = state.declarations.declaration(month).await?;
    let columns = layouts.for_method(declaration.method);
    let body = if extension == "xlsx" {
        to_xlsx(&declaration, columns)?
    } else {
        to_csv(&declaration, columns).into_bytes()
    };
    Ok(declaration_response(body, month, extension, false))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeclarationQuery {
    /// The file as the monthly schedule prepared it, rather than as the
    /// month's payouts stand now.
    pub as_prepared: Option<bool>,
}

fn declaration_response(body: Vec<u8>, month: Month, extension: &str, prepared: bool) -> Response {
    let content_type = if extension == "xlsx" {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    } else {
        "text/csv; charset=utf-8"
    };
    let suffix = if prepared { "-prepared" } else { "" };
    let disposition = format!("attachment; filename=\"declaration-{month}{suffix}.{extension}\"");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
