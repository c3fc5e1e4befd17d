//! The transfer-bills client: builds and signs each call, verifies each
//! answer, and turns every failure into a [`GatewayError`] in one place,
//! [`classify`], so that "may I send again?" has exactly one answer.
//!
//! The wire structs are private and carry WeChat's name; the only status
//! mapping is [`BillState::to_status`].

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, Method};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::callback::{HEADER_SERIAL, HEADER_SIGNATURE, verify_signed};
use super::crypto::{self, RsaSigner, RsaVerifier};
use super::{BillState, ConfigError, SceneReportInfo, WechatPayConfig, unix_now};
use crate::{Channel, GatewayError, OutBillNo, PayoutGateway, PayoutRequest, TransferStatus};

mod statement;

/// Create a bill; the bill paths below hang off it.
const TRANSFER_BILLS_PATH: &str = "/v3/fund-app/mch-transfer/transfer-bills";

/// WeChat asks every v3 caller for a User-Agent.
const USER_AGENT: &str = concat!("fenrun-integrations/", env!("CARGO_PKG_VERSION"));

/// Upper bound on connecting. Connecting is the one phase whose failure
/// proves nothing was sent, so it gets its own, shorter limit.
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// Error codes that refuse this request for good. Anything else not
/// otherwise listed leaves the outcome unknown.
const REJECTING_CODES: &[&str] = &[
    "PARAM_ERROR",
    "INVALID_REQUEST",
    "NO_AUTH",
    "NOT_ENOUGH",
    "SIGN_ERROR",
    "APPID_MCHID_NOT_MATCH",
];

/// Which API call failed; the same symptom means different things for a call
/// that moves money and one that only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Transfer,
    Query,
    Cancel,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Transfer => "transfer",
            Call::Query => "query",
            Call::Cancel => "cancel",
        }
    }
}

/// What one exchange came to when it did not bring a trusted 2xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exchange<'a> {
    /// The request never left: connection refused, DNS, connect timeout.
    NotSent,
    /// Sent, then lost: a timeout, a reset, a body that did not arrive.
    Lost { timed_out: bool },
    /// A 2xx (or a signed error) that failed verification or parsing.
    Untrusted { why: &'a str },
    /// An error answer with its parsed body.
    Refused {
        status: u16,
        code: Option<&'a str>,
        message: &'a str,
    },
}

/// The meaning of an [`Exchange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A query learnt that the bill does not exist.
    NoSuchBill,
    Error(GatewayError),
}

/// The one place failures are classified. Never reads `message` to decide:
/// WeChat says it is for humans.
pub(crate) fn classify(call: Call, exchange: Exchange<'_>) -> Verdict {
    let what = call.name();
    let error = match exchange {
        Exchange::NotSent => {
            GatewayError::Transient(format!("{what}: could not connect; nothing was sent"))
        }
        Exchange::Lost { timed_out } => GatewayError::Ambiguous(format!(
            "{what}: {} after the request was sent",
            if timed_out {
                "timed out"
            } else {
                "connection lost"
            }
        )),
        Exchange::Untrusted { why } => {
            GatewayError::Ambiguous(format!("{what}: answer not trusted: {why}"))
        }
        Exchange::Refused {
            status,
            code,
            message,
        } => {
            let label = code.unwrap_or("no code");
            match code {
                _ if status == 429 || code == Some("FREQUENCY_LIMITED") => {
                    GatewayError::Transient(format!("{what}: HTTP {status} {label}"))
                }
                Some("SYSTEM_ERROR") if call == Call::Query => {
                    GatewayError::Transient(format!("{what}: HTTP {status} SYSTEM_ERROR"))
                }
                _ if (500..600).contains(&status) => {
                    GatewayError::Ambiguous(format!("{what}: HTTP {status} {label}"))
                }
                Some("NOT_FOUND") if status == 404 && call == Call::Query => {
                    return Verdict::NoSuchBill;
                }
                Some("NOT_FOUND") if (400..500).contains(&status) && call == Call::Cancel => {
                    GatewayError::Rejected {
                        code: "NOT_FOUND".to_owned(),
                        reason: message.to_owned(),
                    }
                }
                Some(code) if (400..500).contains(&status) && REJECTING_CODES.contains(&code) => {
                    GatewayError::Rejected {
                        code: code.to_owned(),
                        reason: message.to_owned(),
                    }
                }
                _ => GatewayError::Ambiguous(format!(
                    "{what}: HTTP {status} {label} is not a known answer"
                )),
            }
        }
    };
    Verdict::Error(error)
}

