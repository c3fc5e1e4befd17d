//! Commission rules v2 over HTTP (issue 14): tiers, campaigns, the daily
//! cap, risk holds and cleared distributors — each alone and all together,
//! with every amount worked out here from the plan's numbers, independently
//! of fenrun's code — and a plan change in the middle of a month.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::on_both_backends;
use crate::tax_page::{get_page, sign_in};

on_both_backends!(
    a_tier_follows_the_month_sales_net_of_refunds,
    a_campaign_multiplies_the_rates_of_orders_placed_in_its_window,
    the_daily_cap_trims_in_ingest_order_and_explains_the_trim,
    a_voided_order_lifts_no_tier_and_fills_no_daily_cap,
    risky_orders_are_flagged_and_held_longer,
    a_cleared_distributor_gets_an_explained_zero_line,
    every_rule_together_pays_what_the_test_computes,
    a_plan_change_mid_month_pins_each_order_and_keeps_the_month,
);

const GRADES: &str = r#"
[grades.regular]
display_name = "普通"
levels = ["10%", "5%", "2%"]
"#;

/// An app on the real clock whose plan in force has `plan_rules`: orders
/// confirmed from now on are computed with it.
async fn app_with(backend: Backend, plan_rules: &str) -> TestApp {
    let app = spawn_app(backend).await;
    apply_plan(&app, "v2", plan_rules).await;
    app
}

