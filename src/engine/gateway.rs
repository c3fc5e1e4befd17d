//! The payout rails this process pays through, chosen by the settings, and
//! the routing of each payout account's channel to its rail: `wechat` →
//! WeChat Pay v3 商家转账; `alipay` → Alipay 单笔无密转账 to an account;
//! `bank` → Alipay 转账到银行卡. With `gateway = "sandbox"` the sandbox (in
//! process, or a `fenrun sandbox-gateway` at `sandbox_url`) serves every
//! channel through the same clients real payouts use, so it exercises every
//! line of them; with `gateway = "live"` each channel whose merchant is
//! configured gets its rail, and the others are refused at request.

use std::path::Path;

use axum::http::HeaderMap;
use fenrun_integrations::alipay::{
    AlipayClient, AlipayConfig, AlipayKeys, AlipayProduct, FundOrderNotifyVerifier, NotifyError,
};
use fenrun_integrations::sandbox::{
    AlipayKeyMode as SandboxAlipayMode, SandboxConfig, SandboxGateway, SandboxHandle,
};
use fenrun_integrations::statement::{Statement, StatementError};
use fenrun_integrations::tls::ExtraRoots;
use fenrun_integrations::wechat::{
    CallbackError, CallbackVerifier, WechatPayClient, WechatPayConfig,
};
use fenrun_integrations::{
    BankAccount, BankBranch, CompanyBankAccount, GatewayError, OutBillNo, PayoutGateway,
    PayoutRequest, TransferStatus,
};
use secrecy::SecretString;

use crate::config::{AlipayKeyMode, GatewayKind, Settings};
use crate::domain::banks::BankAccountKind;
use crate::domain::identity::PayoutChannel;
use crate::domain::reconciliation::StatementSource;
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
            TransferStatus::Returned { reason } => GatewayOutcome::Returned { reason },
        }
    }
}

/// The wire protocol a rail speaks, and so the notification route its
/// callbacks arrive on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// WeChat Pay v3, callbacks at `/v1/gateways/wechat/notify`.
    Wechat,
    /// Alipay OpenAPI, notifications at `/v1/gateways/alipay/notify`.
    Alipay,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Wechat => "wechat",
            Dialect::Alipay => "alipay",
        }
    }
}

/// How the sandbox's Alipay side signs: certificate mode, the one real fund
/// transfers use, so the demo and tests run its every line.
const SANDBOX_ALIPAY_MODE: SandboxAlipayMode = SandboxAlipayMode::Certificate;

/// The notification paths, below `public_url`.
pub const WECHAT_NOTIFY_PATH: &str = "/v1/gateways/wechat/notify";
pub const ALIPAY_NOTIFY_PATH: &str = "/v1/gateways/alipay/notify";

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
    Live,
}

/// One configured rail: a client of one product and the verifier of the
/// notifications that report on it.
enum Rail {
    Wechat(WechatPayClient),
    Alipay(AlipayClient),
}

impl Rail {
    fn dialect(&self) -> Dialect {
        match self {
            Rail::Wechat(_) => Dialect::Wechat,
            Rail::Alipay(_) => Dialect::Alipay,
        }
    }
}

pub struct Gateway {
    wechat: Option<Rail>,
    alipay: Option<Rail>,
    bank: Option<Rail>,
    wechat_verifier: Option<CallbackVerifier>,
    alipay_verifier: Option<FundOrderNotifyVerifier>,
    mode: Mode,
}

/// Where a process's gateways call back: `public_url` plus each dialect's path.
#[derive(Debug, Clone)]
pub struct NotifyUrls {
    pub wechat: String,
    pub alipay: String,
}

impl NotifyUrls {
    pub fn below(public_url: &str) -> NotifyUrls {
        let base = public_url.trim_end_matches('/');
        NotifyUrls {
            wechat: format!("{base}{WECHAT_NOTIFY_PATH}"),
            alipay: format!("{base}{ALIPAY_NOTIFY_PATH}"),
        }
    }
}