/// `POST /v3/fund-app/mch-transfer/transfer-bills`.
#[derive(Serialize)]
struct WechatTransferBillRequest<'a> {
    appid: &'a str,
    out_bill_no: &'a str,
    transfer_scene_id: &'a str,
    openid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<String>,
    /// Fen, as WeChat counts.
    transfer_amount: i64,
    transfer_remark: &'a str,
    notify_url: &'a str,
    user_recv_perception: &'a str,
    transfer_scene_report_infos: &'a [SceneReportInfo],
}

/// What create, query and cancel answer; only what is used is read.
#[derive(Deserialize)]
struct WechatBillAnswer {
    out_bill_no: String,
    state: BillState,
    #[serde(default)]
    fail_reason: Option<String>,
    #[serde(default)]
    package_info: Option<String>,
}

/// A v3 error body.
#[derive(Deserialize, Default)]
struct WechatErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The WeChat Pay v3 transfer-bills client.
pub struct WechatPayClient {
    http: reqwest::Client,
    config: WechatPayConfig,
    signer: RsaSigner,
    platform: RsaVerifier,
    platform_encryption_key: rsa::RsaPublicKey,
}

impl std::fmt::Debug for WechatPayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatPayClient")
            .field("base_url", &self.config.base_url)
            .field("mchid", &self.config.mchid)
            .finish_non_exhaustive()
    }
}

impl WechatPayClient {
    /// Parses the keys and builds the HTTP client; fails on any bad setting.
    pub fn new(config: WechatPayConfig) -> Result<WechatPayClient, ConfigError> {
        config.validate()?;
        let builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(CONNECT_TIMEOUT_MAX))
            // A redirect would be a different, unsigned URL.
            .redirect(reqwest::redirect::Policy::none());
        let http = config
            .extra_roots
            .client(builder)
            .map_err(|(field, reason)| ConfigError {
                field,
                reason: reason.to_owned(),
            })?;
        Ok(WechatPayClient {
            http,
            signer: config.merchant_signer()?,
            platform: config.platform_verifier()?,
            platform_encryption_key: config.platform_encryption_key()?,
            config,
        })
    }

    pub fn config(&self) -> &WechatPayConfig {
        &self.config
    }

    /// Signs and sends one call, and checks the answer. `Ok(None)`: a query
    /// found no such bill. `with_encrypted_field` adds `Wechatpay-Serial`, so
    /// WeChat knows which key our ciphertext is for.
    async fn call(
        &self,
        call: Call,
        method: Method,
        path: &str,
        body: Vec<u8>,
        with_encrypted_field: bool,
    ) -> Result<Option<Bytes>, GatewayError> {
        let mut request = self.authorized(&method, path, &body);
        if method == Method::POST {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if with_encrypted_field {
            request = request.header(HEADER_SERIAL, &self.config.platform_public_key_id);
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(error) => return Err(self.fail(call, send_failure(&error))),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => {
                return Err(self.fail(
                    call,
                    Exchange::Lost {
                        timed_out: error.is_timeout(),
                    },
                ));
            }
        };
        if status.is_success() {
            if let Err(error) = self.verify(&headers, &body) {
                return Err(self.fail(
                    call,
                    Exchange::Untrusted {
                        why: &error.to_string(),
                    },
                ));
            }
            return Ok(Some(body));
        }
        // Error answers are signed too; when one claims to be, hold it to it,
        // since a forged "rejected" would void a payout that may exist.
        if headers.contains_key(HEADER_SIGNATURE)
            && let Err(error) = self.verify(&headers, &body)
        {
            return Err(self.fail(
                call,
                Exchange::Untrusted {
                    why: &error.to_string(),
                },
            ));
        }
        let error_body: WechatErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        match classify(
            call,
            Exchange::Refused {
                status: status.as_u16(),
                code: error_body.code.as_deref(),
                message: error_body.message.as_deref().unwrap_or_default(),
            },
        ) {
            Verdict::NoSuchBill => Ok(None),
            Verdict::Error(error) => Err(logged(call, error)),
        }
    }

    /// A request carrying the v3 `Authorization` over method, path with
    /// query, and body: every API call, and the bill download, which WeChat
    /// also wants signed.
    fn authorized(&self, method: &Method, path: &str, body: &[u8]) -> reqwest::RequestBuilder {
        let timestamp = unix_now().to_string();
        let nonce = crypto::alphanumeric_nonce(crypto::REQUEST_NONCE_LEN);
        let signature = self.signer.sign(&crypto::request_message(
            method.as_str(),
            path,
            &timestamp,
            &nonce,
            body,
        ));
        let authorization = crypto::authorization(
            &self.config.mchid,
            &nonce,
            &signature,
            &timestamp,
            &self.config.merchant_serial_no,
        );
        self.http
            .request(method.clone(), format!("{}{path}", self.config.base_url))
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json")
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), super::CallbackError> {
        verify_signed(
            &self.platform,
            &self.config.platform_public_key_id,
            headers,
            body,
            unix_now(),
        )
    }

    fn fail(&self, call: Call, exchange: Exchange<'_>) -> GatewayError {
        match classify(call, exchange) {
            Verdict::Error(error) => logged(call, error),
            Verdict::NoSuchBill => unreachable!("only an error answer says a bill is missing"),
        }
    }

    /// Reads a trusted bill answer; one that does not parse, or names another
    /// bill, is not understood and so leaves the outcome unknown.
    fn bill_status(
        &self,
        call: Call,
        out_bill_no: &OutBillNo,
        body: &[u8],
    ) -> Result<TransferStatus, GatewayError> {
        let answer: WechatBillAnswer = serde_json::from_slice(body).map_err(|_| {
            self.fail(
                call,
                Exchange::Untrusted {
                    why: "not a transfer bill (unknown state or missing field)",
                },
            )
        })?;
        if answer.out_bill_no != out_bill_no.as_str() {
            return Err(self.fail(
                call,
                Exchange::Untrusted {
                    why: "the answer names another bill",
                },
            ));
        }
        let status = answer.state.to_status(
            answer.fail_reason.as_deref(),
            answer.package_info.as_deref(),
        );
        tracing::info!(call = call.name(), state = %answer.state, "gateway answered");
        Ok(status)
    }

    fn bill_path(out_bill_no: &OutBillNo) -> String {
        // `OutBillNo` is letters and digits only: nothing to escape.
        format!("{TRANSFER_BILLS_PATH}/out-bill-no/{out_bill_no}")
    }
}

