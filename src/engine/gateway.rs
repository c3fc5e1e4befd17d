//! The payout gateway this process pays through, chosen by the settings:
//! the sandbox (in-process, or a `fenrun sandbox-gateway` at `sandbox_url`),
//! or WeChat Pay API v3 with the merchant's credentials from files. Both
//! speak the same WeChat v3 dialect through the same client, so the
//! sandbox exercises every line real payouts run.

use std::path::Path;

use axum::http::HeaderMap;
use fenrun_integrations::sandbox::{SandboxConfig, SandboxGateway, SandboxHandle};
use fenrun_integrations::wechat::{
    CallbackError, CallbackVerifier, WechatPayClient, WechatPayConfig,
};
use fenrun_integrations::{GatewayError, OutBillNo, PayoutGateway, PayoutRequest, TransferStatus};
use secrecy::SecretString;

use crate::config::{GatewayKind, Settings};
use crate::domain::identity::PayoutChannel;
use crate::domain::withdrawal::GatewayOutcome;
use crate::engine::withdrawal::CallbackNews;

/// What a gateway said about a bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayNews {
    Status {
        status: TransferStatus,
        /// The gateway's own bill number, when the answer carried it.
        bill_no: Option<String>,
    },
}

impl GatewayNews {
    fn of(status: TransferStatus) -> GatewayNews {
        GatewayNews::Status {
            status,
            bill_no: None,
        }
    }

    pub fn into_outcome(self) -> GatewayOutcome {
        let GatewayNews::Status { status, bill_no } = self;
        match status {
            TransferStatus::Processing => GatewayOutcome::Processing { bill_no },
            TransferStatus::AwaitingPayee { package_info } => GatewayOutcome::AwaitingPayee {
                bill_no,
                package_info,
            },
            TransferStatus::Succeeded => GatewayOutcome::Paid { bill_no },
            TransferStatus::Failed { reason } => GatewayOutcome::Failed { reason },
            // A bank bounce (退票) comes only after success. Until the bounce
            // workflow lands (issue 15), it reaches a paid withdrawal as a
            // contradiction on its timeline that moves no money, for ops to
            // see; no gateway that reports bounces is routed to yet.
            TransferStatus::Returned { reason } => GatewayOutcome::Failed {
                reason: format!("RETURNED after success: {reason}"),
            },
        }
    }
}

/// Why a callback was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRefusal {
    pub code: &'static str,
    pub message: String,
}

enum Mode {
    /// The sandbox inside this process; the handle keeps it running.
    SandboxInProcess(Box<SandboxHandle>),
    SandboxAt(String),
    Wechat,
}

pub struct Gateway {
    client: WechatPayClient,
    verifier: CallbackVerifier,
    mode: Mode,
}

impl Gateway {
    /// Connects the gateway the settings name; `notify_url` is where its
    /// callbacks must go.
    pub async fn connect(settings: &Settings, notify_url: String) -> anyhow::Result<Gateway> {
        let (config, mode) = match settings.gateway {
            GatewayKind::Sandbox => match &settings.sandbox_url {
                Some(url) => {
                    let config = SandboxConfig::default().client_config_for(url, &notify_url)?;
                    (config, Mode::SandboxAt(url.clone()))
                }
                None => {
                    let handle = SandboxGateway::start(SandboxConfig::default()).await?;
                    let config = handle.client_config(&notify_url)?;
                    (config, Mode::SandboxInProcess(Box::new(handle)))
                }
            },
            GatewayKind::Wechat => {
                let config = wechat_config(settings, &notify_url)?;
                if config.base_url.starts_with("https://") && !cfg!(feature = "tls") {
                    anyhow::bail!(
                        "setting `wechat_base_url` is HTTPS but this build has no TLS: build with `--features tls`"
                    );
                }
                (config, Mode::Wechat)
            }
        };
        let mut config = config;
        config.request_timeout = std::time::Duration::from_millis(settings.gateway_timeout_ms);
        let verifier = CallbackVerifier::new(&config)?;
        let client = WechatPayClient::new(config)?;
        match &mode {
            Mode::SandboxInProcess(handle) => tracing::warn!(
                sandbox = %handle.base_url(),
                "payouts go to the in-process SANDBOX gateway: no real money moves"
            ),
            Mode::SandboxAt(url) => tracing::warn!(
                sandbox = %url,
                "payouts go to a SANDBOX gateway: no real money moves"
            ),
            Mode::Wechat => tracing::info!(notify_url = %notify_url, "payouts go to WeChat Pay"),
        }
        Ok(Gateway {
            client,
            verifier,
            mode,
        })
    }

    pub fn is_sandbox(&self) -> bool {
        !matches!(self.mode, Mode::Wechat)
    }

    /// The in-process sandbox, for the demo's and tests' comparisons.
    pub fn sandbox(&self) -> Option<&SandboxHandle> {
        match &self.mode {
            Mode::SandboxInProcess(handle) => Some(handle),
            _ => None,
        }
    }