impl Gateway {
    /// Connects the rails the settings configure; callbacks must go to `notify`.
    pub async fn connect(settings: &Settings, notify: &NotifyUrls) -> anyhow::Result<Gateway> {
        let transport = Transport {
            timeout: std::time::Duration::from_millis(settings.gateway_timeout_ms),
            roots: gateway_roots(settings)?,
        };
        let gateway = match settings.gateway {
            GatewayKind::Sandbox => {
                // The sandbox serves every channel, each in its own dialect;
                // Alipay in certificate mode, which fund transfers require.
                let (wechat_config, account, bank, mode) = match &settings.sandbox_url {
                    Some(url) => {
                        let sandbox = SandboxConfig::default();
                        (
                            sandbox.client_config_for(url, &notify.wechat)?,
                            sandbox.alipay_client_config_for(
                                url,
                                AlipayProduct::AlipayAccount,
                                SANDBOX_ALIPAY_MODE,
                                &notify.alipay,
                            )?,
                            sandbox.alipay_client_config_for(
                                url,
                                AlipayProduct::BankCard,
                                SANDBOX_ALIPAY_MODE,
                                &notify.alipay,
                            )?,
                            Mode::SandboxAt(url.clone()),
                        )
                    }
                    None => {
                        let handle = SandboxGateway::start(SandboxConfig::default()).await?;
                        (
                            handle.client_config(&notify.wechat)?,
                            handle.alipay_client_config(
                                AlipayProduct::AlipayAccount,
                                SANDBOX_ALIPAY_MODE,
                                &notify.alipay,
                            )?,
                            handle.alipay_client_config(
                                AlipayProduct::BankCard,
                                SANDBOX_ALIPAY_MODE,
                                &notify.alipay,
                            )?,
                            Mode::SandboxInProcess(Box::new(handle)),
                        )
                    }
                };
                let (wechat, wechat_verifier) = wechat_rail(wechat_config, &transport)?;
                let alipay_verifier = FundOrderNotifyVerifier::new(&account)?;
                Gateway {
                    wechat: Some(wechat),
                    alipay: Some(alipay_rail(account, &transport)?),
                    bank: Some(alipay_rail(bank, &transport)?),
                    wechat_verifier: Some(wechat_verifier),
                    alipay_verifier: Some(alipay_verifier),
                    mode,
                }
            }
            GatewayKind::Live => {
                let channels = settings.live_channels()?;
                let (wechat, wechat_verifier) = if channels.contains(&PayoutChannel::Wechat) {
                    let config = wechat_config(settings, &notify.wechat)?;
                    let (rail, verifier) = wechat_rail(config, &transport)?;
                    (Some(rail), Some(verifier))
                } else {
                    (None, None)
                };
                let (alipay, bank, alipay_verifier) = match settings.alipay_key_mode()? {
                    Some(mode) => {
                        let account = alipay_config(settings, mode, AlipayProduct::AlipayAccount)?;
                        let verifier = FundOrderNotifyVerifier::new(&account)?;
                        let bank = if channels.contains(&PayoutChannel::Bank) {
                            let config = alipay_config(settings, mode, AlipayProduct::BankCard)?;
                            Some(alipay_rail(config, &transport)?)
                        } else {
                            None
                        };
                        (
                            Some(alipay_rail(account, &transport)?),
                            bank,
                            Some(verifier),
                        )
                    }
                    None => (None, None, None),
                };
                Gateway {
                    wechat,
                    alipay,
                    bank,
                    wechat_verifier,
                    alipay_verifier,
                    mode: Mode::Live,
                }
            }
        };
        match &gateway.mode {
            Mode::SandboxInProcess(handle) => tracing::warn!(
                sandbox = %handle.base_url(),
                "payouts on every channel go to the in-process SANDBOX gateway: no real money moves"
            ),
            Mode::SandboxAt(url) => tracing::warn!(
                sandbox = %url,
                "payouts on every channel go to a SANDBOX gateway: no real money moves"
            ),
            Mode::Live => {
                for channel in PayoutChannel::ALL {
                    match gateway.rail(channel) {
                        Some(rail) => tracing::info!(
                            channel = channel.as_str(),
                            rail = rail.dialect().as_str(),
                            "payouts on this channel go to the live gateway"
                        ),
                        None => tracing::warn!(
                            channel = channel.as_str(),
                            "no merchant is configured for this channel: its withdrawals are refused (channel_not_configured)"
                        ),
                    }
                }
            }
        }
        Ok(gateway)
    }

