//! [`WechatPayClient::fund_flow_bill`]: the operation account's fund-flow
//! bill (资金账单) for one day, asked for, downloaded, checked against the
//! hash the signed answer gave, and parsed.
//!
//! The answer pointing to the file is signed; the file is not, so the SHA-1
//! of the decompressed bytes is what ties the two together.

use std::io::Read;

use chrono::NaiveDate;
use flate2::read::GzDecoder;
use http::Method;
use serde::Deserialize;
use sha1::{Digest, Sha1};

use super::{WechatErrorBody, WechatPayClient};
use crate::statement::{MAX_STATEMENT_BYTES, Statement, StatementError, wechat_fundflow};

const FUND_FLOW_BILL_PATH: &str = "/v3/bill/fundflowbill";

/// Transfers are paid from the operation account (运营账户).
const ACCOUNT_TYPE: &str = "OPERATION";

/// Error codes meaning "that day's bill does not exist yet". Unverified:
/// `NO_STATEMENT_EXIST` is the code the v3 bill APIs are commonly reported to
/// answer (400) before the bill is generated; `STATEMENT_CREATING` and
/// `BILL_NOT_EXIST` are accepted as plausible variants.
const NOT_READY_CODES: &[&str] = &["NO_STATEMENT_EXIST", "STATEMENT_CREATING", "BILL_NOT_EXIST"];

/// Codes asking the caller to slow down or try again.
const RETRY_CODES: &[&str] = &["FREQUENCY_LIMITED", "SYSTEM_ERROR"];

/// The largest gzip accepted from the download, before decompressing:
/// compression only shrinks a CSV, so the decompressed limit bounds it too.
const MAX_DOWNLOAD_BYTES: usize = MAX_STATEMENT_BYTES as usize;

/// The answer to `GET /v3/bill/fundflowbill`.
#[derive(Deserialize)]
struct WechatBillAnswer {
    hash_type: String,
    hash_value: String,
    download_url: String,
}

impl WechatPayClient {
    /// The fund-flow bill of the operation account for `bill_date` (a China
    /// calendar day; ready from about 10:00 the next day, kept 3 months).
    #[tracing::instrument(name = "wechat.fund_flow_bill", skip_all, fields(%bill_date))]
    pub async fn fund_flow_bill(&self, bill_date: NaiveDate) -> Result<Statement, StatementError> {
        let path = format!(
            "{FUND_FLOW_BILL_PATH}?bill_date={}&account_type={ACCOUNT_TYPE}&tar_type=GZIP",
            bill_date.format("%Y-%m-%d")
        );
        let answer = self.bill_answer(&path).await?;
        if !answer.hash_type.eq_ignore_ascii_case("SHA1") {
            return Err(StatementError::Corrupt(format!(
                "hash_type {:?} is not SHA1; fenrun checks downloads with SHA1 only",
                answer.hash_type
            )));
        }
        let gzip = self.download(&answer.download_url).await?;
        let mut csv = Vec::new();
        GzDecoder::new(gzip.as_slice())
            .take(MAX_STATEMENT_BYTES + 1)
            .read_to_end(&mut csv)
            .map_err(|error| {
                StatementError::Corrupt(format!("the download does not gunzip: {error}"))
            })?;
        if csv.len() as u64 > MAX_STATEMENT_BYTES {
            return Err(StatementError::Corrupt(format!(
                "the bill is larger than {MAX_STATEMENT_BYTES} bytes decompressed"
            )));
        }
        let actual = hex(&Sha1::digest(&csv));
        if !actual.eq_ignore_ascii_case(answer.hash_value.trim()) {
            return Err(StatementError::Corrupt(format!(
                "the decompressed bill's SHA1 is {actual}, the signed answer said {}",
                answer.hash_value
            )));
        }
        let statement = wechat_fundflow::parse(bill_date, &csv)?;
        tracing::info!(lines = statement.lines.len(), "fund-flow bill read");
        Ok(statement)
    }

