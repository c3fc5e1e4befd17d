//! The monthly withholding declaration over HTTP: every distributor paid in
//! the month gets a row (tax or not), the totals row equals the ledger's tax
//! payable, the XLSX reads back with numbers as numbers, and only the
//! accountant (or admin) may download it.

// Amounts in fen are written yuan_fen (`640_00` is 640.00 yuan).
#![allow(clippy::inconsistent_digit_grouping)]

use calamine::{Data, Reader, Xlsx};
use fenrun::domain::ledger::{AccountId, PlatformAccount};
use serde_json::{Value, json};

use crate::helpers::{Backend, error_of};
use crate::on_both_backends;
use crate::withdrawals::{advance_days, funded_distributor, request, spawn, wait_for_state};

on_both_backends!(the_monthly_declaration_lists_every_paid_distributor_and_totals_the_tax,);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

async fn the_monthly_declaration_lists_every_paid_distributor_and_totals_the_tax(backend: Backend) {
    let app = spawn(backend).await;
    let (alice, alice_account) = funded_distributor(&app, "alice", "5000.00", OPENID).await;
    let (bob, bob_account) = funded_distributor(&app, "bob", "500.00", OPENID).await;
    advance_days(&app, 4).await;
    let mut month = String::new();
    let mut ids = Vec::new();
    for (token, distributor, account, amount, key) in [
        (&alice, "alice", &alice_account, "2000.00", "a1"),
        (&alice, "alice", &alice_account, "2000.00", "a2"),
        (&bob, "bob", &bob_account, "500.00", "b1"),
    ] {
        let created: Value = request(
            &app,
            token,
            key,
            &json!({"distributor_id": distributor, "amount": amount, "payout_account_id": account, "speed": "standard"}),
        )
        .await
        .json()
        .await
        .unwrap();
        month = created["tax_month"].as_str().unwrap().to_owned();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        wait_for_state(&app, id, "paid").await;
    }

    let csv = app
        .get(
            &format!("/v1/tax/declarations/{month}.csv"),
            &app.accountant,
        )
        .await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5, "{csv}");
    // 2,000 + 2,000 in one month is one 次 of 4,000: (4000 − 800) × 20% = 640.00.
    let id_number = crate::withdrawals::id_number("11010119900307123");
    assert!(
        lines[2].starts_with(&format!(
            "alice,李四,居民身份证,{id_number},一般劳务报酬所得,4000.00,"
        )),
        "{}",
        lines[2]
    );
    assert!(
        lines[2].contains(",640.00,640.00,3360.00,2"),
        "{}",
        lines[2]
    );
    // A distributor with no tax is still declared.
    assert!(
        lines[3].starts_with("bob,") && lines[3].contains(",500.00,"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].starts_with("合计,") && lines[4].contains(",4500.00,"),
        "{}",
        lines[4]
    );
    let tax_payable = app
        .store
        .account_balance(&AccountId::Platform(PlatformAccount::TaxPayable))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tax_payable.fen(), 640_00);
    assert!(
        lines[4].contains(&format!(",{tax_payable},")),
        "the totals row holds the ledger's tax payable: {}",
        lines[4]
    );

    let xlsx = app
        .get(
            &format!("/v1/tax/declarations/{month}.xlsx"),
            &app.accountant,
        )
        .await;
    assert_eq!(xlsx.status(), 200);
    let bytes = xlsx.bytes().await.unwrap().to_vec();
    let mut workbook: Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).expect("an XLSX workbook");
    let sheet = workbook
        .worksheet_range(&month)
        .expect("a sheet named after the month");
    let rows: Vec<Vec<Data>> = sheet.rows().map(<[Data]>::to_vec).collect();
    let header = &rows[1];
    let income_column = header
        .iter()
        .position(|cell| cell == &Data::String("本期收入".to_owned()))
        .unwrap();
    let withheld_column = header
        .iter()
        .position(|cell| cell == &Data::String("（核对）已扣缴税额".to_owned()))
        .unwrap();
    assert_eq!(rows[2][0], Data::String("alice".to_owned()));
    assert_eq!(rows[2][income_column], Data::Float(4000.0));
    assert_eq!(rows[2][withheld_column], Data::Float(640.0));
    assert_eq!(rows[3][withheld_column], Data::Float(0.0));
    assert_eq!(rows[4][0], Data::String("合计".to_owned()));
    assert_eq!(rows[4][withheld_column], Data::Float(640.0));

    // Only the accountant and admin; a bad file name is a 400.
    error_of(
        app.get(&format!("/v1/tax/declarations/{month}.csv"), &alice)
            .await,
        403,
    )
    .await;
    error_of(
        app.get(&format!("/v1/tax/declarations/{month}.csv"), &app.ops)
            .await,
        403,
    )
    .await;
    let error = error_of(
        app.get("/v1/tax/declarations/2026-13.csv", &app.accountant)
            .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "invalid_month");
    let error = error_of(
        app.get(
            &format!("/v1/tax/declarations/{month}.pdf"),
            &app.accountant,
        )
        .await,
        400,
    )
    .await;
    assert_eq!(error["code"], "invalid_file");
    // An empty month is a header and a zero totals row.
    let empty = app
        .get("/v1/tax/declarations/2025-01.csv", &app.accountant)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(empty.lines().count(), 3, "{empty}");
}