/// What a `send` error proves: only a failure to connect proves that nothing
/// was sent.
fn send_failure(error: &reqwest::Error) -> Exchange<'static> {
    if error.is_connect() || error.is_builder() {
        crate::tls::log_handshake_failure(error);
        Exchange::NotSent
    } else {
        Exchange::Lost {
            timed_out: error.is_timeout(),
        }
    }
}

fn logged(call: Call, error: GatewayError) -> GatewayError {
    match &error {
        GatewayError::Transient(_) => {
            tracing::info!(call = call.name(), %error, "gateway call failed, may be resent")
        }
        GatewayError::Rejected { .. } => {
            tracing::warn!(call = call.name(), %error, "gateway refused the call")
        }
        GatewayError::Ambiguous(_) => {
            tracing::warn!(call = call.name(), %error, "gateway outcome unknown; query before anything else")
        }
    }
    error
}

impl PayoutGateway for WechatPayClient {
    fn channel(&self) -> Channel {
        Channel::Wechat
    }

    #[tracing::instrument(name = "wechat.transfer", skip_all, fields(out_bill_no = %request.out_bill_no, amount_fen = request.amount.0))]
    async fn transfer(&self, request: &PayoutRequest) -> Result<TransferStatus, GatewayError> {
        if request.amount.0 <= 0 {
            return Err(GatewayError::Rejected {
                code: "INVALID_AMOUNT".to_owned(),
                reason: "a transfer must be of at least 1 fen".to_owned(),
            });
        }
        let user_name = match &request.payee_name {
            Some(name) => Some(
                crypto::encrypt_sensitive(
                    &self.platform_encryption_key,
                    name.expose_secret().as_bytes(),
                )
                .map_err(|_| GatewayError::Rejected {
                    code: "INVALID_PAYEE_NAME".to_owned(),
                    reason: "the payee name is too long to encrypt".to_owned(),
                })?,
            ),
            None => None,
        };
        let with_encrypted_field = user_name.is_some();
        let body = WechatTransferBillRequest {
            appid: &self.config.appid,
            out_bill_no: request.out_bill_no.as_str(),
            transfer_scene_id: &self.config.transfer_scene_id,
            openid: request.payee_account.expose_secret(),
            user_name,
            transfer_amount: request.amount.0,
            transfer_remark: &request.remark,
            notify_url: &self.config.notify_url,
            user_recv_perception: &self.config.user_recv_perception,
            transfer_scene_report_infos: &self.config.transfer_scene_report_infos,
        };
        let body = serde_json::to_vec(&body).expect("a struct of strings serialises");
        let answer = self
            .call(
                Call::Transfer,
                Method::POST,
                TRANSFER_BILLS_PATH,
                body,
                with_encrypted_field,
            )
            .await?
            .expect("only a query learns that a bill is missing");
        self.bill_status(Call::Transfer, &request.out_bill_no, &answer)
    }

