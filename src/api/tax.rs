//! `/v1/tax` (SPEC §2.6, §4): the accountant's monthly withholding
//! declaration as CSV or XLSX.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::Caller;
use crate::app::AppState;
use crate::declaration::{Declaration, DeclarationError, Layouts, to_csv, to_xlsx};
use crate::domain::access::Role;
use crate::domain::tax::Month;

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
    params(("file" = String, Path, description = "`YYYY-MM.csv` or `YYYY-MM.xlsx`")),
    responses(
        (status = 200, description = "one row per distributor paid in the month, then 合计; amounts in yuan to the fen", content_type = "text/csv"),
        (status = 400, description = "not a month and a known extension", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn declaration(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Accountant, Role::Admin])?;
    let (month_text, extension) = file.rsplit_once('.').ok_or_else(|| {
        ApiError::bad_request("invalid_file", "ask for YYYY-MM.csv or YYYY-MM.xlsx")
            .with_field("file")
    })?;
    let month = Month::parse(month_text).map_err(|error| {
        ApiError::bad_request("invalid_month", error.to_string()).with_field("file")
    })?;
    let settings = &state.settings;
    let layouts = match std::fs::read_to_string(settings.workflows_dir.join("declaration.toml")) {
        Ok(text) => Layouts::parse(&text, "workflows/declaration.toml")?,
        Err(_) => Layouts::shipped(),
    };
    let declaration = Declaration::prepare(
        &state.store,
        &state.vault,
        month,
        settings.withholding_method,
        &settings.withholding_agent_name,
        &settings.withholding_agent_tin,
    )
    .await?;
    let columns = layouts.for_method(declaration.method);
    let (body, content_type) = match extension {
        "csv" => (
            to_csv(&declaration, columns).into_bytes(),
            "text/csv; charset=utf-8",
        ),
        "xlsx" => (
            to_xlsx(&declaration, columns)?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_file",
                "ask for YYYY-MM.csv or YYYY-MM.xlsx",
            )
            .with_field("file"));
        }
    };
    let disposition = format!("attachment; filename=\"declaration-{month}.{extension}\"");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