    pub fn is_sandbox(&self) -> bool {
        !matches!(self.mode, Mode::Live)
    }

    /// The in-process sandbox, for the demo's and tests' comparisons.
    pub fn sandbox(&self) -> Option<&SandboxHandle> {
        match &self.mode {
            Mode::SandboxInProcess(handle) => Some(handle),
            _ => None,
        }
    }

    fn rail(&self, channel: PayoutChannel) -> Option<&Rail> {
        match channel {
            PayoutChannel::Wechat => self.wechat.as_ref(),
            PayoutChannel::Alipay => self.alipay.as_ref(),
            PayoutChannel::Bank => self.bank.as_ref(),
        }
    }

    fn rail_or_refuse(&self, channel: PayoutChannel) -> Result<&Rail, GatewayError> {
        self.rail(channel).ok_or_else(|| GatewayError::Rejected {
            code: "CHANNEL_NOT_CONFIGURED".to_owned(),
            reason: format!(
                "no merchant is configured for the {} channel",
                channel.as_str()
            ),
        })
    }

    /// The statement sources this process can download: those of the
    /// channels it pays.
    pub fn statement_sources(&self) -> Vec<StatementSource> {
        let mut sources: Vec<StatementSource> = PayoutChannel::ALL
            .into_iter()
            .filter(|channel| self.pays(*channel))
            .map(StatementSource::of_channel)
            .collect();
        sources.dedup();
        sources
    }

    /// The gateway's statement of `source` for the China day `bill_date`,
    /// downloaded, checked against its hash (WeChat) or archive (Alipay),
    /// and parsed. `Rejected` with `CHANNEL_NOT_CONFIGURED` when no
    /// merchant of the source is configured here.
    pub async fn statement(
        &self,
        source: StatementSource,
        bill_date: chrono::NaiveDate,
    ) -> Result<Statement, StatementError> {
        let rail = source
            .channels()
            .iter()
            .find_map(|channel| self.rail(*channel))
            .ok_or_else(|| StatementError::Rejected {
                code: "CHANNEL_NOT_CONFIGURED".to_owned(),
                reason: format!(
                    "no merchant is configured for the {} statement",
                    source.as_str()
                ),
            })?;
        match rail {
            Rail::Wechat(client) => client.fund_flow_bill(bill_date).await,
            Rail::Alipay(client) => client.account_log_bill(bill_date).await,
        }
    }

    /// Whether payouts to accounts of this channel can be sent.
    pub fn pays(&self, channel: PayoutChannel) -> bool {
        self.rail(channel).is_some()
    }

    /// The dialect the callbacks about a channel's payouts come in.
    pub fn dialect_of(&self, channel: PayoutChannel) -> Option<Dialect> {
        self.rail(channel).map(Rail::dialect)
    }

    pub async fn transfer(
        &self,
        channel: PayoutChannel,
        request: &PayoutRequest,
    ) -> Result<GatewayNews, GatewayError> {
        let rail = self.rail_or_refuse(channel)?;
        let started = std::time::Instant::now();
        let result = match rail {
            Rail::Wechat(client) => client.transfer(request).await,
            Rail::Alipay(client) => client.transfer(request).await,
        };
        crate::telemetry::metrics::gateway_call("transfer", outcome_of(&result), started);
        result.map(GatewayNews::of)
    }

