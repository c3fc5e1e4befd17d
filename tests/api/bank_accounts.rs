//! Bank payout accounts (issue 15, "Bad input"): the bank must be one we pay
//! to, named by its Chinese name or its code and stored by its full name; a
//! company account (`account_type` "1") names its bank and its branch; each
//! bad input is refused with its own code and field, and nothing is stored.
//! A company account is paid through the sandbox's bank rail, which refuses
//! a company card sent without its branch as Alipay does.

use fenrun::domain::ids::DistributorId;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_of, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::withdrawals::{advance_days, funded_distributor, request, sandbox, wait_for_state};

on_both_backends!(
    each_bad_payout_account_is_refused_with_its_code_and_field_and_nothing_is_stored,
    a_bank_is_named_by_its_chinese_name_or_code_and_stored_by_its_full_name,
    a_company_account_is_accepted_with_its_branch_and_paid_through_the_sandbox,
);

const CARD: &str = "6222021234567894";
const COMPANY: &str = "杭州某某科技有限公司";
const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

async fn add(app: &TestApp, distributor: &str, body: &Value) -> reqwest::Response {
    app.post_json(
        &format!("/v1/distributors/{distributor}/payout-accounts"),
        &app.ingest,
        body,
    )
    .await
}

/// A distributor's payout accounts as `GET …/payout-accounts` lists them.
async fn listed(app: &TestApp, distributor: &str, token: &str) -> Value {
    let response = app
        .get(
            &format!("/v1/distributors/{distributor}/payout-accounts"),
            token,
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn each_bad_payout_account_is_refused_with_its_code_and_field_and_nothing_is_stored(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.create_distributor("d1", None, None).await;
    let company = |extra: Value| {
        let mut body = json!({"channel": "bank", "card_number": CARD, "bank_name": "招商银行", "account_type": "1", "holder_name": COMPANY});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    for (body, code, field) in [
        // The card's Luhn digit is wrong.
        (
            json!({"channel": "bank", "card_number": "6222021234567895", "bank_name": "招商银行"}),
            "invalid_card_number",
            "card_number",
        ),
        // Banks we do not pay to, and names that are no bank's.
        (
            json!({"channel": "bank", "card_number": CARD, "bank_name": "花旗银行"}),
            "unknown_bank",
            "bank_name",
        ),
        (
            json!({"channel": "bank", "card_number": CARD, "bank_name": "Bank of Nowhere"}),
            "unknown_bank",
            "bank_name",
        ),
        (
            json!({"channel": "bank", "card_number": CARD, "bank_name": ""}),
            "unknown_bank",
            "bank_name",
        ),
        (
            json!({"channel": "bank", "card_number": CARD, "bank_name": "招商银行", "account_type": "3"}),
            "invalid_account_type",
            "account_type",
        ),
        // A company account without its branch or bank code.
        (
            company(json!({"inst_name": "招商银行"})),
            "bank_branch_required",
            "bank_code",
        ),
        (
            company(
                json!({"inst_name": "招商银行", "province": "浙江省", "branch_name": "杭州分行"}),
            ),
            "bank_branch_required",
            "city",
        ),
        (
            company(json!({"bank_code": "308331012345"})),
            "inst_name_required",
            "inst_name",
        ),
        (
            company(json!({"inst_name": "某某银行", "bank_code": "308331012345"})),
            "unknown_bank",
            "inst_name",
        ),
        (
            company(json!({"inst_name": "招商银行", "bank_code": "30833101"})),
            "invalid_bank_code",
            "bank_code",
        ),
        (
            json!({"channel": "bank", "card_number": CARD, "bank_name": "招商银行", "account_type": "1", "inst_name": "招商银行", "bank_code": "308331012345"}),
            "holder_name_required",
            "holder_name",
        ),
        // A personal account given a company's branch: said, not dropped.
        (
            json!({"channel": "bank", "card_number": CARD, "bank_name": "招商银行", "bank_code": "308331012345"}),
            "company_account_field",
            "bank_code",
        ),
        // Alipay accounts that are neither a mainland mobile number nor an email.
        (
            json!({"channel": "alipay", "account": "alice"}),
            "invalid_alipay_account",
            "account",
        ),
        (
            json!({"channel": "alipay", "account": "1381234567"}),
            "invalid_alipay_account",
            "account",
        ),
        (
            json!({"channel": "alipay", "account": "12812345678"}),
            "invalid_alipay_account",
            "account",
        ),
        (
            json!({"channel": "alipay", "account": "alice@localhost"}),
            "invalid_alipay_account",
            "account",
        ),
    ] {
        let error = error_of(add(&app, "d1", &body).await, 422).await;
        assert_eq!(error["code"], code, "{body}: {error}");
        assert_eq!(error["field"], field, "{body}: {error}");
        // The message never repeats what was sent.
        let message = error["message"].as_str().unwrap();
        for value in body.as_object().unwrap().values() {
            let value = value.as_str().unwrap();
            if value.chars().count() > 3 && !["招商银行", "bank", "alipay"].contains(&value) {
                assert!(!message.contains(value), "{message} repeats {value}");
            }
        }
    }
    // The unknown bank's answer says what to send.
    let error = error_of(
        add(
            &app,
            "d1",
            &json!({"channel": "bank", "card_number": CARD, "bank_name": "花旗银行"}),
        )
        .await,
        422,
    )
    .await;
    let message = error["message"].as_str().unwrap();
    for code in ["ICBC", "CMB", "PSBC", "BJBANK", "SHBANK"] {
        assert!(message.contains(code), "{message}");
    }
    assert!(message.contains("工商银行"), "{message}");

    let d1 = DistributorId::parse("d1").unwrap();
    assert!(app.store.payout_accounts(&d1).await.unwrap().is_empty());
    let listed = listed(&app, "d1", &app.admin).await;
    assert_eq!(listed["items"], json!([]));
}

async fn a_bank_is_named_by_its_chinese_name_or_code_and_stored_by_its_full_name(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_distributor("d2", None, None).await;
    for (given, stored) in [
        ("中国工商银行", "中国工商银行"),
        ("工商银行", "中国工商银行"),
        ("icbc", "中国工商银行"),
        (" 邮储银行 ", "中国邮政储蓄银行"),
        ("Cmb", "招商银行"),
        ("上海银行", "上海银行"),
    ] {
        let response = add(
            &app,
            "d2",
            &json!({"channel": "bank", "card_number": CARD, "bank_name": given, "holder_name": "李四"}),
        )
        .await;
        assert_eq!(response.status(), 201, "{given}");
        let account: Value = response.json().await.unwrap();
        assert_eq!(account["bank_name"], stored, "{given}");
        assert_eq!(account["account_type"], "2", "personal by default");
        assert_eq!(account["holder_name"], "李*");
        assert!(account.get("inst_name").is_none(), "{account}");
    }
    let explicit = add(
        &app,
        "d2",
        &json!({"channel": "bank", "card_number": CARD, "bank_name": "CCB", "account_type": "2"}),
    )
    .await;
    assert_eq!(explicit.status(), 201);
    let listed = listed(&app, "d2", &app.admin).await;
    let banks: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|account| account["bank_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        banks,
        [
            "中国工商银行",
            "中国工商银行",
            "中国工商银行",
            "中国邮政储蓄银行",
            "招商银行",
            "上海银行",
            "中国建设银行"
        ]
    );
}

async fn a_company_account_is_accepted_with_its_branch_and_paid_through_the_sandbox(
    backend: Backend,
) {
    use fenrun_integrations::Channel;
    let app = spawn_app_with(backend, |settings| settings.simulated_clock = true).await;
    let (token, _) = funded_distributor(&app, "fay", "3000.00", OPENID).await;
    // By 联行号, and by the branch's place and name.
    let by_code = add(
        &app,
        "fay",
        &json!({"channel": "bank", "card_number": CARD, "bank_name": "招商银行", "account_type": "1",
                "holder_name": COMPANY, "inst_name": "CMB", "bank_code": "308331012345"}),
    )
    .await;
    assert_eq!(by_code.status(), 201);
    let by_code: Value = by_code.json().await.unwrap();
    assert_eq!(by_code["account_type"], "1", "{by_code}");
    assert_eq!(by_code["inst_name"], "招商银行", "{by_code}");
    assert_eq!(by_code["bank_code"], "308331012345", "{by_code}");
    assert_eq!(
        by_code["holder_name"], COMPANY,
        "a company's name is public: shown whole"
    );
    assert!(by_code.get("branch_name").is_none(), "{by_code}");
    let by_place = add(
        &app,
        "fay",
        &json!({"channel": "bank", "card_number": "6222 0212 3456 7894", "bank_name": "ICBC", "account_type": "1",
                "holder_name": COMPANY, "inst_name": "工商银行", "province": "浙江省", "city": "杭州市",
                "branch_name": "中国工商银行杭州分行营业部"}),
    )
    .await;
    assert_eq!(by_place.status(), 201);
    let by_place: Value = by_place.json().await.unwrap();
    assert_eq!(
        (
            &by_place["inst_name"],
            &by_place["province"],
            &by_place["city"],
            &by_place["branch_name"]
        ),
        (
            &json!("中国工商银行"),
            &json!("浙江省"),
            &json!("杭州市"),
            &json!("中国工商银行杭州分行营业部")
        ),
        "{by_place}"
    );
    assert!(by_place.get("bank_code").is_none(), "{by_place}");
    // Listed as answered (but for the time's precision, the store's).
    let listed = listed(&app, "fay", &token).await;
    let without_time = |account: &Value| {
        let mut account = account.clone();
        account.as_object_mut().unwrap().remove("created_at");
        account
    };
    let items: Vec<Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(without_time)
        .collect();
    assert!(
        items.contains(&without_time(&by_code)) && items.contains(&without_time(&by_place)),
        "{listed:#}"
    );

    advance_days(&app, 4).await;
    let mut nets = 0;
    for (key, account) in [("by-code", &by_code), ("by-place", &by_place)] {
        let body = json!({"distributor_id": "fay", "amount": "300.00", "payout_account_id": account["id"], "speed": "express"});
        let response = request(&app, &token, key, &body).await;
        assert_eq!(response.status(), 202);
        let created: Value = response.json().await.unwrap();
        let paid = wait_for_state(&app, created["id"].as_str().unwrap(), "paid").await;
        assert_eq!(paid["channel"], "bank");
        nets += paid["net"]
            .as_str()
            .unwrap()
            .replace('.', "")
            .parse::<i64>()
            .unwrap();
    }
    // The sandbox refuses a company card sent without its bank and branch
    // (INVALID_PARAMETER, and the withdrawal would fail): both went out.
    let sent = sandbox(&app).ledger().channel(Channel::Bank);
    assert_eq!((sent.sent_count, sent.sent_fen), (2, nets), "{sent:?}");
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}