    #[tracing::instrument(name = "wechat.query", skip_all, fields(out_bill_no = %out_bill_no))]
    async fn query(&self, out_bill_no: &OutBillNo) -> Result<Option<TransferStatus>, GatewayError> {
        let path = Self::bill_path(out_bill_no);
        match self
            .call(Call::Query, Method::GET, &path, Vec::new(), false)
            .await?
        {
            Some(answer) => self
                .bill_status(Call::Query, out_bill_no, &answer)
                .map(Some),
            None => {
                tracing::info!("gateway has no such bill");
                Ok(None)
            }
        }
    }

    #[tracing::instrument(name = "wechat.cancel", skip_all, fields(out_bill_no = %out_bill_no))]
    async fn cancel(&self, out_bill_no: &OutBillNo) -> Result<TransferStatus, GatewayError> {
        let path = format!("{}/cancel", Self::bill_path(out_bill_no));
        let answer = self
            .call(Call::Cancel, Method::POST, &path, Vec::new(), false)
            .await?
            .expect("only a query learns that a bill is missing");
        self.bill_status(Call::Cancel, out_bill_no, &answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: Option<&'static str>) -> Exchange<'static> {
        Exchange::Refused {
            status,
            code,
            message: "for humans",
        }
    }

    fn kind(verdict: Verdict) -> &'static str {
        match verdict {
            Verdict::NoSuchBill => "none",
            Verdict::Error(GatewayError::Transient(_)) => "transient",
            Verdict::Error(GatewayError::Ambiguous(_)) => "ambiguous",
            Verdict::Error(GatewayError::Rejected { .. }) => "rejected",
        }
    }

    #[test]
    fn every_failure_is_classified_once_by_this_table() {
        use Call::{Cancel, Query, Transfer};
        let table: &[(Call, Exchange<'static>, &str)] = &[
            (Transfer, Exchange::NotSent, "transient"),
            (Query, Exchange::NotSent, "transient"),
            (Transfer, Exchange::Lost { timed_out: true }, "ambiguous"),
            (Transfer, Exchange::Lost { timed_out: false }, "ambiguous"),
            (Cancel, Exchange::Lost { timed_out: true }, "ambiguous"),
            (Query, Exchange::Lost { timed_out: true }, "ambiguous"),
            (
                Transfer,
                Exchange::Untrusted {
                    why: "bad signature",
                },
                "ambiguous",
            ),
            (
                Query,
                Exchange::Untrusted { why: "unparseable" },
                "ambiguous",
            ),
            (Transfer, refused(500, Some("SYSTEM_ERROR")), "ambiguous"),
            (Cancel, refused(500, Some("SYSTEM_ERROR")), "ambiguous"),
            (Query, refused(500, Some("SYSTEM_ERROR")), "transient"),
            (Transfer, refused(502, None), "ambiguous"),
            (Query, refused(503, None), "ambiguous"),
            (Transfer, refused(429, None), "transient"),
            (
                Transfer,
                refused(429, Some("FREQUENCY_LIMITED")),
                "transient",
            ),
            (Query, refused(403, Some("FREQUENCY_LIMITED")), "transient"),
            (Transfer, refused(400, Some("PARAM_ERROR")), "rejected"),
            (Transfer, refused(400, Some("INVALID_REQUEST")), "rejected"),
            (Transfer, refused(403, Some("NO_AUTH")), "rejected"),
            (Transfer, refused(403, Some("NOT_ENOUGH")), "rejected"),
            (Transfer, refused(401, Some("SIGN_ERROR")), "rejected"),
            (Query, refused(401, Some("SIGN_ERROR")), "rejected"),
            (Transfer, refused(400, Some("SOMETHING_NEW")), "ambiguous"),
            (Transfer, refused(400, None), "ambiguous"),
            (Transfer, refused(500, Some("PARAM_ERROR")), "ambiguous"),
            (Query, refused(404, Some("NOT_FOUND")), "none"),
            (Query, refused(404, None), "ambiguous"),
            (Cancel, refused(404, Some("NOT_FOUND")), "rejected"),
            (Transfer, refused(404, Some("NOT_FOUND")), "ambiguous"),
            (Transfer, refused(302, None), "ambiguous"),
        ];
        for &(call, exchange, expected) in table {
            assert_eq!(
                kind(classify(call, exchange)),
                expected,
                "{call:?} {exchange:?}"
            );
        }
    }

    #[test]
    fn a_rejection_carries_the_code_and_the_message_and_never_decides_on_the_message() {
        assert_eq!(
            classify(
                Call::Transfer,
                Exchange::Refused {
                    status: 400,
                    code: Some("PARAM_ERROR"),
                    message: "系统繁忙，请稍后重试"
                }
            ),
            Verdict::Error(GatewayError::Rejected {
                code: "PARAM_ERROR".to_owned(),
                reason: "系统繁忙，请稍后重试".to_owned()
            })
        );
    }
}
