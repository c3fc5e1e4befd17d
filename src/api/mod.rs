//! The HTTP API (SPEC §4): axum routers per resource, bearer-token auth, one
//! error shape, a body size limit, and an OpenAPI document generated from the
//! handlers' annotations at `/openapi.json`.
//!
//! Every answer, including the JSON 404 and 405 for routes and methods that
//! do not exist, carries `Cache-Control: no-store` and
//! `X-Content-Type-Options: nosniff`: answers and downloads hold personal
//! data (unmasked ID numbers in certificates and declarations).

pub mod admin;
pub mod calendars;
pub mod certificates;
pub mod credentials;
pub mod distributors;
pub mod error;
pub mod extract;
pub mod health;
pub mod lifecycle;
pub mod metrics;
pub mod ops;
pub mod orders;
pub mod policy;
pub mod portal_links;
pub mod rate_limit;
pub mod reconciliation;
pub mod responses;
pub mod server;
pub mod statements;
pub mod tax;
pub mod webhooks;
pub mod withdrawals;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::{CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::routing::get;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "fenrun", description = "Payout and compliance orchestrator for social distribution commerce"),
    paths(
        distributors::create, distributors::list, distributors::get, distributors::balance,
        portal_links::create,
        credentials::put_identity, credentials::add_payout_account, credentials::list_payout_accounts,
        admin::apply_plan, admin::list_plans, admin::adjust, admin::advance_clock, admin::audit,
        admin::list_tokens, admin::revoke_token, calendars::put_year, calendars::get_year,
        orders::ingest, orders::batch::ingest, orders::refund, orders::get, orders::commissions,
        lifecycle::reinstate, lifecycle::void_commission,
        withdrawals::quote, withdrawals::create, withdrawals::get, withdrawals::list,
        withdrawals::cancel, withdrawals::approve, withdrawals::reject, withdrawals::wechat_notify, withdrawals::alipay_notify,
        tax::declaration,
        certificates::list, certificates::file, certificates::correct, certificates::keys, certificates::verify,
        ops::queues, ops::jobs, ops::retry, ops::cancel,
        statements::list, statements::get, statements::team_bonuses, statements::earnings,
        statements::close_month,
        reconciliation::day, reconciliation::run, reconciliation::resolve_mismatch,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete, webhooks::rotate_secret,
        webhooks::enable, webhooks::deliveries, webhooks::replay, webhooks::replay_range,
        health::healthz, health::readyz,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's routes, without the fallbacks and layers of [`serve`].
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    if state.simulated_clock.is_some() {
        // Absent, not forbidden, without --simulated-clock.
        router = router.route(
            "/v1/admin/clock/advance",
            axum::routing::post(admin::advance_clock),
        );
    }
    router
        .route(
            "/v1/distributors",
            get(distributors::list).post(distributors::create),
        )
        .route("/v1/distributors/{id}", get(distributors::get))
        .route("/v1/distributors/{id}/balance", get(distributors::balance))
        .route(
            "/v1/distributors/{id}/portal-links",
            axum::routing::post(portal_links::create),
        )
        .route(
            "/v1/distributors/{id}/reinstate",
            axum::routing::post(lifecycle::reinstate),
        )
        .route(
            "/v1/orders/{id}/void-commission",
            axum::routing::post(lifecycle::void_commission),
        )
        .route(
            "/v1/distributors/{id}/identity",
            axum::routing::put(credentials::put_identity),
        )
        .route(
            "/v1/distributors/{id}/payout-accounts",
            get(credentials::list_payout_accounts).post(credentials::add_payout_account),
        )
        .route(
            "/v1/distributors/{id}/commissions",
            get(orders::commissions),
        )
        .route("/v1/distributors/{id}/statements", get(statements::list))
        .route(
            "/v1/distributors/{id}/statements/{month}",
            get(statements::get),
        )
        .route(
            "/v1/distributors/{id}/team-bonuses",
            get(statements::team_bonuses),
        )
        .route("/v1/distributors/{id}/earnings", get(statements::earnings))
        .route(
            "/v1/ops/month-close/{month}",
            axum::routing::post(statements::close_month),
        )
        .route(
            "/v1/admin/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/v1/admin/webhooks/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/v1/admin/webhooks/{id}/rotate-secret",
            axum::routing::post(webhooks::rotate_secret),
        )
        .route(
            "/v1/admin/webhooks/{id}/enable",
            axum::routing::post(webhooks::enable),
        )
        .route("/v1/ops/webhooks/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/ops/webhooks/deliveries/{id}/replay",
            axum::routing::post(webhooks::replay),
        )
        .route(
            "/v1/ops/webhooks/endpoints/{id}/replay",
            axum::routing::post(webhooks::replay_range),
        )
        .route("/v1/ops/reconciliation", get(reconciliation::day))
        .route(
            "/v1/ops/reconciliation/run",
            axum::routing::post(reconciliation::run),
        )
        .route(
            "/v1/ops/reconciliation/mismatches/{id}/resolve",
            axum::routing::post(reconciliation::resolve_mismatch),
        )
        .route("/v1/orders", axum::routing::post(orders::ingest))
        .route(
            "/v1/orders/batch",
            // GET reads an order whose id is "batch", as `/v1/orders/{id}` would.
            get(orders::get_order_named_batch)
                .post(orders::batch::ingest)
                .layer(DefaultBodyLimit::max(orders::batch::BATCH_BODY_LIMIT_BYTES)),
        )
        .route("/v1/orders/{id}", get(orders::get))
        .route(
            "/v1/orders/{id}/refunds",
            axum::routing::post(orders::refund),
        )
        .route(
            "/v1/withdrawals",
            get(withdrawals::list).post(withdrawals::create),
        )
        .route(
            "/v1/withdrawals/quote",
            axum::routing::post(withdrawals::quote),
        )
        .route("/v1/withdrawals/{id}", get(withdrawals::get))
        .route(
            "/v1/withdrawals/{id}/cancel",
            axum::routing::post(withdrawals::cancel),
        )
        .route(
            "/v1/withdrawals/{id}/approve",
            axum::routing::post(withdrawals::approve),
        )
        .route(
            "/v1/withdrawals/{id}/reject",
            axum::routing::post(withdrawals::reject),
        )
        .route("/v1/tax/declarations/{file}", get(tax::declaration))
        .route("/v1/tax/certificates", get(certificates::list))
        .route(
            "/v1/tax/certificates/verify",
            // Its own body limit, above the PDF's, so that an oversized PDF
            // gets the handler's 413 rather than a cut-off upload; and a
            // per-client rate limit, since anyone may call it.
            axum::routing::post(certificates::verify)
                .layer(DefaultBodyLimit::max(certificates::VERIFY_BODY_LIMIT_BYTES))
                .layer(axum::middleware::from_fn_with_state(
                    state.limits.verify.clone(),
                    rate_limit::enforce,
                )),
        )
        .route("/v1/tax/certificates/{file}", get(certificates::file))
        .route(
            "/v1/tax/certificates/{number}/corrections",
            axum::routing::post(certificates::correct),
        )
        .route("/v1/tax/keys", get(certificates::keys))
        .route("/v1/ops/queues", get(ops::queues))
        .route("/v1/ops/jobs", get(ops::jobs))
        .route("/v1/ops/jobs/{id}/retry", axum::routing::post(ops::retry))
        .route("/v1/ops/jobs/{id}/cancel", axum::routing::post(ops::cancel))
        .route(
            "/v1/gateways/wechat/notify",
            axum::routing::post(withdrawals::wechat_notify),
        )
        .route(
            "/v1/gateways/alipay/notify",
            axum::routing::post(withdrawals::alipay_notify),
        )
        .route(
            "/v1/admin/plans",
            get(admin::list_plans).post(admin::apply_plan),
        )
        .route("/v1/admin/adjustments", axum::routing::post(admin::adjust))
        .route(
            "/v1/admin/calendars/{name}/years/{year}",
            get(calendars::get_year).put(calendars::put_year),
        )
        .route("/v1/admin/tokens", get(admin::list_tokens))
        .route(
            "/v1/admin/tokens/{id}",
            axum::routing::delete(admin::revoke_token),
        )
        .route("/v1/audit", get(admin::audit))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(crate::api::metrics::render))
        .route("/readyz", get(health::readyz))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
}

/// `routes` (the API's, with any others merged in, such as the pages) under
/// the JSON 404 and 405 answers and the layers every answer passes through:
/// request metrics, the body limit and deadline, the trace span, and the
/// headers no answer may lack.
pub fn serve(routes: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.settings.request_body_limit_bytes;
    let body_read_timeout =
        std::time::Duration::from_millis(state.settings.guard.body_read_timeout_ms);
    routes
        .fallback(|| async { error::ApiError::not_found("route") })
        // After every route is added: it applies to the routes there are.
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method (see the Allow header)",
            )
        })
        .layer(axum::middleware::from_fn(crate::api::metrics::track_http))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            body_read_timeout,
            crate::api::server::body_deadline,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    token_id = tracing::field::Empty,
                )
            }),
        )
        // Outermost, so every answer has them, whichever layer made it.
        .layer(SetResponseHeaderLayer::overriding(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}
