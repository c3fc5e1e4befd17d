//! Certificates end to end: render, read the text back, sign, verify, and
//! tamper with every part of the pair.

use std::time::Instant;

use base64::Engine as _;
use chrono::{NaiveDate, TimeZone, Utc};

use super::*;
use crate::domain::tax::{withhold_cumulative, withhold_per_payment};

/// A March 2026 payout of 3000.00 under the per-payment method: fee 800.00,
/// taxable 2200.00 at 20%, tax 440.00, net 2560.00.
fn march_payout() -> CertificateData {
    let withholding =
        withhold_per_payment(Money::ZERO, Money::ZERO, Money::from_fen(300_000)).unwrap();
    CertificateData {
        number: "91310000MA1FL0000X-202603-d_0042-001".to_owned(),
        references: None,
        agent_name: "上海示例网络科技有限公司".to_owned(),
        agent_tin: "91310000MA1FL0000X".to_owned(),
        distributor_id: "d_0042".to_owned(),
        distributor_name: "张三丰".to_owned(),
        masked_id_number: "110101********0011".to_owned(),
        income_item: INCOME_ITEM_SERVICE.to_owned(),
        tax_period: "2026年3月1日至2026年3月31日".to_owned(),
        payment_date: NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
        net_paid: withholding.net,
        withholding,
        withdrawal_id: "w_7f3a9c".to_owned(),
        issued_at: Utc.with_ymd_and_hms(2026, 3, 31, 6, 30, 0).unwrap(),
    }
}

fn keys_of(signer: &CertificateSigner) -> Vec<(String, Vec<u8>)> {
    vec![(signer.key_id().to_owned(), signer.public_key().to_vec())]
}

fn text_of(pdf: &[u8]) -> String {
    pdf_extract::extract_text_from_mem(pdf).expect("the PDF's text can be extracted")
}

fn assert_not_genuine(verification: &Verification) {
    assert!(
        matches!(verification, Verification::NotGenuine(_)),
        "expected not genuine, got {verification:?}"
    );
}

#[test]
fn the_sample_withholding_has_the_expected_figures() {
    let w = march_payout().withholding;
    assert_eq!(w.gross, Money::from_fen(300_000));
    assert_eq!(w.fee, Money::from_fen(80_000));
    assert_eq!(w.taxable, Money::from_fen(220_000));
    assert_eq!(w.rate.to_string(), "20%");
    assert_eq!(w.withheld_now, Money::from_fen(44_000));
    assert_eq!(w.net, Money::from_fen(256_000));
}

#[test]
fn a_certificate_is_a_small_pdf_with_a_subsetted_font() {
    let pdf = render_pdf(&march_payout()).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(
        pdf.len() < 300 * 1024,
        "PDF is {} bytes: is the font subsetted?",
        pdf.len()
    );
}

#[test]
fn rendering_the_same_data_twice_gives_the_same_bytes() {
    let data = march_payout();
    assert_eq!(render_pdf(&data).unwrap(), render_pdf(&data).unwrap());
}