    pub async fn query(
        &self,
        channel: PayoutChannel,
        out_bill_no: &str,
    ) -> Result<Option<GatewayNews>, GatewayError> {
        let rail = self.rail_or_refuse(channel)?;
        let number = OutBillNo::for_withdrawal(out_bill_no)?;
        let started = std::time::Instant::now();
        let result = match rail {
            Rail::Wechat(client) => client.query(&number).await,
            Rail::Alipay(client) => client.query(&number).await,
        };
        crate::telemetry::metrics::gateway_call("query", outcome_of(&result), started);
        Ok(result?.map(GatewayNews::of))
    }

    pub async fn cancel(
        &self,
        channel: PayoutChannel,
        out_bill_no: &str,
    ) -> Result<GatewayNews, GatewayError> {
        let rail = self.rail_or_refuse(channel)?;
        let number = OutBillNo::for_withdrawal(out_bill_no)?;
        let started = std::time::Instant::now();
        let result = match rail {
            Rail::Wechat(client) => client.cancel(&number).await,
            Rail::Alipay(client) => client.cancel(&number).await,
        };
        crate::telemetry::metrics::gateway_call("cancel", outcome_of(&result), started);
        result.map(GatewayNews::of)
    }

    /// Verifies a WeChat Pay callback's signature and time window and
    /// decrypts it. The window is checked against the wall clock, as the
    /// gateway signs it.
    pub fn verify_callback(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<CallbackNews, CallbackRefusal> {
        let verifier = self.wechat_verifier.as_ref().ok_or(CallbackRefusal {
            code: "channel_not_configured",
            message: "no WeChat Pay merchant is configured: this callback cannot be ours"
                .to_owned(),
        })?;
        let now = chrono::Utc::now().timestamp();
        let notification = verifier
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
            dialect: Dialect::Wechat,
            out_bill_no: notification.out_bill_no,
            amount_fen: notification.amount.0,
            news: GatewayNews::Status {
                status: notification.status,
                bill_no: Some(notification.transfer_bill_no),
            },
        })
    }

    /// Verifies an Alipay `alipay.fund.trans.order.changed` notification
    /// from its raw form body.
    pub fn verify_alipay_notification(&self, body: &[u8]) -> Result<CallbackNews, CallbackRefusal> {
        let verifier = self.alipay_verifier.as_ref().ok_or(CallbackRefusal {
            code: "channel_not_configured",
            message: "no Alipay app is configured: this notification cannot be ours".to_owned(),
        })?;
        let notification = verifier
            .verify_form(body)
            .map_err(|error| CallbackRefusal {
                code: match &error {
                    NotifyError::BadSignature => "bad_signature",
                    NotifyError::WrongApp => "unknown_app",
                    NotifyError::MissingField(_) => "missing_signature_field",
                    NotifyError::WrongMethod | NotifyError::Malformed(_) => "malformed_callback",
                },
                message: error.to_string(),
            })?;
        Ok(CallbackNews {
            dialect: Dialect::Alipay,
            out_bill_no: notification.out_bill_no.as_str().to_owned(),
            amount_fen: notification.amount.0,
            news: GatewayNews::Status {
                status: notification.status,
                bill_no: (!notification.order_id.is_empty()).then_some(notification.order_id),
            },
        })
    }
}

/// What every rail's HTTP client shares: the call limit and whom it trusts.
struct Transport {
    timeout: std::time::Duration,
    roots: ExtraRoots,
}

fn wechat_rail(
    mut config: WechatPayConfig,
    transport: &Transport,
) -> anyhow::Result<(Rail, CallbackVerifier)> {
    config.request_timeout = transport.timeout;
    config.extra_roots = transport.roots.clone();
    let verifier = CallbackVerifier::new(&config)?;
    Ok((Rail::Wechat(WechatPayClient::new(config)?), verifier))
}

