//! Withholding certificates over HTTP: a paid withdrawal gets a signed PDF
//! whose text carries the Chinese labels and the right amounts; it verifies
//! with and without its manifest, and a changed byte anywhere fails; another
//! distributor cannot fetch it; corrections get a new number naming the old;
//! a month's zip streams every certificate with the keys; the monthly
//! schedule prepares last month's declaration; `fenrun certificate verify`.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use fenrun::domain::ids::CertificateNumber;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, error_of};
use crate::on_both_backends;
use crate::withdrawals::{advance_days, funded_distributor, request, spawn, wait_for_state};

on_both_backends!(
    a_paid_withdrawal_gets_a_signed_certificate_only_its_distributor_and_the_accountant_can_fetch,
    certificates_verify_with_or_without_their_manifest_and_a_changed_byte_fails,
    a_correction_gets_a_new_number_that_names_the_old_and_supersedes_it,
    a_months_zip_streams_every_certificate_and_the_keys,
    the_schedule_prepares_last_months_declaration_on_the_first,
);

const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";

/// A distributor paid 1500.00 (tax 140.00, net 1360.00 under the
/// per-payment method); returns (token, withdrawal, certificate number).
pub async fn certified_payout(app: &TestApp, distributor: &str) -> (String, Value, String) {
    let (token, account) = funded_distributor(app, distributor, "2000.00", OPENID).await;
    advance_days(app, 4).await;
    let response = request(
        app,
        &token,
        &format!("{distributor}-1"),
        &json!({"distributor_id": distributor, "amount": "1500.00", "payout_account_id": account, "speed": "standard"}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    wait_for_state(app, &id, "paid").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view: Value = app
            .get(&format!("/v1/withdrawals/{id}"), &app.ops)
            .await
            .json()
            .await
            .unwrap();
        if let Some(number) = view["certificate_number"].as_str() {
            return (token, view.clone(), number.to_owned());
        }
        assert!(
            Instant::now() < deadline,
            "no certificate for {id}: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn bytes_of(app: &TestApp, path: &str, token: &str) -> Vec<u8> {
    let response = app.get(path, token).await;
    assert_eq!(response.status(), 200, "{path}");
    response.bytes().await.unwrap().to_vec()
}

async fn verify(app: &TestApp, pdf: &[u8], manifest: Option<&[u8]>) -> Value {
    let mut form = reqwest::multipart::Form::new().part(
        "pdf",
        reqwest::multipart::Part::bytes(pdf.to_vec()).file_name("certificate.pdf"),
    );
    if let Some(manifest) = manifest {
        form = form.part(
            "manifest",
            reqwest::multipart::Part::bytes(manifest.to_vec()).file_name("certificate.json"),
        );
    }
    // No token: anyone handed a certificate may check it.
    let response = app
        .client
        .post(app.url("/v1/tax/certificates/verify"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn a_paid_withdrawal_gets_a_signed_certificate_only_its_distributor_and_the_accountant_can_fetch(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let (carol, withdrawal, number) = certified_payout(&app, "carol").await;
    let month = withdrawal["tax_month"].as_str().unwrap();
    assert!(
        number.starts_with(&format!("FR{}-", month.replace('-', ""))),
        "{number}"
    );

    let pdf = bytes_of(&app, &format!("/v1/tax/certificates/{number}.pdf"), &carol).await;
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdf_extract::extract_text_from_mem(&pdf).unwrap();
    for expected in [
        "个人所得税扣缴凭证",
        "凭证编号",
        number.as_str(),
        "扣缴义务人纳税人识别号",
        "李四",
        "110***********",
        "劳务报酬所得",
        "本次收入",
        "1500.00",
        "700.00",
        "140.00",
        "本次扣缴税额",
        "实付金额",
        "1360.00",
        "验证码",
        "纳税记录/收入纳税明细查询",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(
        !text.contains("110101199003071230") && !text.contains("1101011990030712"),
        "the full ID number must not be printed:\n{text}"
    );

    let listed: Value = app
        .get(
            &format!("/v1/tax/certificates?month={month}"),
            &app.accountant,
        )
        .await
        .json()
        .await
        .unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed:#}");
    assert_eq!(items[0]["number"], number.as_str());
    assert_eq!(
        (&items[0]["gross"], &items[0]["tax"], &items[0]["net"]),
        (&json!("1500.00"), &json!("140.00"), &json!("1360.00"))
    );
    assert_eq!(listed["next_after"], Value::Null);
    // The distributor's own list is theirs whatever they ask for.
    let own: Value = app
        .get(&format!("/v1/tax/certificates?month={month}"), &carol)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["items"].as_array().unwrap().len(), 1);

    app.create_distributor("dave", None, None).await;
    let dave = app.distributor_token("dave").await;
    for path in [
        format!("/v1/tax/certificates/{number}.pdf"),
        format!("/v1/tax/certificates/{number}.json"),
    ] {
        let response = app.get(&path, &dave).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = app
        .get(
            &format!("/v1/tax/certificates?month={month}&distributor_id=carol"),
            &dave,
        )
        .await;
    assert_eq!(response.status(), 403);
    let dave_list: Value = app
        .get(&format!("/v1/tax/certificates?month={month}"), &dave)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dave_list["items"].as_array().unwrap().len(), 0);
    for (token, path) in [
        (&app.ops, format!("/v1/tax/certificates/{number}.pdf")),
        (&app.ingest, format!("/v1/tax/certificates?month={month}")),
        (&carol, format!("/v1/tax/certificates/{month}.zip")),
    ] {
        let response = app.get(&path, token).await;
        assert_eq!(response.status(), 403, "{path}");
    }
    let response = app
        .client
        .get(app.url(&format!("/v1/tax/certificates/{number}.pdf")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    for (path, code) in [
        ("/v1/tax/certificates?month=2026-13", "invalid_month"),
        ("/v1/tax/certificates", "invalid_month"),
        ("/v1/tax/certificates/FR%2F..%2Fx.pdf", "invalid_file"),
        ("/v1/tax/certificates/abc.exe", "invalid_file"),
        ("/v1/tax/certificates/2026-1.zip", "invalid_month"),
    ] {
        let response = app.get(path, &app.accountant).await;
        assert_eq!(error_of(response, 400).await["code"], code, "{path}");
    }
    let response = app
        .get("/v1/tax/certificates/FR000000-NOPE.pdf", &app.accountant)
        .await;
    assert_eq!(response.status(), 404);

    // The step ran twice (a crash before its job was acknowledged): the first stands.
    let number = CertificateNumber::parse(number).unwrap();
    let (record, stored_pdf) = app.store.certificate(&number).await.unwrap().unwrap();
    let again = app
        .store
        .insert_certificate(&fenrun::store::NewCertificate {
            number: CertificateNumber::parse("FR-SECOND-RUN").unwrap(),
            withdrawal_id: record.withdrawal_id.clone(),
            distributor_id: record.distributor_id.clone(),
            tax_month: record.tax_month.clone(),
            key_id: record.key_id.clone(),
            gross: record.gross,
            tax: record.tax,
            net: record.net,
            pdf: b"%PDF-second".to_vec(),
            pdf_sha256: "0".repeat(64),
            manifest: "{}".to_owned(),
            replaces: None,
            reason: None,
            issued_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(again, number);
    assert!(
        app.store
            .certificate(&CertificateNumber::parse("FR-SECOND-RUN").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(stored_pdf, pdf);
    assert!(
        app.store
            .paid_without_certificate(10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn certificates_verify_with_or_without_their_manifest_and_a_changed_byte_fails(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let (carol, _, number) = certified_payout(&app, "carol").await;
    let pdf = bytes_of(&app, &format!("/v1/tax/certificates/{number}.pdf"), &carol).await;
    let manifest = bytes_of(&app, &format!("/v1/tax/certificates/{number}.json"), &carol).await;

    let keys: Value = app
        .client
        .get(app.url("/v1/tax/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let manifest_json: Value = serde_json::from_slice(&manifest).unwrap();
    let key_id = manifest_json["signed"]["key_id"].as_str().unwrap();
    assert_eq!(keys["current_key_id"], key_id);
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|key| key["key_id"] == key_id && key["jwk"]["crv"] == "Ed25519"),
        "{keys:#}"
    );

    for verdict in [
        verify(&app, &pdf, Some(&manifest)).await,
        verify(&app, &pdf, None).await,
    ] {
        assert_eq!(verdict["genuine"], true, "{verdict:#}");
        assert_eq!(verdict["number"], number.as_str());
        assert_eq!(
            (&verdict["gross"], &verdict["tax"], &verdict["net"]),
            (&json!("1500.00"), &json!("140.00"), &json!("1360.00"))
        );
        assert_eq!(verdict["key_id"], key_id);
    }

    // One changed byte, in the PDF's middle, its last byte, or the manifest.
    for position in [pdf.len() / 2, pdf.len() - 1] {
        let mut tampered = pdf.clone();
        tampered[position] ^= 0x01;
        let with_manifest = verify(&app, &tampered, Some(&manifest)).await;
        assert_eq!(with_manifest["genuine"], false);
        assert_eq!(with_manifest["reason_code"], "pdf_mismatch");
        let alone = verify(&app, &tampered, None).await;
        assert_eq!(alone["genuine"], false);
        assert_eq!(alone["reason_code"], "unknown_pdf");
    }
    let text = String::from_utf8(manifest.clone()).unwrap();
    let edited = text.replacen("\"gross_fen\":150000", "\"gross_fen\":150001", 1);
    assert_ne!(edited, text);
    let verdict = verify(&app, &pdf, Some(edited.as_bytes())).await;
    assert_eq!(
        (verdict["genuine"].clone(), verdict["reason_code"].clone()),
        (json!(false), json!("bad_signature"))
    );
    let reformatted = serde_json::to_vec_pretty(&manifest_json).unwrap();
    let verdict = verify(&app, &pdf, Some(&reformatted)).await;
    assert_eq!(verdict["reason_code"], "manifest_not_canonical");

    // Bad uploads: clear errors, nothing verified.
    let response = app
        .client
        .post(app.url("/v1/tax/certificates/verify"))
        .multipart(reqwest::multipart::Form::new().text("manifest", "{}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response, 400).await["code"], "missing_pdf");
    let response = app
        .client
        .post(app.url("/v1/tax/certificates/verify"))
        .multipart(
            reqwest::multipart::Form::new()
                .text("pdf", "x")
                .text("other", "y"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response, 400).await["code"], "unknown_field");
}

async fn a_correction_gets_a_new_number_that_names_the_old_and_supersedes_it(backend: Backend) {
    let app = spawn(backend).await;
    let (carol, withdrawal, number) = certified_payout(&app, "carol").await;
    let id = withdrawal["id"].as_str().unwrap();
    let path = format!("/v1/tax/certificates/{number}/corrections");

    for (token, body, status, code) in [
        (&carol, json!({"reason": "typo"}), 403, "forbidden"),
        (
            &app.accountant,
            json!({"reason": "  "}),
            422,
            "invalid_reason",
        ),
        (&app.accountant, json!({"why": "x"}), 400, "unknown_field"),
    ] {
        let response = app.post_json(&path, token, &body).await;
        assert_eq!(error_of(response, status).await["code"], code, "{body}");
    }
    let response = app
        .post_json(
            "/v1/tax/certificates/FR000000-NOPE/corrections",
            &app.accountant,
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(response.status(), 404);

    let response = app
        .post_json(&path, &app.accountant, &json!({"reason": "纳税人姓名更正"}))
        .await;
    assert_eq!(response.status(), 201);
    let correction: Value = response.json().await.unwrap();
    let corrected = correction["number"].as_str().unwrap().to_owned();
    assert_eq!(corrected, format!("{number}-C1"));
    assert_eq!(correction["replaces"], number.as_str());
    assert_eq!(correction["reason"], "纳税人姓名更正");
    assert_eq!(correction["gross"], "1500.00");

    let view: Value = app
        .get(&format!("/v1/withdrawals/{id}"), &carol)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["certificate_number"], corrected.as_str());
    let pdf = bytes_of(
        &app,
        &format!("/v1/tax/certificates/{corrected}.pdf"),
        &carol,
    )
    .await;
    let text = pdf_extract::extract_text_from_mem(&pdf).unwrap();
    assert!(
        text.contains(&number),
        "the correction names the old number:\n{text}"
    );

    // The old one is still genuine (certificates are immutable) but superseded.
    let old_pdf = bytes_of(&app, &format!("/v1/tax/certificates/{number}.pdf"), &carol).await;
    let verdict = verify(&app, &old_pdf, None).await;
    assert_eq!(verdict["genuine"], true);
    assert_eq!(verdict["corrected_by"], corrected.as_str());

    // A certificate is corrected once; the next correction corrects the newest.
    let response = app
        .post_json(&path, &app.accountant, &json!({"reason": "again"}))
        .await;
    assert_eq!(
        error_of(response, 422).await["code"],
        "certificate_already_corrected"
    );
    let response = app
        .post_json(
            &format!("/v1/tax/certificates/{corrected}/corrections"),
            &app.admin,
            &json!({"reason": "again"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["number"], format!("{number}-C2"));
}

async fn a_months_zip_streams_every_certificate_and_the_keys(backend: Backend) {
    let app = spawn(backend).await;
    let (carol, withdrawal, number) = certified_payout(&app, "carol").await;
    let month = withdrawal["tax_month"].as_str().unwrap().to_owned();
    let pdf = bytes_of(&app, &format!("/v1/tax/certificates/{number}.pdf"), &carol).await;

    let response = app
        .get(
            &format!("/v1/tax/certificates/{month}.zip"),
            &app.accountant,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let archive = response.bytes().await.unwrap().to_vec();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    let mut names: Vec<String> = zip
        .file_names()
        .map(|name| name.unwrap().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("{number}.json"),
            format!("{number}.pdf"),
            "keys.json".to_owned()
        ]
    );
    let mut zipped = Vec::new();
    zip.by_name(&format!("{number}.pdf"))
        .unwrap()
        .read_to_end(&mut zipped)
        .unwrap();
    assert_eq!(zipped, pdf);
    let mut keys = String::new();
    zip.by_name("keys.json")
        .unwrap()
        .read_to_string(&mut keys)
        .unwrap();
    let keys: Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);

    // A month without certificates is an archive with the keys only.
    let response = app
        .get("/v1/tax/certificates/2020-01.zip", &app.accountant)
        .await;
    assert_eq!(response.status(), 200);
    let empty = zip::ZipArchive::new(std::io::Cursor::new(
        response.bytes().await.unwrap().to_vec(),
    ))
    .unwrap();
    let names: Vec<String> = empty
        .file_names()
        .map(|name| name.unwrap().into_owned())
        .collect();
    assert_eq!(names, vec!["keys.json".to_owned()]);
}

async fn the_schedule_prepares_last_months_declaration_on_the_first(backend: Backend) {
    let app = spawn(backend).await;
    let (_, withdrawal, _) = certified_payout(&app, "carol").await;
    let month = withdrawal["tax_month"].as_str().unwrap().to_owned();
    let prepared_csv = format!("/v1/tax/declarations/{month}.csv?as_prepared=true");
    let response = app.get(&prepared_csv, &app.accountant).await;
    assert_eq!(response.status(), 404, "the month is not over yet");

    // Past the 1st of the next month (and its 01:00 run) but not the one after.
    let mut waited = 0;
    loop {
        advance_days(&app, 1).await;
        waited += 1;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut found = None;
        while Instant::now() < deadline {
            let response = app.get(&prepared_csv, &app.accountant).await;
            if response.status() == 200 {
                found = Some(response.text().await.unwrap());
                break;
            }
            // Not the 1st yet: one check suffices.
            if waited < 28 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(csv) = found {
            let live = app
                .get(
                    &format!("/v1/tax/declarations/{month}.csv"),
                    &app.accountant,
                )
                .await
                .text()
                .await
                .unwrap();
            assert_eq!(csv, live);
            assert!(csv.contains("1500.00") && csv.contains("140.00"), "{csv}");
            break;
        }
        assert!(waited <= 32, "no declaration prepared for {month}");
    }
    let xlsx = app
        .get(
            &format!("/v1/tax/declarations/{month}.xlsx?as_prepared=true"),
            &app.accountant,
        )
        .await;
    assert_eq!(xlsx.status(), 200);
    assert!(xlsx.bytes().await.unwrap().starts_with(b"PK"));
}

#[tokio::test]
async fn the_command_line_says_genuine_or_not_genuine_online_and_offline() {
    let app = spawn(Backend::Sqlite).await;
    let (carol, _, number) = certified_payout(&app, "carol").await;
    let dir = tempfile::tempdir().unwrap();
    let pdf_path = dir.path().join(format!("{number}.pdf"));
    let pdf = bytes_of(&app, &format!("/v1/tax/certificates/{number}.pdf"), &carol).await;
    std::fs::write(&pdf_path, &pdf).unwrap();
    let keys = app
        .client
        .get(app.url("/v1/tax/keys"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keys_path = dir.path().join("keys.json");
    std::fs::write(&keys_path, &keys).unwrap();
    // Off the runtime's thread: the service under test runs on it, and a
    // write of its waiting to be polled would hold SQLite's lock meanwhile.
    let run = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fenrun"));
        command
            .args(args)
            .env("FENRUN_DATABASE_URL", &app.db.url)
            .env_remove("FENRUN_CONFIG")
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        async move {
            tokio::task::spawn_blocking(move || command.output().expect("run fenrun"))
                .await
                .unwrap()
        }
    };
    let pdf_arg = pdf_path.to_str().unwrap();

    // Online: the manifest is the one stored for this PDF.
    let output = run(&["certificate", "verify", pdf_arg]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("genuine: certificate {number}"))
            && stdout.contains("gross 1500.00")
            && stdout.contains("tax withheld 140.00")
            && stdout.contains("net paid 1360.00"),
        "{stdout}"
    );

    // Offline: the manifest beside the PDF and the published keys.
    let manifest = bytes_of(&app, &format!("/v1/tax/certificates/{number}.json"), &carol).await;
    std::fs::write(pdf_path.with_extension("json"), &manifest).unwrap();
    let output = run(&[
        "certificate",
        "verify",
        pdf_arg,
        "--keys",
        keys_path.to_str().unwrap(),
        "--json",
    ])
    .await;
    assert!(output.status.success());
    let verdict: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdict["genuine"], true);
    assert_eq!(verdict["net"], "1360.00");

    let mut tampered = pdf.clone();
    tampered[pdf.len() / 3] ^= 0x20;
    std::fs::write(&pdf_path, &tampered).unwrap();
    for args in [
        vec!["certificate", "verify", pdf_arg],
        vec![
            "certificate",
            "verify",
            pdf_arg,
            "--keys",
            keys_path.to_str().unwrap(),
        ],
    ] {
        let output = run(&args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("NOT genuine (pdf_mismatch)"), "{stdout}");
    }
}