    /// Asks for the bill and verifies the answer as every v3 answer.
    async fn bill_answer(&self, path: &str) -> Result<WechatBillAnswer, StatementError> {
        let response = self
            .authorized(&Method::GET, path, &[])
            .send()
            .await
            .map_err(|error| {
                StatementError::Transient(format!("fund-flow bill request: {}", send_error(&error)))
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|error| {
            StatementError::Transient(format!("fund-flow bill answer: {}", send_error(&error)))
        })?;
        let signed = status.is_success() || headers.contains_key(super::HEADER_SIGNATURE);
        if signed && let Err(error) = self.verify(&headers, &body) {
            return Err(StatementError::Corrupt(format!(
                "the fund-flow bill answer (HTTP {}) is not trusted: {error}",
                status.as_u16()
            )));
        }
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| {
                StatementError::Corrupt(
                    "the fund-flow bill answer lacks hash_type, hash_value or download_url"
                        .to_owned(),
                )
            });
        }
        let error: WechatErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let code = error.code.unwrap_or_default();
        let status = status.as_u16();
        Err(match code.as_str() {
            code if NOT_READY_CODES.contains(&code) => StatementError::NotReady,
            code if status == 429 || status >= 500 || RETRY_CODES.contains(&code) => {
                StatementError::Transient(format!("fund-flow bill: HTTP {status} {code}"))
            }
            _ => StatementError::Rejected {
                code: if code.is_empty() {
                    format!("HTTP {status}")
                } else {
                    code
                },
                reason: error.message.unwrap_or_default(),
            },
        })
    }

    /// Downloads the file, signed like the other v3 GETs. The URL must be on
    /// the API host: our `Authorization` goes nowhere else.
    async fn download(&self, download_url: &str) -> Result<Vec<u8>, StatementError> {
        let url = reqwest::Url::parse(download_url)
            .map_err(|_| StatementError::Corrupt("download_url is not a URL".to_owned()))?;
        let base = reqwest::Url::parse(&self.config.base_url).expect("the base URL was validated");
        if url.origin() != base.origin() {
            return Err(StatementError::Corrupt(format!(
                "download_url is on {}, not the API host {}; not sending our signature there",
                url.origin().ascii_serialization(),
                base.origin().ascii_serialization()
            )));
        }
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let response = self
            .authorized(&Method::GET, &path, &[])
            .send()
            .await
            .map_err(|error| {
                StatementError::Transient(format!("bill download: {}", send_error(&error)))
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            // The URL is short-lived: asking for the bill again gives a new
            // one. Only a refused signature would fail again the same way.
            return Err(match status {
                401 | 403 => StatementError::Rejected {
                    code: format!("HTTP {status}"),
                    reason: "the bill download refused our signature".to_owned(),
                },
                _ => StatementError::Transient(format!(
                    "bill download: HTTP {status}; ask for the bill again for a fresh download_url"
                )),
            });
        }
        let body = response.bytes().await.map_err(|error| {
            StatementError::Transient(format!("bill download: {}", send_error(&error)))
        })?;
        if body.len() > MAX_DOWNLOAD_BYTES {
            return Err(StatementError::Corrupt(format!(
                "the download is larger than {MAX_DOWNLOAD_BYTES} bytes"
            )));
        }
        Ok(body.to_vec())
    }
}

/// What went wrong on the wire, without the URL (it carries a token).
fn send_error(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        crate::tls::log_handshake_failure(error);
        "could not connect"
    } else {
        "connection failed"
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use axum::response::IntoResponse;
    use axum::routing::get;
    use chrono::NaiveDate;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;
    use crate::statement::{StatementSummary, wechat_fundflow};
    use crate::wechat::crypto::test_keys::platform_private;
    use crate::wechat::crypto::{RsaSigner, sign_answer};
    use crate::wechat::unix_now;

    /// A fake WeChat answering the bill query with `hash_value` and
    /// `download_url` (`{base}` replaced by its own address), and serving an
    /// empty bill's gzip at `/download`.
    async fn fake_wechat(hash_value: String, download_url: &str) -> WechatPayClient {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let mut config = crate::wechat::tests::valid_config();
        config.base_url = base_url.clone();
        let serial = config.platform_public_key_id.clone();
        let body = serde_json::json!({
            "hash_type": "SHA1",
            "hash_value": hash_value,
            "download_url": download_url.replace("{base}", &base_url),
        })
        .to_string();
        let signer = Arc::new(RsaSigner::from_pkcs8_pem(&platform_private()).unwrap());
        let answer = move || {
            let signed = sign_answer(&signer, &serial, unix_now(), body.as_bytes());
            (
                [
                    ("Wechatpay-Timestamp", signed.timestamp),
                    ("Wechatpay-Nonce", signed.nonce),
                    ("Wechatpay-Signature", signed.signature),
                    ("Wechatpay-Serial", signed.serial),
                ],
                body.clone(),
            )
                .into_response()
        };
        let app = axum::Router::new()
            .route(
                FUND_FLOW_BILL_PATH,
                get(move || std::future::ready(answer())),
            )
            .route("/download", get(|| async { gzip(&empty_bill()) }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        WechatPayClient::new(config).unwrap()
    }

    fn empty_bill() -> Vec<u8> {
        wechat_fundflow::render(&[], &StatementSummary::default())
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 5, 1).unwrap()
    }

    #[tokio::test]
    async fn a_download_matching_the_signed_hash_is_read() {
        let client = fake_wechat(hex(&Sha1::digest(empty_bill())), "{base}/download").await;
        let statement = client.fund_flow_bill(date()).await.unwrap();
        assert!(statement.lines.is_empty());
    }

    #[tokio::test]
    async fn a_download_whose_sha1_disagrees_with_the_signed_answer_is_refused() {
        let client = fake_wechat("0".repeat(40), "{base}/download").await;
        let error = client.fund_flow_bill(date()).await.unwrap_err();
        assert!(
            matches!(&error, StatementError::Corrupt(why) if why.contains("SHA1")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_download_url_off_the_api_host_gets_no_signature() {
        let client = fake_wechat("0".repeat(40), "http://127.0.0.2:9/download").await;
        let error = client.fund_flow_bill(date()).await.unwrap_err();
        assert!(
            matches!(&error, StatementError::Corrupt(why) if why.contains("not sending our signature")),
            "{error}"
        );
    }
}