fn alipay_rail(mut config: AlipayConfig, transport: &Transport) -> anyhow::Result<Rail> {
    config.request_timeout = transport.timeout;
    config.extra_roots = transport.roots.clone();
    Ok(Rail::Alipay(AlipayClient::new(config)?))
}

/// The CA certificates of `gateway_ca_file`, read and checked once, at
/// start: a file that cannot be read or holds no certificate fails it.
fn gateway_roots(settings: &Settings) -> anyhow::Result<ExtraRoots> {
    let Some(path) = &settings.gateway_ca_file else {
        return Ok(ExtraRoots::default());
    };
    if !cfg!(feature = "tls") {
        anyhow::bail!(
            "setting `gateway_ca_file` is set, but this build has no TLS (built without the `tls` feature); build with the default features"
        );
    }
    let text = read_text(path, "gateway_ca_file")?;
    let roots = ExtraRoots::from_pem(&text).map_err(|error| {
        anyhow::anyhow!("setting `gateway_ca_file`: {} {error}", path.display())
    })?;
    tracing::info!(
        file = %path.display(),
        certificates = roots.len(),
        "gateway clients trust these CA certificates besides the public roots"
    );
    Ok(roots)
}

fn read_secret(path: &Path, key: &str) -> anyhow::Result<SecretString> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|error| anyhow::anyhow!("setting `{key}`: reading {}: {error}", path.display()))
}

fn read_text(path: &Path, key: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("setting `{key}`: reading {}: {error}", path.display()))
}

fn alipay_config(
    settings: &Settings,
    mode: AlipayKeyMode,
    product: AlipayProduct,
) -> anyhow::Result<AlipayConfig> {
    let missing = |key: &str| anyhow::anyhow!("setting `{key}` is required for Alipay payouts");
    let file = |value: &Option<std::path::PathBuf>, key: &str| -> anyhow::Result<String> {
        read_text(value.as_ref().ok_or_else(|| missing(key))?, key)
    };
    let app_private_key = read_secret(
        settings
            .alipay_app_private_key_file
            .as_ref()
            .ok_or_else(|| missing("alipay_app_private_key_file"))?,
        "alipay_app_private_key_file",
    )?;
    let keys = match mode {
        AlipayKeyMode::PublicKey => AlipayKeys::PublicKey {
            alipay_public_key: file(&settings.alipay_public_key_file, "alipay_public_key_file")?,
        },
        AlipayKeyMode::Certificate => AlipayKeys::Certificate {
            app_cert: file(&settings.alipay_app_cert_file, "alipay_app_cert_file")?,
            alipay_certs: file(&settings.alipay_cert_file, "alipay_cert_file")?,
            alipay_root_cert: file(&settings.alipay_root_cert_file, "alipay_root_cert_file")?,
        },
    };
    let config = AlipayConfig::new(
        settings
            .alipay_base_url
            .clone()
            .ok_or_else(|| missing("alipay_base_url"))?,
        settings
            .alipay_app_id
            .clone()
            .ok_or_else(|| missing("alipay_app_id"))?,
        product,
        app_private_key,
        keys,
    )?;
    Ok(config)
}

fn wechat_config(settings: &Settings, notify_url: &str) -> anyhow::Result<WechatPayConfig> {
    let missing = |key: &str| anyhow::anyhow!("setting `{key}` is required for WeChat Pay payouts");
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

/// A bank account's type and branch as the bank rail sends them
/// (`payee_info.bankcard_ext_info`).
pub fn bank_payee(kind: &BankAccountKind) -> BankAccount {
    match kind {
        BankAccountKind::Personal => BankAccount::Personal,
        BankAccountKind::Company(company) => BankAccount::Company(CompanyBankAccount {
            inst_name: company.inst().name.to_owned(),
            bank_code: company.bank_code().map(str::to_owned),
            branch: company.location().map(|place| BankBranch {
                province: place.province.clone(),
                city: place.city.clone(),
                name: place.branch_name.clone(),
            }),
        }),
    }
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
