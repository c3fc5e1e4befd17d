//! The real `fenrun tax quote`: the accountant's trial calculation (试算),
//! checked against the worked examples of the tax reference (§6).

use std::process::{Command, Output};

fn tax_quote(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .args(["tax", "quote"])
        .args(args)
        .env_remove("FENRUN_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run fenrun")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn two_payouts_of_2000_in_one_month_withhold_240_then_400() {
    let output = tax_quote(&[
        "--method",
        "per-payment",
        "--month",
        "2026-03",
        "--payments",
        "2000.00,2000.00",
        "--json",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let quote: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(quote["method"], "per-payment");
    assert_eq!(quote["month"], "2026-03");
    let payouts = quote["payouts"].as_array().unwrap();
    assert_eq!(payouts.len(), 2);
    assert_eq!(payouts[0]["income_to_date"], "2000.00");
    assert_eq!(payouts[0]["fee"], "800.00");
    assert_eq!(payouts[0]["taxable"], "1200.00");
    assert_eq!(payouts[0]["rate"], "20%");
    assert_eq!(payouts[0]["withheld_now"], "240.00");
    assert_eq!(payouts[0]["net"], "1760.00");
    assert_eq!(payouts[1]["income_to_date"], "4000.00");
    assert_eq!(payouts[1]["tax_to_date"], "640.00");
    assert_eq!(payouts[1]["withheld_before"], "240.00");
    assert_eq!(payouts[1]["withheld_now"], "400.00");
    assert_eq!(payouts[1]["net"], "1600.00");
    assert_eq!(quote["total_withheld"], "640.00");

    let table = tax_quote(&[
        "--method",
        "per-payment",
        "--month",
        "2026-03",
        "--payments",
        "2000.00,2000.00",
    ]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let stdout = text(&table.stdout);
    assert!(stdout.contains("withheld now"), "{stdout}");
    assert!(stdout.contains("400.00"), "{stdout}");
}

#[test]
fn the_cumulative_method_takes_the_year_so_far_from_flags() {
    // §6: 10,000 in January (90.00 withheld), 10,000 in February → 90.00.
    let output = tax_quote(&[
        "--method",
        "cumulative",
        "--month",
        "2026-02",
        "--months-count",
        "2",
        "--prior-income",
        "10000.00",
        "--prior-withheld",
        "90.00",
        "--payments",
        "10000.00",
        "--json",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let quote: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let payout = &quote["payouts"][0];
    assert_eq!(payout["income_to_date"], "20000.00");
    assert_eq!(payout["basic_deduction"], "10000.00");
    assert_eq!(payout["taxable"], "6000.00");
    assert_eq!(payout["tax_to_date"], "180.00");
    assert_eq!(payout["withheld_now"], "90.00");

    let missing = tax_quote(&[
        "--method",
        "cumulative",
        "--month",
        "2026-02",
        "--payments",
        "10000.00",
    ]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("--months-count"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn a_payment_with_three_decimals_or_a_bad_month_is_refused_clearly() {
    let output = tax_quote(&[
        "--method",
        "per-payment",
        "--month",
        "2026-03",
        "--payments",
        "2000.00,1.234",
    ]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("1.234") && stderr.contains("at most two decimals"),
        "{stderr}"
    );

    let month = tax_quote(&[
        "--method",
        "per-payment",
        "--month",
        "2026-3",
        "--payments",
        "1.00",
    ]);
    assert!(!month.status.success());
    assert!(
        text(&month.stderr).contains("YYYY-MM"),
        "{}",
        text(&month.stderr)
    );
}