    /// Whether payouts to accounts of this channel can be sent. The sandbox
    /// takes every channel; with real credentials only WeChat is wired.
    pub fn pays(&self, channel: PayoutChannel) -> bool {
        self.is_sandbox() || channel == PayoutChannel::Wechat
    }

    pub async fn transfer(&self, request: &PayoutRequest) -> Result<GatewayNews, GatewayError> {
        let started = std::time::Instant::now();
        let result = self.client.transfer(request).await;
        crate::telemetry::metrics::gateway_call("transfer", outcome_of(&result), started);
        result.map(GatewayNews::of)
    }

    pub async fn query(&self, out_bill_no: &str) -> Result<Option<GatewayNews>, GatewayError> {
        let number = OutBillNo::for_withdrawal(out_bill_no)?;
        let started = std::time::Instant::now();
        let result = self.client.query(&number).await;
        crate::telemetry::metrics::gateway_call("query", outcome_of(&result), started);
        Ok(result?.map(GatewayNews::of))
    }

    pub async fn cancel(&self, out_bill_no: &str) -> Result<GatewayNews, GatewayError> {
        let number = OutBillNo::for_withdrawal(out_bill_no)?;
        let started = std::time::Instant::now();
        let result = self.client.cancel(&number).await;
        crate::telemetry::metrics::gateway_call("cancel", outcome_of(&result), started);
        result.map(GatewayNews::of)
    }

    /// Verifies a callback's signature and time window and decrypts it.
    /// The window is checked against the wall clock, as the gateway signs it.
    pub fn verify_callback(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<CallbackNews, CallbackRefusal> {
        let now = chrono::Utc::now().timestamp();
        let notification = self
            .verifier
            .verify_and_decrypt(headers, body, now)
            .map_err(|error| CallbackRefusal {
                code: match &error {
                    CallbackError::StaleTimestamp => "stale_callback",
                    CallbackError::UnknownSerial => "unknown_serial",
                    CallbackError::BadSignature => "bad_signature",
                    CallbackError::MissingHeader(_) => "missing_signature_header",
                    CallbackError::Malformed(_) | CallbackError::Decrypt => "malformed_callback",
                },
                message: error.to_string(),
            })?;
        Ok(CallbackNews {
            out_bill_no: notification.out_bill_no,
            amount_fen: notification.amount.0,
            news: GatewayNews::Status {
                status: notification.status,
                bill_no: Some(notification.transfer_bill_no),
            },
        })
    }
}

fn read_secret(path: &Path, key: &str) -> anyhow::Result<SecretString> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|error| anyhow::anyhow!("setting `{key}`: reading {}: {error}", path.display()))
}

fn wechat_config(settings: &Settings, notify_url: &str) -> anyhow::Result<WechatPayConfig> {
    let missing =
        |key: &str| anyhow::anyhow!("setting `{key}` is required when gateway = \"wechat\"");
    let path =
        |value: &Option<std::path::PathBuf>, key: &str| value.clone().ok_or_else(|| missing(key));
    let text = |value: &Option<String>, key: &str| value.clone().ok_or_else(|| missing(key));
    let merchant_key = read_secret(
        &path(
            &settings.wechat_merchant_key_file,
            "wechat_merchant_key_file",
        )?,
        "wechat_merchant_key_file",
    )?;
    let platform_key_file = path(
        &settings.wechat_platform_public_key_file,
        "wechat_platform_public_key_file",
    )?;
    let platform_key = std::fs::read_to_string(&platform_key_file).map_err(|error| {
        anyhow::anyhow!(
            "setting `wechat_platform_public_key_file`: reading {}: {error}",
            platform_key_file.display()
        )
    })?;
    let api_v3_key = read_secret(
        &path(&settings.wechat_api_v3_key_file, "wechat_api_v3_key_file")?,
        "wechat_api_v3_key_file",
    )?;
    Ok(WechatPayConfig::new(
        text(&settings.wechat_base_url, "wechat_base_url")?,
        text(&settings.wechat_mchid, "wechat_mchid")?,
        text(&settings.wechat_appid, "wechat_appid")?,
        text(
            &settings.wechat_merchant_serial_no,
            "wechat_merchant_serial_no",
        )?,
        merchant_key,
        text(
            &settings.wechat_platform_public_key_id,
            "wechat_platform_public_key_id",
        )?,
        platform_key,
        api_v3_key,
        notify_url.to_owned(),
    )?)
}

/// The metrics label of a gateway call's result.
fn outcome_of<T>(result: &Result<T, GatewayError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(GatewayError::Transient(_)) => "transient",
        Err(GatewayError::Rejected { .. }) => "rejected",
        Err(GatewayError::Ambiguous(_)) => "ambiguous",
    }
}
