//! Every API route × every kind of caller, in one table: admin, ops,
//! accountant, ingest, the distributor the resource belongs to, another
//! distributor, no token and a bad token. A caller the route allows gets
//! past authorization (any status but 401 and 403); any other gets 403 — or
//! 404 where a distributor must not learn that another's resource exists —
//! and no or a bad token gets 401. Public routes answer alike for all. The
//! table must name every route of the OpenAPI document, and the document
//! must list the refusals (401, 403, 400, 413, 415) each route can give.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::certificates::certified_payout;
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;
use crate::withdrawals::{id_number, spawn};

on_both_backends!(
    every_route_answers_every_role_as_the_matrix_says,
    every_page_answers_every_session_as_the_matrix_says,
);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    Ops,
    Accountant,
    Ingest,
    SelfDistributor,
    OtherDistributor,
    NoToken,
    BadToken,
}

const EVERYONE: [Who; 8] = [
    Who::Admin,
    Who::Ops,
    Who::Accountant,
    Who::Ingest,
    Who::SelfDistributor,
    Who::OtherDistributor,
    Who::NoToken,
    Who::BadToken,
];

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// No token needed; every caller gets the same answer.
    Public,
    /// These roles; another distributor gets `other` (403, or 404 where the
    /// resource's existence is not theirs to learn).
    Roles(&'static [Who], u16),
}

struct Route {
    method: &'static str,
    /// The OpenAPI template, e.g. `/v1/withdrawals/{id}`.
    template: &'static str,
    path: String,
    body: Option<Value>,
    access: Access,
}

use Who::{Accountant, Admin, Ingest, Ops, SelfDistributor};

fn route(
    method: &'static str,
    template: &'static str,
    path: String,
    body: Option<Value>,
    access: Access,
) -> Route {
    Route {
        method,
        template,
        path,
        body,
        access,
    }
}

async fn send(app: &TestApp, route: &Route, token: Option<&str>) -> u16 {
    let mut request = match route.method {
        "GET" => app.client.get(app.url(&route.path)),
        "POST" => app.client.post(app.url(&route.path)),
        "PUT" => app.client.put(app.url(&route.path)),
        "DELETE" => app.client.delete(app.url(&route.path)),
        other => panic!("method {other}"),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = &route.body {
        request = request.json(body);
    }
    request = request.header("Idempotency-Key", "matrix-1");
    request.send().await.unwrap().status().as_u16()
}

/// What the document fails to say of the refusals each operation can give:
/// a route behind a token answers 401 and 403; one with parameters 400
/// (a path, query or header it cannot read); one with a body 400, 413 and
/// 415 (the gateway's callback takes any bytes, so only 413). Every 4xx
/// and 5xx is the error shape, as JSON.
fn undocumented_refusals(document: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let responses = &operation["responses"];
            let mut expected = Vec::new();
            if operation["security"]
                .as_array()
                .is_some_and(|security| !security.is_empty())
            {
                expected.extend(["401", "403"]);
            }
            if operation["parameters"]
                .as_array()
                .is_some_and(|parameters| !parameters.is_empty())
            {
                expected.push("400");
            }
            if operation["requestBody"].is_object() {
                expected.push("413");
                if !path.starts_with("/v1/gateways/") {
                    expected.extend(["400", "415"]);
                }
            }
            for status in expected {
                if responses[status].is_null() {
                    missing.push(format!("{method} {path}: no {status}"));
                }
            }
            for (status, response) in responses.as_object().unwrap() {
                let is_error = status.starts_with('4') || status.starts_with('5');
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                if is_error && schema != "#/components/schemas/ErrorBody" {
                    missing.push(format!(
                        "{method} {path}: {status} is not the error shape in JSON"
                    ));
                }
            }
        }
    }
    missing
}