async fn apply_plan(app: &TestApp, name: &str, rules: &str) -> i64 {
    let toml = format!("name = \"{name}\"\ndefault_grade = \"regular\"\n{rules}\n{GRADES}");
    let response = app
        .post_json(
            "/v1/admin/plans",
            &app.admin,
            &json!({"toml": toml, "file_name": format!("{name}.toml")}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let plan: Value = response.json().await.unwrap();
    plan["version"].as_i64().unwrap()
}

/// Now: after the plan was applied, so it is in force. (A test that runs
/// across midnight in Shanghai would see two days; it takes seconds.)
fn confirmed() -> DateTime<Utc> {
    Utc::now()
}

struct Sale<'a> {
    id: &'a str,
    seller: &'a str,
    buyer: &'a str,
    placed_at: DateTime<Utc>,
    confirmed_at: DateTime<Utc>,
    items: Value,
}

async fn ingest(app: &TestApp, sale: &Sale<'_>) -> Value {
    let body = json!({
        "order_id": sale.id,
        "distributor_id": sale.seller,
        "buyer_id": sale.buyer,
        "placed_at": sale.placed_at.to_rfc3339(),
        "confirmed_at": sale.confirmed_at.to_rfc3339(),
        "items": sale.items,
    });
    let response = app.post_json("/v1/orders", &app.ingest, &body).await;
    assert_eq!(response.status(), 202, "{body}");
    response.json().await.unwrap()
}

fn sale<'a>(id: &'a str, seller: &'a str, amount: &str) -> Sale<'a> {
    let at = confirmed();
    Sale {
        id,
        seller,
        buyer: "buyer-1",
        placed_at: at - Duration::hours(1),
        confirmed_at: at,
        items: json!([{"sku": format!("sku-{id}"), "category": "food", "amount": amount}]),
    }
}

fn money(value: &Value) -> Decimal {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a money string: {value}"))
        .parse()
        .unwrap()
}

/// `amount × percent / 100`, rounded half-up to the fen: the rule of the
/// spec, computed here on its own.
fn pct(amount: &str, percent: u32) -> Decimal {
    let amount: Decimal = amount.parse().unwrap();
    (amount * Decimal::from(percent) / Decimal::from(100))
        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
}

/// The order's lines for `beneficiary`, as (level, rate, amount).
fn lines_of(order: &Value, beneficiary: &str) -> Vec<(u64, String, Decimal)> {
    order["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|line| line["beneficiary_id"] == beneficiary)
        .map(|line| {
            (
                line["level"].as_u64().unwrap(),
                line["rate"].as_str().unwrap().to_owned(),
                money(&line["amount"]),
            )
        })
        .collect()
}

fn total_of(order: &Value) -> Decimal {
    order["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| money(&line["amount"]))
        .sum()
}

fn steps(line: &Value) -> Vec<String> {
    line["rule_trail"]
        .as_array()
        .unwrap_or_else(|| panic!("no rule_trail on {line}"))
        .iter()
        .map(|step| step["step"].as_str().unwrap().to_owned())
        .collect()
}

async fn order(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/orders/{id}"), &app.ops)
        .await
        .json()
        .await
        .unwrap()
}

async fn a_tier_follows_the_month_sales_net_of_refunds(backend: Backend) {
    let rules = r#"
[tiers]
steps = [ { from = "0.00", level1 = "10%" }, { from = "1000.00", level1 = "15%" }, { from = "3000.00", level1 = "20%" } ]
"#;
    let app = app_with(backend, rules).await;
    app.create_distributor("seller", None, None).await;

    // 800 → month 800: 10%.
    let first = ingest(&app, &sale("t-1", "seller", "800.00")).await;
    assert_eq!(
        lines_of(&first, "seller"),
        [(1, "10%".to_owned(), pct("800.00", 10))]
    );
    let trail = &first["commissions"][0]["rule_trail"][0];
    assert_eq!(trail["step"], "rate");
    assert_eq!(trail["tier"]["from"], "0.00");
    assert_eq!(trail["tier"]["month_level1_sales"], "800.00");
    // 500 → month 1300: 15%.
    let second = ingest(&app, &sale("t-2", "seller", "500.00")).await;
    assert_eq!(
        lines_of(&second, "seller"),
        [(1, "15%".to_owned(), pct("500.00", 15))]
    );
    assert!(
        second["commissions"][0]["explanation"]
            .as_str()
            .unwrap()
            .contains("tier from 1000.00 (month 1300.00) 15%"),
        "{second}"
    );
    // 2000 → month 3300: 20%.
    let third = ingest(&app, &sale("t-3", "seller", "2000.00")).await;
    assert_eq!(
        lines_of(&third, "seller"),
        [(1, "20%".to_owned(), pct("2000.00", 20))]
    );

    // Refunding the 500 order in full takes it out of the month: a 100
    // order then counts 800 + 2000 + 100 = 2900, the 15% step.
    let refunded = app
        .post_json(
            "/v1/orders/t-2/refunds",
            &app.ingest,
            &json!({"refund_id": "r-1", "amount": "500.00"}),
        )
        .await;
    assert_eq!(refunded.status(), 200);
    let fourth = ingest(&app, &sale("t-4", "seller", "100.00")).await;
    assert_eq!(
        lines_of(&fourth, "seller"),
        [(1, "15%".to_owned(), pct("100.00", 15))]
    );
    // A partial refund of the 2000 order recomputes it with the month it
    // saw (800 + 500 before it), net of the refund: 1300 + 1500 = 2800 → 15%.
    let partial = app
        .post_json(
            "/v1/orders/t-3/refunds",
            &app.ingest,
            &json!({"refund_id": "r-2", "amount": "500.00"}),
        )
        .await;
    assert_eq!(partial.status(), 200);
    let third = order(&app, "t-3").await;
    let live: Vec<_> = lines_of(&third, "seller")
        .into_iter()
        .filter(|(_, _, amount)| !amount.is_zero())
        .collect();
    assert_eq!(live, [(1, "15%".to_owned(), pct("1500.00", 15))]);
    assert!(app.store.verify_ledger().await.unwrap().is_clean());
}

async fn a_campaign_multiplies_the_rates_of_orders_placed_in_its_window(backend: Backend) {
    let at = confirmed();
    let rules = format!(
        "[[campaigns]]\nname = \"双11\"\nfrom = {}\nto = {}\nmultiplier = \"2\"\ncategories = [\"beauty\"]\n",
        (at - Duration::days(3)).to_rfc3339(),
        (at - Duration::days(1)).to_rfc3339(),
    );
    let app = app_with(backend, &rules).await;
    app.create_distributor("up", None, None).await;
    app.create_distributor("seller", Some("up"), None).await;

    let inside = Sale {
        id: "c-1",
        seller: "seller",
        buyer: "buyer-1",
        placed_at: at - Duration::days(2),
        // After the plan was applied (`at` was taken before), so it is in force.
        confirmed_at: confirmed(),
        items: json!([
            {"sku": "lipstick", "category": "beauty", "amount": "100.00"},
            {"sku": "rice", "category": "food", "amount": "100.00"},
        ]),
    };
    let order = ingest(&app, &inside).await;
    assert_eq!(
        lines_of(&order, "seller"),
        [
            (1, "20%".to_owned(), pct("100.00", 20)),
            (1, "10%".to_owned(), pct("100.00", 10)),
        ]
    );
    assert_eq!(
        lines_of(&order, "up"),
        [
            (2, "10%".to_owned(), pct("100.00", 10)),
            (2, "5%".to_owned(), pct("100.00", 5)),
        ]
    );
    let doubled = &order["commissions"][0];
    assert_eq!(doubled["rule_trail"][0]["campaign"]["name"], "双11");
    assert_eq!(doubled["rule_trail"][0]["campaign"]["multiplier"], "2");
    // The commission list names the campaign.
    let listed: Value = app
        .get("/v1/distributors/seller/commissions", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    let campaigns: Vec<&Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| &line["campaign"])
        .collect();
    assert!(campaigns.contains(&&json!("双11")), "{listed}");

    // Placed after the window: the plain rates.
    let outside = Sale {
        id: "c-2",
        placed_at: at - Duration::hours(12),
        ..inside
    };
    let order = ingest(&app, &outside).await;
    assert_eq!(
        lines_of(&order, "seller"),
        [(1, "10%".to_owned(), pct("200.00", 10))]
    );
}

async fn the_daily_cap_trims_in_ingest_order_and_explains_the_trim(backend: Backend) {
    let app = app_with(backend, "daily_cap = \"50.00\"").await;
    app.create_distributor("up", None, None).await;
    app.create_distributor("seller", Some("up"), None).await;

    // seller earns 10% of 300 = 30.00; up 5% = 15.00.
    let first = ingest(&app, &sale("d-1", "seller", "300.00")).await;
    assert_eq!(
        lines_of(&first, "seller"),
        [(1, "10%".to_owned(), pct("300.00", 10))]
    );
    // 30.00 more would make 60.00: trimmed by 10.00 to 20.00.
    let second = ingest(&app, &sale("d-2", "seller", "300.00")).await;
    assert_eq!(
        lines_of(&second, "seller"),
        [(1, "10%".to_owned(), Decimal::new(2000, 2))]
    );
    let line = &second["commissions"][0];
    assert_eq!(steps(line), ["rate", "daily_cap"]);
    assert_eq!(line["rule_trail"][1]["removed"], "10.00");
    assert_eq!(line["rule_trail"][1]["earned_before"], "30.00");
    assert_eq!(line["rule_trail"][1]["cap"], "50.00");
    // The day is full for seller; up has 30.00 and still earns 15.00.
    let third = ingest(&app, &sale("d-3", "seller", "300.00")).await;
    assert!(lines_of(&third, "seller").is_empty(), "{third}");
    assert_eq!(
        lines_of(&third, "up"),
        [(2, "5%".to_owned(), pct("300.00", 5))]
    );
    // up: 45.00 so far; another 15.00 is trimmed to 5.00.
    let fourth = ingest(&app, &sale("d-4", "seller", "300.00")).await;
    assert_eq!(
        lines_of(&fourth, "up"),
        [(2, "5%".to_owned(), Decimal::new(500, 2))]
    );

    let balance: Value = app
        .get("/v1/distributors/seller/balance", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance["pending"], "50.00", "{balance}");
    let balance: Value = app
        .get("/v1/distributors/up/balance", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance["pending"], "50.00", "{balance}");
    assert!(app.store.verify_ledger().await.unwrap().is_clean());
}

async fn void(app: &TestApp, order_id: &str) {
    let response = app
        .post_json(
            &format!("/v1/orders/{order_id}/void-commission"),
            &app.ops,
            &json!({"reason": "fake buyer"}),
        )
        .await;
    assert_eq!(response.status(), 200);
}

async fn a_voided_order_lifts_no_tier_and_fills_no_daily_cap(backend: Backend) {
    let rules = r#"daily_cap = "150.00"
[tiers]
steps = [ { from = "0.00", level1 = "10%" }, { from = "1000.00", level1 = "15%" } ]
"#;
    let app = app_with(backend, rules).await;
    app.create_distributor("seller", None, None).await;

    // 1000 → month 1000: 15% = 150.00, the whole day's cap.
    let first = ingest(&app, &sale("v-1", "seller", "1000.00")).await;
    assert_eq!(
        lines_of(&first, "seller"),
        [(1, "15%".to_owned(), pct("1000.00", 15))]
    );
    // Voided, it sold nothing and earned nothing: 500 → month 500, 10%, untrimmed.
    void(&app, "v-1").await;
    let second = ingest(&app, &sale("v-2", "seller", "500.00")).await;
    assert_eq!(
        lines_of(&second, "seller"),
        [(1, "10%".to_owned(), pct("500.00", 10))]
    );
    assert_eq!(steps(&second["commissions"][0]), ["rate"], "{second}");
    // A refund of the voided order takes nothing off twice: 500 more → month 1000, 15%.
    let refunded = app
        .post_json(
            "/v1/orders/v-1/refunds",
            &app.ingest,
            &json!({"refund_id": "r-1", "amount": "500.00"}),
        )
        .await;
    assert_eq!(refunded.status(), 200);
    let third = ingest(&app, &sale("v-3", "seller", "500.00")).await;
    assert_eq!(
        lines_of(&third, "seller"),
        [(1, "15%".to_owned(), pct("500.00", 15))]
    );
    assert!(app.store.verify_ledger().await.unwrap().is_clean());
}

async fn risky_orders_are_flagged_and_held_longer(backend: Backend) {
    let rules = "[risk]\nsame_buyer_orders_per_day = 2\nextra_hold_days = 3\n";
    let app = app_with(backend, rules).await;
    app.create_distributor("seller", None, None).await;

    let first = ingest(&app, &sale("k-1", "seller", "100.00")).await;
    let second = ingest(&app, &sale("k-2", "seller", "100.00")).await;
    assert_eq!(first["risk_flags"], json!([]));
    assert_eq!(second["risk_flags"], json!([]));
    let third = ingest(&app, &sale("k-3", "seller", "100.00")).await;
    let flags = third["risk_flags"].as_array().unwrap();
    assert_eq!(flags.len(), 1, "{third}");
    assert!(
        flags[0]
            .as_str()
            .unwrap()
            .starts_with("same_buyer_over_limit"),
        "{third}"
    );
    assert_eq!(third["extra_hold_days"], 3);
    let usual: DateTime<Utc> = first["release_at"].as_str().unwrap().parse().unwrap();
    let longer: DateTime<Utc> = third["release_at"].as_str().unwrap().parse().unwrap();
    // Three more business days: at least three calendar days later.
    assert!(longer >= usual + Duration::days(3), "{usual} → {longer}");
    // A self-purchase (buyer = seller) that does not pay is flagged too.
    let own = Sale {
        buyer: "seller",
        ..sale("k-4", "seller", "100.00")
    };
    let own = ingest(&app, &own).await;
    assert_eq!(own["risk_flags"], json!(["self_purchase"]));

    // The timeline says so, and so does the console.
    let timeline = order(&app, "k-3").await["timeline"].clone();
    assert!(
        timeline
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["step"] == "risk" && event["outcome"] == "flagged"),
        "{timeline}"
    );
    let cookie = sign_in(&app, &app.ops).await;
    let page = get_page(&app, "/ops", &cookie).await.text().await.unwrap();
    assert!(page.contains("id=\"flagged-k-3\""), "{page}");
    assert!(page.contains("id=\"flagged-k-4\""));
    assert!(!page.contains("id=\"flagged-k-1\""));
}

async fn a_cleared_distributor_gets_an_explained_zero_line(backend: Backend) {
    let app = app_with(backend, "").await;
    app.create_distributor("top", None, None).await;
    let cleared = app
        .post_json(
            "/v1/distributors",
            &app.ingest,
            &json!({"id": "middle", "name": "m", "referrer_id": "top", "status": "cleared"}),
        )
        .await;
    assert_eq!(cleared.status(), 201);
    app.create_distributor("seller", Some("middle"), None).await;

    let placed = ingest(&app, &sale("x-1", "seller", "100.00")).await;
    assert_eq!(
        lines_of(&placed, "seller"),
        [(1, "10%".to_owned(), pct("100.00", 10))]
    );
    assert_eq!(
        lines_of(&placed, "middle"),
        [(2, "0%".to_owned(), Decimal::ZERO)]
    );
    assert_eq!(
        lines_of(&placed, "top"),
        [(3, "2%".to_owned(), pct("100.00", 2))]
    );
    let zero = placed["commissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["beneficiary_id"] == "middle")
        .unwrap();
    assert_eq!(steps(zero), ["cleared"]);
    // Released, the zero line moves nothing and the ledger stays whole.
    let balance: Value = app
        .get("/v1/distributors/middle/balance", &app.ops)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance["pending"], "0.00");
    assert!(app.store.verify_ledger().await.unwrap().is_clean());
}

/// Every rule on at once, and a chain of three: the test works out each
/// order's lines from the plan's numbers, in ingest order, and compares.
async fn every_rule_together_pays_what_the_test_computes(backend: Backend) {
    let at = confirmed();
    let rules = format!(
        r#"daily_cap = "120.00"
[tiers]
steps = [ {{ from = "0.00", level1 = "10%" }}, {{ from = "600.00", level1 = "12%" }} ]
[[campaigns]]
name = "week"
from = {}
to = {}
multiplier = "1.5"
[risk]
same_buyer_orders_per_day = 3
extra_hold_days = 2
"#,
        (at - Duration::days(1)).to_rfc3339(),
        (at + Duration::days(1)).to_rfc3339(),
    );
    let app = app_with(backend, &rules).await;
    app.create_distributor("l3", None, None).await;
    app.create_distributor("l2", Some("l3"), None).await;
    app.create_distributor("l1", Some("l2"), None).await;

    // The test's own model: month sales of l1, day earnings per person.
    let mut month_sales = Decimal::ZERO;
    let mut earned = [Decimal::ZERO; 3];
    let cap = Decimal::new(12000, 2);
    let amounts = ["250.00", "250.00", "300.00", "400.00", "80.00"];
    let mut expected_total = Decimal::ZERO;
    for (index, amount) in amounts.iter().enumerate() {
        let id = format!("all-{index}");
        let order = ingest(&app, &sale(&id, "l1", amount)).await;
        let value: Decimal = amount.parse().unwrap();
        month_sales += value;
        let tier = if month_sales >= Decimal::from(600) {
            12
        } else {
            10
        };
        // Campaign ×1.5 on every rate: 10% → 15%, 12% → 18%, 5% → 7.5%, 2% → 3%.
        let rates = [
            Decimal::from(tier) * Decimal::new(15, 1),
            Decimal::new(75, 1),
            Decimal::from(3),
        ];
        // Order cap 30% of the order: 15+7.5+3 = 25.5% or 18+7.5+3 = 28.5%, under it.
        for (level, (rate, who)) in rates.iter().zip(["l1", "l2", "l3"]).enumerate() {
            let uncapped = (value * rate / Decimal::from(100))
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            let room = (cap - earned[level]).max(Decimal::ZERO);
            let paid = uncapped.min(room);
            earned[level] += paid;
            expected_total += paid;
            let got: Decimal = lines_of(&order, who).iter().map(|line| line.2).sum();
            assert_eq!(got, paid, "order {id} level {} ({who}): {order}", level + 1);
        }
        // The 4th and 5th orders of buyer-1 today pass the limit of 3.
        assert_eq!(
            order["risk_flags"].as_array().unwrap().is_empty(),
            index < 3,
            "{order}"
        );
        assert!(total_of(&order) <= value * Decimal::new(30, 2));
    }
    let mut pending = Decimal::ZERO;
    for who in ["l1", "l2", "l3"] {
        let balance: Value = app
            .get(&format!("/v1/distributors/{who}/balance"), &app.ops)
            .await
            .json()
            .await
            .unwrap();
        pending += money(&balance["pending"]);
    }
    assert_eq!(pending, expected_total);
    assert!(app.store.verify_ledger().await.unwrap().is_clean());
}

async fn a_plan_change_mid_month_pins_each_order_and_keeps_the_month(backend: Backend) {
    let rules = r#"
[tiers]
steps = [ { from = "0.00", level1 = "10%" }, { from = "1000.00", level1 = "15%" } ]
"#;
    let app = app_with(backend, rules).await;
    app.create_distributor("seller", None, None).await;
    let at = confirmed();
    let first = ingest(&app, &sale("p-1", "seller", "900.00")).await;
    let pinned = first["plan_version"].as_i64().unwrap();

    // A new plan (steps moved) in force from now on: a later order uses it,
    // and its tier counts the month's sales made under the old one.
    let newer = apply_plan(
        &app,
        "v3",
        r#"
[tiers]
steps = [ { from = "0.00", level1 = "8%" }, { from = "950.00", level1 = "11%" } ]
"#,
    )
    .await;
    assert!(newer > pinned);
    let later = Sale {
        confirmed_at: Utc::now(),
        placed_at: at,
        ..sale("p-2", "seller", "100.00")
    };
    let second = ingest(&app, &later).await;
    assert_eq!(second["plan_version"], newer);
    assert_eq!(
        lines_of(&second, "seller"),
        [(1, "11%".to_owned(), pct("100.00", 11))]
    );
    // The first order keeps its plan and its lines, refund or not.
    let refunded = app
        .post_json(
            "/v1/orders/p-1/refunds",
            &app.ingest,
            &json!({"refund_id": "r-1", "amount": "100.00"}),
        )
        .await;
    assert_eq!(refunded.status(), 200);
    let first = order(&app, "p-1").await;
    assert_eq!(first["plan_version"], pinned);
    assert_eq!(
        lines_of(&first, "seller"),
        [(1, "10%".to_owned(), pct("800.00", 10))]
    );
}
