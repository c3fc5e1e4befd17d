//! [`AlipayClient::account_log_bill`]: the account log (`signcustomer`) for
//! one day, its download URL asked for with
//! `alipay.data.dataservice.bill.downloadurl.query`, the `csv.zip`
//! downloaded, unzipped, decoded from GBK and parsed.
//!
//! The answer is verified like every other; the file is not signed and
//! carries no hash, so its own summary is the only check on it.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{AlipayClient, AlipayNodeHead, GATEWAY_PATH, SUCCESS_CODE, UNKNOWN_OUTCOME_CODE};
use crate::statement::{MAX_STATEMENT_BYTES, Statement, StatementError, alipay_signcustomer};

const BILL_URL_METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";

/// The account log: `trade` holds only payments received, not transfers.
const BILL_TYPE: &str = "signcustomer";

/// `sub_code`s meaning "that day's bill is not generated yet". Unverified:
/// `isp.bill_not_exist` is the one reported for a bill asked for too early;
/// `isp.bill_not_ready` and `BILL_NOT_EXIST` are accepted as plausible
/// variants. Checked before the `isp.` prefix, which otherwise means "busy".
const NOT_READY_SUB_CODES: &[&str] =
    &["isp.bill_not_exist", "isp.bill_not_ready", "BILL_NOT_EXIST"];

#[derive(Serialize)]
struct AlipayBillUrlBizContent<'a> {
    bill_type: &'static str,
    bill_date: &'a str,
}

#[derive(Deserialize)]
struct AlipayBillUrlAnswer {
    bill_download_url: String,
}

impl AlipayClient {
    /// The account log for `bill_date` (a China calendar day; ready from
    /// about 10:00 the next day).
    #[tracing::instrument(name = "alipay.account_log_bill", skip_all, fields(%bill_date))]
    pub async fn account_log_bill(
        &self,
        bill_date: NaiveDate,
    ) -> Result<Statement, StatementError> {
        let date = bill_date.format("%Y-%m-%d").to_string();
        let biz_content = serde_json::to_string(&AlipayBillUrlBizContent {
            bill_type: BILL_TYPE,
            bill_date: &date,
        })
        .expect("a struct of strings serialises");
        let url = self.bill_download_url(biz_content).await?;
        let zip = self.download(&url).await?;
        let statement = alipay_signcustomer::parse(bill_date, &zip)?;
        tracing::info!(lines = statement.lines.len(), "account log read");
        Ok(statement)
    }

    async fn bill_download_url(&self, biz_content: String) -> Result<String, StatementError> {
        let params = self.signed_params(BILL_URL_METHOD, &biz_content);
        let url = reqwest::Url::parse_with_params(
            &format!("{}{GATEWAY_PATH}", self.config.base_url),
            &params,
        )
        .expect("the base URL was validated");
        let response = self
            .http
            .post(url)
            .form(&[("biz_content", biz_content.as_str())])
            .send()
            .await
            .map_err(|error| {
                StatementError::Transient(format!("bill URL query: {}", wire(&error)))
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|error| {
            StatementError::Transient(format!("bill URL query: {}", wire(&error)))
        })?;
        if status != 200 {
            return Err(StatementError::Transient(format!(
                "bill URL query: HTTP {status} is not a gateway answer"
            )));
        }
        let node = self.verified_node(BILL_URL_METHOD, &body).map_err(|why| {
            StatementError::Corrupt(format!("the bill URL answer is not trusted: {why}"))
        })?;
        let head: AlipayNodeHead = serde_json::from_str(node)
            .map_err(|_| StatementError::Corrupt("the bill URL answer has no code".to_owned()))?;
        if head.code == SUCCESS_CODE {
            let answer: AlipayBillUrlAnswer = serde_json::from_str(node).map_err(|_| {
                StatementError::Corrupt("the bill URL answer has no bill_download_url".to_owned())
            })?;
            return Ok(answer.bill_download_url);
        }
        let sub_code = head.sub_code.unwrap_or_default();
        let reason = head.sub_msg.or(head.msg).unwrap_or_default();
        Err(if NOT_READY_SUB_CODES.contains(&sub_code.as_str()) {
            StatementError::NotReady
        } else if head.code == UNKNOWN_OUTCOME_CODE || sub_code.starts_with("isp.") {
            StatementError::Transient(format!("bill URL query: code {} {sub_code}", head.code))
        } else {
            StatementError::Rejected {
                code: if sub_code.is_empty() {
                    head.code
                } else {
                    sub_code
                },
                reason,
            }
        })
    }

    /// A plain GET: the short-lived URL is its own authorisation.
    async fn download(&self, url: &str) -> Result<Vec<u8>, StatementError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| StatementError::Corrupt("bill_download_url is not a URL".to_owned()))?;
        let reachable =
            parsed.scheme() == "http" || (parsed.scheme() == "https" && cfg!(feature = "tls"));
        if !reachable {
            return Err(StatementError::Rejected {
                code: "DOWNLOAD_SCHEME".to_owned(),
                reason: format!(
                    "bill_download_url is {}; only https (http for a sandbox) is fetched, https in a build with the `tls` feature",
                    parsed.scheme()
                ),
            });
        }
        let response = self.http.get(parsed).send().await.map_err(|error| {
            StatementError::Transient(format!("bill download: {}", wire(&error)))
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            // The URL lives 30 seconds: a new query gives a new one.
            return Err(StatementError::Transient(format!(
                "bill download: HTTP {status}; ask for the bill again for a fresh URL"
            )));
        }
        let body = response.bytes().await.map_err(|error| {
            StatementError::Transient(format!("bill download: {}", wire(&error)))
        })?;
        if body.len() as u64 > MAX_STATEMENT_BYTES {
            return Err(StatementError::Corrupt(format!(
                "the download is larger than {MAX_STATEMENT_BYTES} bytes"
            )));
        }
        Ok(body.to_vec())
    }
}

/// What went wrong on the wire, without the URL (it is the credential).
fn wire(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        crate::tls::log_handshake_failure(error);
        "could not connect"
    } else {
        "connection failed"
    }
}