#[test]
fn the_pdf_text_reads_back_with_chinese_labels_and_two_decimal_amounts() {
    let data = march_payout();
    let text = text_of(&render_pdf(&data).unwrap());
    for expected in [
        "个人所得税扣缴凭证",
        "扣缴信息告知",
        "凭证编号",
        "91310000MA1FL0000X-202603-d_0042-001",
        "上海示例网络科技有限公司",
        "扣缴义务人纳税人识别号",
        "张三丰",
        "居民身份证",
        "110101********0011",
        "劳务报酬所得",
        "2026年3月1日至2026年3月31日",
        "本次收入",
        "3000.00",
        "本月累计收入",
        "800.00",
        "2200.00",
        "20%",
        "速算扣除数",
        "应纳税额",
        "440.00",
        "已扣缴税额",
        "本次扣缴税额",
        "实付金额",
        "2560.00",
        "2026年3月31日",
        "验证码",
        &verification_code(&data).unwrap(),
        "本税款将于次月15日前向主管税务机关申报缴纳",
        "纳税记录/收入纳税明细查询",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn a_cumulative_certificate_labels_the_year_to_date_figures() {
    let mut data = march_payout();
    data.withholding = withhold_cumulative(
        Money::from_fen(1_000_000),
        Money::ZERO,
        3,
        Money::from_fen(300_000),
    )
    .unwrap();
    data.net_paid = data.withholding.net;
    let text = text_of(&render_pdf(&data).unwrap());
    for expected in [
        "累计收入",
        "13000.00",
        "累计减除费用",
        "15000.00",
        "累计应纳税额",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(!text.contains("本月累计收入"));
}

#[test]
fn a_correction_names_the_certificate_it_corrects() {
    let mut data = march_payout();
    data.number.push_str("-R1");
    data.references = Some("91310000MA1FL0000X-202603-d_0042-001".to_owned());
    let text = text_of(&render_pdf(&data).unwrap());
    assert!(text.contains("更正的原凭证编号"));
}

#[test]
fn a_number_that_cannot_name_a_file_is_refused() {
    let mut data = march_payout();
    data.number = "../etc/passwd".to_owned();
    assert!(matches!(
        render_pdf(&data),
        Err(CertificateError::InvalidField {
            field: "number",
            ..
        })
    ));
}

#[test]
fn net_paid_above_gross_minus_tax_is_refused() {
    let mut data = march_payout();
    data.net_paid = data.withholding.gross;
    assert!(matches!(
        render_pdf(&data),
        Err(CertificateError::Inconsistent(_))
    ));
}

#[test]
fn a_signed_certificate_verifies_with_its_figures() {
    let data = march_payout();
    let signer = CertificateSigner::generate().unwrap();
    let signed = signer.issue(&data).unwrap();
    assert_eq!(signed.verification_code, verification_code(&data).unwrap());
    assert_eq!(
        verify(&signed.pdf, &signed.manifest_json, &keys_of(&signer)),
        Verification::Genuine {
            number: data.number.clone(),
            gross: Money::from_fen(300_000),
            tax: Money::from_fen(44_000),
            net: Money::from_fen(256_000),
            key_id: signer.key_id().to_owned(),
        }
    );
    // A trailing newline added by an editor or a transport does not matter.
    let with_newline = format!("{}\n", signed.manifest_json);
    assert!(matches!(
        verify(&signed.pdf, &with_newline, &keys_of(&signer)),
        Verification::Genuine { .. }
    ));
}

#[test]
fn one_changed_pdf_byte_is_not_genuine() {
    let signer = CertificateSigner::generate().unwrap();
    let signed = signer.issue(&march_payout()).unwrap();
    for index in [0, signed.pdf.len() / 2, signed.pdf.len() - 1] {
        let mut pdf = signed.pdf.clone();
        pdf[index] ^= 0x01;
        assert_eq!(
            verify(&pdf, &signed.manifest_json, &keys_of(&signer)),
            Verification::NotGenuine(Rejection::PdfMismatch)
        );
    }
}

#[test]
fn an_edited_manifest_amount_is_not_genuine() {
    let signer = CertificateSigner::generate().unwrap();
    let signed = signer.issue(&march_payout()).unwrap();
    let edited = signed
        .manifest_json
        .replace("\"withheld_now_fen\":44000", "\"withheld_now_fen\":4400");
    assert_ne!(edited, signed.manifest_json);
    assert_eq!(
        verify(&signed.pdf, &edited, &keys_of(&signer)),
        Verification::NotGenuine(Rejection::BadSignature)
    );
}

#[test]
fn every_single_byte_change_to_the_manifest_is_not_genuine() {
    let signer = CertificateSigner::generate().unwrap();
    let signed = signer.issue(&march_payout()).unwrap();
    let keys = keys_of(&signer);
    let mut tried = 0;
    for index in 0..signed.manifest_json.len() {
        let mut bytes = signed.manifest_json.clone().into_bytes();
        bytes[index] ^= 0x01;
        let Ok(manifest) = String::from_utf8(bytes) else {
            continue; // not text, so it cannot reach `verify` as a manifest
        };
        tried += 1;
        assert_not_genuine(&verify(&signed.pdf, &manifest, &keys));
    }
    assert!(tried > 500, "only {tried} variants tried");
}

#[test]
fn a_reformatted_manifest_is_not_genuine() {
    let signer = CertificateSigner::generate().unwrap();
    let signed = signer.issue(&march_payout()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&signed.manifest_json).unwrap();
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    assert_eq!(
        verify(&signed.pdf, &pretty, &keys_of(&signer)),
        Verification::NotGenuine(Rejection::NotCanonical)
    );
}

#[test]
fn an_unknown_key_id_is_not_genuine() {
    let signer = CertificateSigner::generate().unwrap();
    let other = CertificateSigner::generate().unwrap();
    let signed = signer.issue(&march_payout()).unwrap();
    assert_eq!(
        verify(&signed.pdf, &signed.manifest_json, &keys_of(&other)),
        Verification::NotGenuine(Rejection::UnknownKey(signer.key_id().to_owned()))
    );
    // The right key id with another key's bytes: the signature fails.
    let mislabelled = [(signer.key_id(), other.public_key())];
    assert_eq!(
        verify(&signed.pdf, &signed.manifest_json, &mislabelled),
        Verification::NotGenuine(Rejection::BadSignature)
    );
}

#[test]
fn a_signer_loads_from_a_pem_key_file_and_publishes_a_jwk() {
    let der = CertificateSigner::generate_pkcs8().unwrap();
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_slice());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certificate-signing.pem");
    std::fs::write(&path, pem).unwrap();

    let from_file = CertificateSigner::from_pkcs8_file(&path).unwrap();
    let from_der = CertificateSigner::from_pkcs8(&der).unwrap();
    assert_eq!(from_file.key_id(), from_der.key_id());
    assert_eq!(from_file.key_id(), key_id_of(from_file.public_key()));
    assert_eq!(from_file.key_id().len(), 16);
    assert!(!format!("{from_file:?}").contains(&body));

    let jwk = from_file.public_key_jwk_like();
    assert_eq!(jwk["kid"], from_file.key_id());
    assert_eq!(jwk["crv"], "Ed25519");
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap())
        .unwrap();
    assert_eq!(x, from_file.public_key());
}

#[test]
fn a_signer_from_a_seed_is_the_same_key_every_time() {
    let seed = [7_u8; 32];
    let first = CertificateSigner::from_seed(&seed).unwrap();
    let second = CertificateSigner::from_seed(&seed).unwrap();
    assert_eq!(first.key_id(), second.key_id());
    let signed = first.issue(&march_payout()).unwrap();
    assert!(matches!(
        verify(&signed.pdf, &signed.manifest_json, &keys_of(&second)),
        Verification::Genuine { .. }
    ));
}

/// Writes a sample certificate to `$FENRUN_CERT_SAMPLE_DIR` (to look at it):
/// `FENRUN_CERT_SAMPLE_DIR=/tmp cargo test --lib certificate::tests::sample -- --ignored`
#[test]
#[ignore = "writes files; run by hand"]
fn sample() {
    let dir = std::env::var("FENRUN_CERT_SAMPLE_DIR").unwrap_or_else(|_| ".".to_owned());
    let signer = CertificateSigner::generate().unwrap();
    let signed = signer.issue(&march_payout()).unwrap();
    let stem = std::path::Path::new(&dir).join(&signed.number);
    std::fs::write(stem.with_extension("pdf"), &signed.pdf).unwrap();
    std::fs::write(stem.with_extension("json"), &signed.manifest_json).unwrap();
}

/// Certificates rendered and signed per second, one thread:
/// `cargo test --release --lib certificate::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore = "a measurement; run in release mode"]
fn throughput() {
    const CERTIFICATES: u32 = 200;
    let signer = CertificateSigner::generate().unwrap();
    let mut data = march_payout();
    signer.issue(&data).unwrap(); // parse the font once, as a server would
    let started = Instant::now();
    for sequence in 0..CERTIFICATES {
        data.number = format!("91310000MA1FL0000X-202603-d_0042-{sequence:03}");
        let signed = signer.issue(&data).unwrap();
        assert!(signed.pdf.len() < 300 * 1024);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{CERTIFICATES} certificates in {seconds:.2} s: {:.1} per second",
        f64::from(CERTIFICATES) / seconds
    );
}