async fn every_route_answers_every_role_as_the_matrix_says(backend: Backend) {
    let app = spawn(backend).await;
    let (carol, withdrawal, number) = certified_payout(&app, "carol").await;
    let withdrawal_id = withdrawal["id"].as_str().unwrap().to_owned();
    let month = withdrawal["tax_month"].as_str().unwrap().to_owned();
    app.create_distributor("dave", None, None).await;
    let dave = app.distributor_token("dave").await;
    let accounts: Value = app
        .get("/v1/distributors/carol/payout-accounts", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let account = accounts[0]["id"].as_str().unwrap_or("pa_none").to_owned();
    let confirmed = chrono::Utc::now() + chrono::Duration::days(4);
    let order = json!({
        "order_id": "o-matrix", "distributor_id": "carol", "buyer_id": "buyer-1",
        "placed_at": (confirmed - chrono::Duration::days(1)).to_rfc3339(),
        "confirmed_at": confirmed.to_rfc3339(),
        "items": [{"sku": "S1", "category": "food", "amount": "100.00"}],
    });
    assert_eq!(
        app.post_json("/v1/orders", &app.ingest, &order)
            .await
            .status(),
        202
    );
    let jobs: Value = app
        .get("/v1/ops/jobs", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let job = jobs["items"][0]["id"].as_str().unwrap().to_owned();
    let withdrawal_body = json!({"distributor_id": "carol", "amount": "10.00", "payout_account_id": account, "speed": "standard"});

    let staff_and_self: &[Who] = &[Admin, Ops, SelfDistributor];
    let routes = vec![
        route(
            "GET",
            "/v1/distributors",
            "/v1/distributors".into(),
            None,
            Access::Roles(&[Admin, Ops, Ingest], 403),
        ),
        route(
            "POST",
            "/v1/distributors",
            "/v1/distributors".into(),
            Some(json!({"id": "mx", "name": "Matrix"})),
            Access::Roles(&[Admin, Ingest], 403),
        ),
        route(
            "GET",
            "/v1/distributors/{id}",
            "/v1/distributors/carol".into(),
            None,
            Access::Roles(staff_and_self, 403),
        ),
        route(
            "GET",
            "/v1/distributors/{id}/balance",
            "/v1/distributors/carol/balance".into(),
            None,
            Access::Roles(staff_and_self, 403),
        ),
        route(
            "PUT",
            "/v1/distributors/{id}/identity",
            "/v1/distributors/carol/identity".into(),
            Some(json!({"real_name": "李四", "id_number": id_number("11010119900307123")})),
            Access::Roles(&[Ingest, SelfDistributor], 403),
        ),
        route(
            "GET",
            "/v1/distributors/{id}/payout-accounts",
            "/v1/distributors/carol/payout-accounts".into(),
            None,
            Access::Roles(staff_and_self, 403),
        ),
        route(
            "POST",
            "/v1/distributors/{id}/payout-accounts",
            "/v1/distributors/carol/payout-accounts".into(),
            Some(json!({"channel": "wechat", "openid": OPENID})),
            Access::Roles(&[Ingest, SelfDistributor], 403),
        ),
        route(
            "GET",
            "/v1/distributors/{id}/commissions",
            "/v1/distributors/carol/commissions".into(),
            None,
            Access::Roles(staff_and_self, 403),
        ),
        route(
            "GET",
            "/v1/distributors/{id}/statements",
            "/v1/distributors/carol/statements".into(),
            None,
            Access::Roles(staff_and_self, 403),
        ),
        route(
            "GET",
            "/v1/distributors/{id}/statements/{month}",
            "/v1/distributors/carol/statements/2020-01".into(),
            None,
            Access::Roles(staff_and_self, 403),
        ),
        route(
            "GET",
            "/v1/distributors/{id}/team-bonuses",
            "/v1/distributors/carol/team-bonuses".into(),
            None,
            Access::Roles(staff_and_self, 403),
        ),
        route(
            "GET",
            "/v1/distributors/{id}/earnings",
            "/v1/distributors/carol/earnings?from=2026-01-01&to=2026-01-02".into(),
            None,
            Access::Roles(staff_and_self, 403),
        ),
        route(
            "POST",
            "/v1/distributors/{id}/portal-links",
            "/v1/distributors/carol/portal-links".into(),
            None,
            Access::Roles(&[Ingest], 403),
        ),
        route(
            "POST",
            "/v1/orders",
            "/v1/orders".into(),
            Some(order.clone()),
            Access::Roles(&[Ingest], 403),
        ),
        route(
            "POST",
            "/v1/orders/batch",
            "/v1/orders/batch".into(),
            Some(json!({"orders": [order.clone()]})),
            Access::Roles(&[Ingest], 403),
        ),
        route(
            "GET",
            "/v1/orders/{id}",
            "/v1/orders/o-matrix".into(),
            None,
            Access::Roles(&[Admin, Ops, Ingest], 403),
        ),
        // carol is active: ops and admin get past authorization (409
        // not_cleared) without changing her.
        route(
            "POST",
            "/v1/distributors/{id}/reinstate",
            "/v1/distributors/carol/reinstate".into(),
            Some(json!({"reason": "matrix"})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        // An order that does not exist: past authorization (404) without
        // voiding the order the other routes use.
        route(
            "POST",
            "/v1/orders/{id}/void-commission",
            "/v1/orders/o-none/void-commission".into(),
            Some(json!({"reason": "matrix"})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "POST",
            "/v1/orders/{id}/refunds",
            "/v1/orders/o-matrix/refunds".into(),
            Some(json!({"refund_id": "r-matrix", "amount": "1.00"})),
            Access::Roles(&[Ingest], 403),
        ),
        route(
            "POST",
            "/v1/withdrawals/quote",
            "/v1/withdrawals/quote".into(),
            Some(withdrawal_body.clone()),
            Access::Roles(&[SelfDistributor], 403),
        ),
        route(
            "POST",
            "/v1/withdrawals",
            "/v1/withdrawals".into(),
            Some(withdrawal_body.clone()),
            Access::Roles(&[SelfDistributor], 403),
        ),
        route(
            "GET",
            "/v1/withdrawals",
            "/v1/withdrawals?state=paid".into(),
            None,
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "GET",
            "/v1/withdrawals/{id}",
            format!("/v1/withdrawals/{withdrawal_id}"),
            None,
            Access::Roles(staff_and_self, 404),
        ),
        route(
            "POST",
            "/v1/withdrawals/{id}/cancel",
            format!("/v1/withdrawals/{withdrawal_id}/cancel"),
            None,
            Access::Roles(&[SelfDistributor], 404),
        ),
        route(
            "POST",
            "/v1/withdrawals/{id}/approve",
            format!("/v1/withdrawals/{withdrawal_id}/approve"),
            Some(json!({})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "POST",
            "/v1/withdrawals/{id}/reject",
            format!("/v1/withdrawals/{withdrawal_id}/reject"),
            Some(json!({"reason": "matrix"})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "GET",
            "/v1/tax/declarations/{file}",
            format!("/v1/tax/declarations/{month}.csv"),
            None,
            Access::Roles(&[Admin, Accountant], 403),
        ),
        route(
            "GET",
            "/v1/tax/certificates",
            format!("/v1/tax/certificates?month={month}"),
            None,
            Access::Roles(
                &[Admin, Accountant, SelfDistributor, Who::OtherDistributor],
                403,
            ),
        ),
        route(
            "GET",
            "/v1/tax/certificates/{file}",
            format!("/v1/tax/certificates/{number}.pdf"),
            None,
            Access::Roles(&[Admin, Accountant, SelfDistributor], 404),
        ),
        route(
            "POST",
            "/v1/tax/certificates/{number}/corrections",
            format!("/v1/tax/certificates/{number}/corrections"),
            Some(json!({"reason": "matrix"})),
            Access::Roles(&[Admin, Accountant], 403),
        ),
        route(
            "GET",
            "/v1/tax/keys",
            "/v1/tax/keys".into(),
            None,
            Access::Public,
        ),
        route(
            "POST",
            "/v1/tax/certificates/verify",
            "/v1/tax/certificates/verify".into(),
            Some(json!({})),
            Access::Public,
        ),
        route(
            "POST",
            "/v1/gateways/wechat/notify",
            "/v1/gateways/wechat/notify".into(),
            Some(json!({})),
            Access::Public,
        ),
        route(
            "POST",
            "/v1/gateways/alipay/notify",
            "/v1/gateways/alipay/notify".into(),
            Some(json!({})),
            Access::Public,
        ),
        route(
            "GET",
            "/v1/ops/queues",
            "/v1/ops/queues".into(),
            None,
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "GET",
            "/v1/ops/jobs",
            "/v1/ops/jobs".into(),
            None,
            Access::Roles(&[Admin, Ops], 403),
        ),
        // A month long over, before anything in this shop: closing it
        // writes an empty close.
        route(
            "POST",
            "/v1/ops/month-close/{month}",
            "/v1/ops/month-close/2020-01".into(),
            Some(json!({})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "POST",
            "/v1/ops/jobs/{id}/retry",
            format!("/v1/ops/jobs/{job}/retry"),
            Some(json!({})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "POST",
            "/v1/ops/jobs/{id}/cancel",
            format!("/v1/ops/jobs/{job}/cancel"),
            Some(json!({})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "GET",
            "/v1/ops/reconciliation",
            "/v1/ops/reconciliation".into(),
            None,
            Access::Roles(&[Admin, Ops], 403),
        ),
        // A day not begun: past authorization (422) without downloading
        // a statement.
        route(
            "POST",
            "/v1/ops/reconciliation/run",
            "/v1/ops/reconciliation/run".into(),
            Some(json!({"date": "2999-01-01"})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        // A mismatch that does not exist: past authorization (404).
        route(
            "POST",
            "/v1/ops/reconciliation/mismatches/{id}/resolve",
            "/v1/ops/reconciliation/mismatches/999999/resolve".into(),
            Some(json!({"side": "ledger", "reason": "matrix"})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        // Webhook endpoints: a target the settings refuse (422) or an
        // unknown endpoint (404) is past authorization without creating one.
        route(
            "POST",
            "/v1/admin/webhooks",
            "/v1/admin/webhooks".into(),
            Some(json!({"url": "https://10.0.0.1/hook", "events": ["*"]})),
            Access::Roles(&[Admin], 403),
        ),
        route(
            "GET",
            "/v1/admin/webhooks",
            "/v1/admin/webhooks".into(),
            None,
            Access::Roles(&[Admin], 403),
        ),
        route(
            "GET",
            "/v1/admin/webhooks/{id}",
            "/v1/admin/webhooks/ep_missing".into(),
            None,
            Access::Roles(&[Admin], 403),
        ),
        route(
            "PUT",
            "/v1/admin/webhooks/{id}",
            "/v1/admin/webhooks/ep_missing".into(),
            Some(json!({"url": "https://shop.example.com/hook", "events": ["*"]})),
            Access::Roles(&[Admin], 403),
        ),
        route(
            "DELETE",
            "/v1/admin/webhooks/{id}",
            "/v1/admin/webhooks/ep_missing".into(),
            None,
            Access::Roles(&[Admin], 403),
        ),
        route(
            "POST",
            "/v1/admin/webhooks/{id}/rotate-secret",
            "/v1/admin/webhooks/ep_missing/rotate-secret".into(),
            Some(json!({})),
            Access::Roles(&[Admin], 403),
        ),
        route(
            "POST",
            "/v1/admin/webhooks/{id}/enable",
            "/v1/admin/webhooks/ep_missing/enable".into(),
            Some(json!({})),
            Access::Roles(&[Admin], 403),
        ),
        route(
            "GET",
            "/v1/ops/webhooks/deliveries",
            "/v1/ops/webhooks/deliveries".into(),
            None,
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "POST",
            "/v1/ops/webhooks/deliveries/{id}/replay",
            "/v1/ops/webhooks/deliveries/999999/replay".into(),
            Some(json!({})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "POST",
            "/v1/ops/webhooks/endpoints/{id}/replay",
            "/v1/ops/webhooks/endpoints/ep_missing/replay".into(),
            Some(json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"})),
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "GET",
            "/v1/audit",
            "/v1/audit".into(),
            None,
            Access::Roles(&[Admin], 403),
        ),
        route(
            "GET",
            "/v1/admin/calendars/{name}/years/{year}",
            "/v1/admin/calendars/cn/years/2027".into(),
            None,
            Access::Roles(&[Admin, Ops], 403),
        ),
        route(
            "PUT",
            "/v1/admin/calendars/{name}/years/{year}",
            "/v1/admin/calendars/cn/years/2027".into(),
            Some(json!({"source": "国办发明电〔2026〕0号", "holidays": []})),
            Access::Roles(&[Admin], 403),
        ),
        route(
            "GET",
            "/v1/admin/plans",
            "/v1/admin/plans".into(),
            None,
            Access::Roles(&[Admin], 403),
        ),
        route(
            "POST",
            "/v1/admin/plans",
            "/v1/admin/plans".into(),
            Some(json!({"toml": "name = \"x\""})),
            Access::Roles(&[Admin], 403),
        ),
        route(
            "POST",
            "/v1/admin/adjustments",
            "/v1/admin/adjustments".into(),
            Some(
                json!({"distributor_id": "carol", "amount": "0.01", "direction": "credit", "reason": "matrix"}),
            ),
            Access::Roles(&[Admin], 403),
        ),
        route(
            "POST",
            "/v1/admin/clock/advance",
            "/v1/admin/clock/advance".into(),
            Some(json!({"seconds": 1})),
            Access::Roles(&[Admin], 403),
        ),
        route(
            "GET",
            "/v1/admin/tokens",
            "/v1/admin/tokens".into(),
            None,
            Access::Roles(&[Admin], 403),
        ),
        // A token that does not exist: the admin gets past authorization
        // (404) without revoking a token the matrix still uses.
        route(
            "DELETE",
            "/v1/admin/tokens/{id}",
            "/v1/admin/tokens/tok_0000000000000000".into(),
            None,
            Access::Roles(&[Admin], 403),
        ),
        route("GET", "/healthz", "/healthz".into(), None, Access::Public),
        route("GET", "/readyz", "/readyz".into(), None, Access::Public),
    ];

    // Every documented route is in the table.
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .as_object()
                .unwrap()
                .keys()
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let tabled: BTreeSet<(String, String)> = routes
        .iter()
        .map(|route| (route.method.to_owned(), route.template.to_owned()))
        .collect();
    let missing: Vec<_> = documented.difference(&tabled).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the matrix: {missing:?}"
    );
    let undocumented = undocumented_refusals(&document);
    assert!(
        undocumented.is_empty(),
        "refusals missing from the OpenAPI document:\n{}",
        undocumented.join("\n")
    );

    let token_of = |who: Who| -> Option<String> {
        match who {
            Admin => Some(app.admin.clone()),
            Ops => Some(app.ops.clone()),
            Accountant => Some(app.accountant.clone()),
            Ingest => Some(app.ingest.clone()),
            SelfDistributor => Some(carol.clone()),
            Who::OtherDistributor => Some(dave.clone()),
            Who::NoToken => None,
            Who::BadToken => Some("fr_not_a_real_token".to_owned()),
        }
    };
    let mut wrong = Vec::new();
    for route in &routes {
        let mut public_answers = BTreeSet::new();
        for who in EVERYONE {
            let status = send(&app, route, token_of(who).as_deref()).await;
            let fine = match route.access {
                Access::Public => {
                    public_answers.insert(status);
                    status != 403
                }
                Access::Roles(_, _) if matches!(who, Who::NoToken | Who::BadToken) => status == 401,
                Access::Roles(allowed, _) if allowed.contains(&who) => {
                    status != 401 && status != 403
                }
                Access::Roles(_, other) if who == Who::OtherDistributor => status == other,
                Access::Roles(_, _) => status == 403,
            };
            if !fine {
                wrong.push(format!(
                    "{} {} as {who:?}: {status}",
                    route.method, route.path
                ));
            }
        }
        if matches!(route.access, Access::Public) && public_answers.len() != 1 {
            wrong.push(format!(
                "{} {}: public but answers {public_answers:?} by caller",
                route.method, route.path
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the role matrix is broken:\n{}",
        wrong.join("\n")
    );
}

/// The pages × every kind of session: staff signed in with their tokens,
/// the distributor a certificate belongs to and another, each signed in by
/// a link, and none. `/me` is a distributor's only (staff get 403, no
/// session 401) and shows its own certificate only; the console's and tax
/// page's routes refuse a distributor's session (403) whatever it asks.
async fn every_page_answers_every_session_as_the_matrix_says(backend: Backend) {
    use crate::me_page::link_session;
    use crate::tax_page::{get_page, sign_in};

    let app = spawn(backend).await;
    let (_, withdrawal, number) = certified_payout(&app, "carol").await;
    let withdrawal = withdrawal["id"].as_str().unwrap().to_owned();
    app.create_distributor("dave", None, None).await;
    let sessions = [
        ("admin", sign_in(&app, &app.admin).await),
        ("ops", sign_in(&app, &app.ops).await),
        ("accountant", sign_in(&app, &app.accountant).await),
        ("ingest", sign_in(&app, &app.ingest).await),
        ("carol", link_session(&app, "carol").await),
        ("dave", link_session(&app, "dave").await),
        ("none", String::new()),
    ];
    // Statuses for admin, ops, accountant, ingest, carol, dave, none.
    let pages: [(String, [u16; 7]); 7] = [
        ("/me".into(), [403, 403, 403, 403, 200, 200, 401]),
        (
            format!("/me/certificates/{number}.pdf"),
            [403, 403, 403, 403, 200, 404, 401],
        ),
        ("/ops".into(), [200, 200, 403, 403, 403, 403, 303]),
        ("/tax".into(), [200, 403, 200, 403, 403, 403, 303]),
        (
            "/ops/queues.json".into(),
            [200, 200, 403, 403, 403, 403, 303],
        ),
        (
            format!("/ops/withdrawals/{withdrawal}"),
            [200, 200, 403, 403, 403, 403, 303],
        ),
        (
            format!("/tax/certificates/{number}.pdf"),
            [200, 403, 200, 403, 403, 403, 303],
        ),
    ];
    let mut wrong = Vec::new();
    for (path, expected) in &pages {
        for ((who, cookie), status) in sessions.iter().zip(expected) {
            let got = get_page(&app, path, cookie).await.status().as_u16();
            if got != *status {
                wrong.push(format!("GET {path} as {who}: {got}, not {status}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the page matrix is broken:\n{}",
        wrong.join("\n")
    );
}
