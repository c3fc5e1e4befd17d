//! A local payout gateway speaking two dialects on one port: WeChat Pay v3
//! transfer-bills and Alipay OpenAPI v1 `gateway.do`. It is the test double
//! every gateway test runs against and the demo's gateway. **No real money
//! moves through it**, and its keys (in `integrations/sandbox-keys/`) are
//! public test keys.
//!
//! It speaks the dialect [`crate::wechat::WechatPayClient`] speaks, byte for
//! byte: it verifies request signatures with the merchant public key, signs
//! every answer and callback with the platform key, decrypts `user_name`,
//! keeps bills idempotent by `out_bill_no`, runs the bill state machine
//! (`state`), delivers encrypted `MCHTRANSFER.BILL.FINISHED` callbacks with
//! retries (`notify`), and injects reproducible [`Faults`] (`faults`).
//!
//! It also speaks the dialect [`crate::alipay::AlipayClient`] speaks
//! (`alipay`), in public-key and certificate mode: `POST /gateway.do` with
//! `alipay.fund.trans.uni.transfer` to an Alipay account (`SUCCESS` at once)
//! or a bank card (`DEALING`, then `SUCCESS`, and on demand a bounce to
//! `REFUND`), `alipay.fund.trans.common.query`, and signed
//! `alipay.fund.trans.order.changed` notifications, under the same faults.
//!
//! Its own [`SandboxLedger`] counts every payment per channel (and every
//! bounce), so tests can check that no bill was ever paid twice; its records
//! carry what a statement line needs. Every time it stamps comes from its
//! clock, which [`SandboxHandle::set_clock_offset`] moves.
//!
//! It also serves the day's statements built from that ledger
//! (`statements`): `GET /v3/bill/fundflowbill` (signed, like the real one,
//! WeChat bills only) and its download, and the Alipay account log
//! (`gateway.do` with `alipay.data.dataservice.bill.downloadurl.query`, then
//! a plain download of the `csv.zip`) holding the Alipay-account and
//! bank-card bills: a payout on the China date of `paid_at`, a bank card's
//! fee (`收费`) beside it, a bounce's return (`退票`) on the China date of
//! `returned_at`. Days, and whether one is over ("not ready"), are by the
//! sandbox's clock.
//! [`StatementFaults`] (`POST /sandbox/statements/faults`, or
//! [`SandboxHandle::set_statement_faults`]) make the statements disagree
//! with the ledger, deterministically, on the payout lines sorted by bill
//! number: `drop_lines` leaves out the first n; `wrong_amount_lines` adds
//! 1.00 yuan to the next n; `flip_state_lines` shows the next n also
//! returned (a return line added); `extra_lines` adds n payouts of 1.00
//! yuan for bill numbers fenrun never sent (`sbxextra0001`, …). Each file's
//! summary agrees with its own lines, as a real file's would.
//!
//! It serves plain HTTP, or HTTPS when [`SandboxConfig::tls`] gives it a
//! certificate and key (`tls`): then its base URL and the download URLs it
//! hands out are `https://`, and the client configs it hands out need
//! `extra_roots` set to the certificate's issuer, as a real gateway's would
//! need a trusted root.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fenrun_integrations::sandbox::{SandboxConfig, SandboxGateway};
//! use fenrun_integrations::wechat::{CallbackVerifier, WechatPayClient};
//!
//! let sandbox = SandboxGateway::start(SandboxConfig::default()).await?;
//! let config = sandbox.client_config("http://127.0.0.1:8080/notify")?;
//! let verifier = CallbackVerifier::new(&config)?;
//! let client = WechatPayClient::new(config)?;
//! # let _ = (verifier, client);
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```

mod alipay;
mod faults;
mod notify;
mod server;
mod state;
mod statements;
#[cfg(feature = "tls")]
mod tls;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use alipay::{BounceRefusal, DEFAULT_BOUNCE_REASON};
pub use faults::{
    AUTO_CONFIRM_MAX_MS, ConfirmMode, DEFAULT_BANK_BOUNCE_AFTER_MS, DEFAULT_BANK_SETTLE_MS,
    DEFAULT_HANG_MS, Faults, OUT_OF_ORDER_MAX_DELAY_MS, PERMILLE,
};
pub use notify::{CallbackBuilder, CallbackSchedule, SignedCallback};
pub use statements::StatementFaults;

use crate::Channel;
use crate::alipay::{
    self as alipay_client, AlipayConfig, AlipayKeys, AlipayProduct, FundOrderNotifyVerifier,
    FundOrderStatus,
};
use crate::wechat::crypto::{self, ResourceKey, RsaSigner, RsaVerifier};
use crate::wechat::{BillState, CallbackVerifier, ConfigError, WechatPayConfig};
use state::Sandbox;

/// The test merchant's ids. Public test values, like the keys.
pub const SANDBOX_MCHID: &str = "1900000109";
pub const SANDBOX_APPID: &str = "wx0sandbox00000001";
pub const SANDBOX_MERCHANT_SERIAL_NO: &str = "5AND80XMERCHANT0000000000000000001";
pub const SANDBOX_PLATFORM_PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0000SANDBOX0000000000000001";

/// TEST-ONLY key material, public in this repository: never for real money.
const MERCHANT_PRIVATE_KEY_PEM: &str = include_str!("../../sandbox-keys/merchant_private_key.pem");
const MERCHANT_PUBLIC_KEY_PEM: &str = include_str!("../../sandbox-keys/merchant_public_key.pem");
const PLATFORM_PRIVATE_KEY_PEM: &str = include_str!("../../sandbox-keys/platform_private_key.pem");
const PLATFORM_PUBLIC_KEY_PEM: &str = include_str!("../../sandbox-keys/platform_public_key.pem");
const API_V3_KEY: &str = include_str!("../../sandbox-keys/api_v3_key.txt");

/// The test Alipay app. A public test value, like the keys.
pub const SANDBOX_ALIPAY_APP_ID: &str = "2021000000000001";

/// TEST-ONLY Alipay keys and certificates (see
/// `integrations/sandbox-keys/alipay/README.md`): never for real money.
const ALIPAY_APP_PRIVATE_KEY_PEM: &str =
    include_str!("../../sandbox-keys/alipay/app_private_key.pem");
const ALIPAY_APP_PUBLIC_KEY_PEM: &str =
    include_str!("../../sandbox-keys/alipay/app_public_key.pem");
const ALIPAY_PRIVATE_KEY_PEM: &str =
    include_str!("../../sandbox-keys/alipay/alipay_private_key.pem");
const ALIPAY_PUBLIC_KEY_PEM: &str = include_str!("../../sandbox-keys/alipay/alipay_public_key.pem");
const ALIPAY_APP_CERT_PEM: &str = include_str!("../../sandbox-keys/alipay/app_public_cert.crt");
const ALIPAY_CERT_PEM: &str = include_str!("../../sandbox-keys/alipay/alipay_public_cert.crt");
const ALIPAY_ROOT_CERT_PEM: &str = include_str!("../../sandbox-keys/alipay/alipay_root_cert.crt");

/// How an Alipay client handed out by the sandbox signs and verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlipayKeyMode {
    /// 公钥模式: no SNs on requests or answers.
    PublicKey,
    /// 公钥证书模式: `app_cert_sn` and `alipay_root_cert_sn` on requests,
    /// `alipay_cert_sn` on answers.
    Certificate,
}

/// Request timeout of the client configs the sandbox hands out: well under
/// [`DEFAULT_HANG_MS`], so an injected hang is a timeout.
pub const DEFAULT_CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long [`SandboxHandle::shutdown`] waits for answers in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How the sandbox runs. [`Default`] listens on `127.0.0.1:0` with the
/// shipped test keys and no faults.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Port 0 picks a free port. Keep it on loopback: the `/sandbox/…` admin
    /// endpoints have no authentication.
    pub listen: SocketAddr,
    pub mchid: String,
    pub appid: String,
    pub merchant_serial_no: String,
    /// Only to hand out matching client configs; the sandbox verifies with
    /// the public key.
    pub merchant_private_key: SecretString,
    /// SPKI PEM.
    pub merchant_public_key: String,
    pub platform_public_key_id: String,
    /// PKCS#8 PEM: signs answers and callbacks, decrypts `user_name`.
    pub platform_private_key: SecretString,
    /// SPKI PEM, for the client configs.
    pub platform_public_key: String,
    /// 32 bytes.
    pub api_v3_key: SecretString,
    pub faults: Faults,
    pub callback_schedule: CallbackSchedule,
    /// `request_timeout` of the client configs handed out.
    pub client_request_timeout: Duration,
    /// The Alipay app whose requests the sandbox accepts.
    pub alipay_app_id: String,
    /// Only to hand out matching Alipay client configs (PKCS#8 or PKCS#1
    /// PEM).
    pub alipay_app_private_key: SecretString,
    /// SPKI PEM: verifies Alipay request signatures in both modes.
    pub alipay_app_public_key: String,
    /// PKCS#8 PEM: the test "Alipay" key that signs answers and
    /// notifications.
    pub alipay_private_key: SecretString,
    /// SPKI PEM, for public-key mode client configs.
    pub alipay_public_key: String,
    /// PEM certificates of certificate mode: the app's (its SN is required on
    /// requests), the "Alipay" one (named in answers), and the root bundle
    /// (its SN is required on requests).
    pub alipay_app_cert: String,
    pub alipay_cert: String,
    pub alipay_root_cert: String,
    /// Where `order.changed` notifications go for requests that carry no
    /// `notify_url` (the app's gateway address at Alipay). `None`: such
    /// changes are only seen by a query.
    pub alipay_notify_url: Option<String>,
    /// Serve HTTPS with this identity instead of plain HTTP (a build with
    /// the `tls` feature only). Clients must then trust its issuer, as they
    /// would a real gateway's.
    pub tls: Option<SandboxTls>,
}

/// The sandbox's TLS identity. `Debug` shows no key.
#[derive(Debug, Clone)]
pub struct SandboxTls {
    /// PEM certificates: the server's first, then any intermediates. Name
    /// the host clients use (`127.0.0.1`, `localhost`) in its
    /// subjectAltName, or clients refuse it.
    pub cert_chain_pem: String,
    /// PEM private key of the first certificate (PKCS#8, PKCS#1 or SEC1).
    pub private_key_pem: SecretString,
}

impl Default for SandboxConfig {
    fn default() -> SandboxConfig {
        SandboxConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            mchid: SANDBOX_MCHID.to_owned(),
            appid: SANDBOX_APPID.to_owned(),
            merchant_serial_no: SANDBOX_MERCHANT_SERIAL_NO.to_owned(),
            merchant_private_key: SecretString::from(MERCHANT_PRIVATE_KEY_PEM),
            merchant_public_key: MERCHANT_PUBLIC_KEY_PEM.to_owned(),
            platform_public_key_id: SANDBOX_PLATFORM_PUBLIC_KEY_ID.to_owned(),
            platform_private_key: SecretString::from(PLATFORM_PRIVATE_KEY_PEM),
            platform_public_key: PLATFORM_PUBLIC_KEY_PEM.to_owned(),
            api_v3_key: SecretString::from(API_V3_KEY.trim_end()),
            faults: Faults::default(),
            callback_schedule: CallbackSchedule::default(),
            client_request_timeout: DEFAULT_CLIENT_REQUEST_TIMEOUT,
            alipay_app_id: SANDBOX_ALIPAY_APP_ID.to_owned(),
            alipay_app_private_key: SecretString::from(ALIPAY_APP_PRIVATE_KEY_PEM),
            alipay_app_public_key: ALIPAY_APP_PUBLIC_KEY_PEM.to_owned(),
            alipay_private_key: SecretString::from(ALIPAY_PRIVATE_KEY_PEM),
            alipay_public_key: ALIPAY_PUBLIC_KEY_PEM.to_owned(),
            alipay_app_cert: ALIPAY_APP_CERT_PEM.to_owned(),
            alipay_cert: ALIPAY_CERT_PEM.to_owned(),
            alipay_root_cert: ALIPAY_ROOT_CERT_PEM.to_owned(),
            alipay_notify_url: None,
            tls: None,
        }
    }
}

impl SandboxConfig {
    /// A client config for a sandbox with these settings running at
    /// `base_url` (e.g. a `fenrun sandbox-gateway` started elsewhere).
    pub fn client_config_for(
        &self,
        base_url: &str,
        notify_url: &str,
    ) -> Result<WechatPayConfig, ConfigError> {
        let mut config = WechatPayConfig::new(
            base_url.trim_end_matches('/').to_owned(),
            self.mchid.clone(),
            self.appid.clone(),
            self.merchant_serial_no.clone(),
            self.merchant_private_key.clone(),
            self.platform_public_key_id.clone(),
            self.platform_public_key.clone(),
            self.api_v3_key.clone(),
            notify_url.to_owned(),
        )?;
        config.request_timeout = self.client_request_timeout;
        Ok(config)
    }

    /// An Alipay client config for a sandbox with these settings running at
    /// `base_url`, for `product`, signing in `mode`; the requests name
    /// `notify_url`, so notifications go there.
    pub fn alipay_client_config_for(
        &self,
        base_url: &str,
        product: AlipayProduct,
        mode: AlipayKeyMode,
        notify_url: &str,
    ) -> Result<AlipayConfig, alipay_client::ConfigError> {
        let keys = match mode {
            AlipayKeyMode::PublicKey => AlipayKeys::PublicKey {
                alipay_public_key: self.alipay_public_key.clone(),
            },
            AlipayKeyMode::Certificate => AlipayKeys::Certificate {
                app_cert: self.alipay_app_cert.clone(),
                alipay_certs: self.alipay_cert.clone(),
                alipay_root_cert: self.alipay_root_cert.clone(),
            },
        };
        let mut config = AlipayConfig::new(
            base_url.trim_end_matches('/').to_owned(),
            self.alipay_app_id.clone(),
            product,
            self.alipay_app_private_key.clone(),
            keys,
        )?;
        config.request_timeout = self.client_request_timeout;
        config.notify_url = Some(notify_url.to_owned());
        config.validate()?;
        Ok(config)
    }

    /// What the sandbox needs of these settings to speak for "Alipay".
    fn alipay_side(&self) -> Result<alipay::AlipaySide, SandboxError> {
        let alipay_error = |field: &'static str| {
            move |error: alipay_client::crypto::KeyError| SandboxError::Config {
                field,
                reason: error.0.to_owned(),
            }
        };
        let one_certificate = |field: &'static str, pem: &str| {
            let certificates =
                alipay_client::crypto::certificates(pem).map_err(alipay_error(field))?;
            match <[_; 1]>::try_from(certificates) {
                Ok([certificate]) => Ok(certificate),
                Err(_) => Err(SandboxError::Config {
                    field,
                    reason: "must hold exactly one certificate".to_owned(),
                }),
            }
        };
        let app_cert = one_certificate("alipay_app_cert", &self.alipay_app_cert)?;
        let alipay_cert = one_certificate("alipay_cert", &self.alipay_cert)?;
        let root = alipay_client::crypto::certificates(&self.alipay_root_cert)
            .map_err(alipay_error("alipay_root_cert"))?;
        Ok(alipay::AlipaySide {
            app_id: self.alipay_app_id.clone(),
            app_verifier: alipay_client::crypto::AlipayVerifier::from_public_key(
                &self.alipay_app_public_key,
            )
            .map_err(alipay_error("alipay_app_public_key"))?,
            signer: alipay_client::crypto::AppSigner::from_pem(&self.alipay_private_key)
                .map_err(alipay_error("alipay_private_key"))?,
            app_cert_sn: alipay_client::crypto::cert_sn(&app_cert),
            alipay_root_cert_sn: alipay_client::crypto::root_cert_sn(&root),
            alipay_cert_sn: alipay_client::crypto::cert_sn(&alipay_cert),
            default_notify_url: self.alipay_notify_url.clone(),
        })
    }
}

/// Why the sandbox did not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox setting `{field}` {reason}")]
    Config { field: &'static str, reason: String },
    #[error("sandbox could not listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl From<alipay_client::ConfigError> for SandboxError {
    fn from(error: alipay_client::ConfigError) -> SandboxError {
        SandboxError::Config {
            field: error.field,
            reason: error.reason,
        }
    }
}

impl From<ConfigError> for SandboxError {
    fn from(error: ConfigError) -> SandboxError {
        SandboxError::Config {
            field: error.field,
            reason: error.reason,
        }
    }
}

fn key_error(field: &'static str) -> impl FnOnce(crypto::KeyError) -> SandboxError {
    move |error| SandboxError::Config {
        field,
        reason: error.0.to_owned(),
    }
}

fn wechat_channel() -> Channel {
    Channel::Wechat
}

/// One bill in the sandbox's ledger, on any channel: everything a statement
/// line needs. Never the payee's account or name: only a hash of the
/// account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerBill {
    /// Our number: WeChat `out_bill_no`, Alipay `out_biz_no`.
    pub out_bill_no: String,
    /// The gateway's number: WeChat `transfer_bill_no`, Alipay `order_id`
    /// (the same as [`Self::order_id`], kept under its first name).
    pub transfer_bill_no: String,
    pub amount_fen: i64,
    /// WeChat's state; for Alipay bills the nearest one (`DEALING` →
    /// `PROCESSING`, `SUCCESS` and `REFUND` → `SUCCESS`, `FAIL` → `FAIL`).
    /// The exact Alipay status is [`Self::alipay_status`].
    pub state: BillState,
    /// WeChat `fail_reason`; Alipay `error_code`, else `fail_reason` (a
    /// bounce's reason too).
    pub fail_reason: Option<String>,
    /// First 8 bytes of SHA-256 of the openid (Alipay: of the logon id or
    /// card number), hex.
    pub openid_hash: String,
    /// Create requests that reached the bill: the first and each replay.
    pub create_count: u32,
    /// Times the money moved out: 0 or 1, by construction. A bounce does not
    /// undo it; [`Self::returned`] says the money came back.
    pub paid_times: u32,
    /// Genuine final-state callbacks the receiver acknowledged (Alipay:
    /// notifications answered `success`, one per change).
    pub callbacks_delivered: u32,
    #[serde(default = "wechat_channel")]
    pub channel: Channel,
    /// The gateway's order id: WeChat `transfer_bill_no`, Alipay `order_id`.
    #[serde(default)]
    pub order_id: String,
    /// Alipay bills only: the status as Alipay spells it.
    #[serde(default)]
    pub alipay_status: Option<FundOrderStatus>,
    /// When the money moved out, RFC 3339 by the sandbox's clock.
    #[serde(default)]
    pub paid_at: Option<String>,
    /// Whether the bank returned the money (Alipay `REFUND`).
    #[serde(default)]
    pub returned: bool,
    /// When it came back, RFC 3339 by the sandbox's clock.
    #[serde(default)]
    pub returned_at: Option<String>,
    /// The gateway's fee for this bill, in fen: 0 but for bank cards
    /// ([`Faults::bank_order_fee_fen`]).
    #[serde(default)]
    pub order_fee_fen: i64,
}

/// One channel's money in the sandbox's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTotals {
    pub channel: Channel,
    /// Bills whose money moved out, and how much (bounced ones included).
    pub sent_count: u64,
    pub sent_fen: i64,
    /// Bills whose money came back, and how much.
    pub returned_count: u64,
    pub returned_fen: i64,
    /// Fees of this channel's bills.
    pub fee_fen: i64,
}

impl ChannelTotals {
    pub(crate) fn empty(channel: Channel) -> ChannelTotals {
        ChannelTotals {
            channel,
            sent_count: 0,
            sent_fen: 0,
            returned_count: 0,
            returned_fen: 0,
            fee_fen: 0,
        }
    }
}

/// What the sandbox paid, for comparison with fenrun's own ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLedger {
    /// Sorted by `out_bill_no`, then channel.
    pub bills: Vec<LedgerBill>,
    /// Money sent on every channel, bounced bills included; what stayed out
    /// is `total_paid_fen - total_returned_fen`.
    pub total_paid_fen: i64,
    pub paid_count: u64,
    /// Money the banks returned.
    #[serde(default)]
    pub total_returned_fen: i64,
    #[serde(default)]
    pub returned_count: u64,
    /// Per channel, always `wechat`, `alipay`, `bank` in that order.
    #[serde(default)]
    pub channels: Vec<ChannelTotals>,
}

impl SandboxLedger {
    /// The totals of one channel.
    pub fn channel(&self, channel: Channel) -> ChannelTotals {
        self.channels
            .iter()
            .find(|totals| totals.channel == channel)
            .cloned()
            .unwrap_or_else(|| ChannelTotals::empty(channel))
    }
}

/// Starts sandboxes.
#[derive(Debug)]
pub struct SandboxGateway;

impl SandboxGateway {
    /// Checks the keys, binds `config.listen`, and serves on the current
    /// tokio runtime until the handle is shut down or dropped.
    pub async fn start(config: SandboxConfig) -> Result<SandboxHandle, SandboxError> {
        config
            .faults
            .validate()
            .map_err(|reason| SandboxError::Config {
                field: "faults",
                reason,
            })?;
        let merchant = RsaVerifier::from_spki_pem(&config.merchant_public_key)
            .map_err(key_error("merchant_public_key"))?;
        let platform_signer = RsaSigner::from_pkcs8_pem(&config.platform_private_key)
            .map_err(key_error("platform_private_key"))?;
        let platform_decryptor = crypto::rsa_private_key(&config.platform_private_key)
            .map_err(key_error("platform_private_key"))?;
        let resource_key =
            ResourceKey::from_api_v3_key(&config.api_v3_key).map_err(key_error("api_v3_key"))?;
        let notifier = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| SandboxError::Config {
                field: "callback_schedule",
                reason: "the callback HTTP client could not be built".to_owned(),
            })?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SandboxError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SandboxError::Listen {
                addr: config.listen,
                source,
            })?;
        // Built before anything is served, so a bad identity fails the start.
        #[cfg(feature = "tls")]
        let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
        #[cfg(not(feature = "tls"))]
        if config.tls.is_some() {
            return Err(SandboxError::Config {
                field: "tls",
                reason: "is set, but this build has no TLS (built without the `tls` feature)"
                    .to_owned(),
            });
        }
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let base_url = format!("{scheme}://{addr}");
        // The handed-out client configs must work: check them before serving.
        config.client_config_for(&base_url, &format!("{base_url}/notify"))?;
        for mode in [AlipayKeyMode::PublicKey, AlipayKeyMode::Certificate] {
            config.alipay_client_config_for(
                &base_url,
                AlipayProduct::AlipayAccount,
                mode,
                &format!("{base_url}/notify"),
            )?;
        }
        let alipay = config.alipay_side()?;

        let (stop, stopped) = watch::channel(false);
        let sandbox = Arc::new(Sandbox::new(
            [
                config.mchid.clone(),
                config.appid.clone(),
                config.merchant_serial_no.clone(),
                config.platform_public_key_id.clone(),
            ],
            merchant,
            platform_signer,
            platform_decryptor,
            resource_key,
            config.callback_schedule.clone(),
            notifier,
            alipay,
            scheme,
            config.faults.clone(),
            stopped.clone(),
        ));
        let app = server::router(Arc::clone(&sandbox));
        let mut shutdown = stopped;
        #[cfg(feature = "tls")]
        if let Some(acceptor) = acceptor {
            let server = tokio::spawn(tls::serve(listener, acceptor, app, shutdown));
            return Ok(SandboxGateway::started(
                sandbox, config, base_url, addr, stop, server,
            ));
        }
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stopped| *stopped).await;
            });
            if let Err(error) = serving.await {
                tracing::error!(%error, "sandbox server stopped");
            }
        });
        Ok(SandboxGateway::started(
            sandbox, config, base_url, addr, stop, server,
        ))
    }

    fn started(
        sandbox: Arc<Sandbox>,
        config: SandboxConfig,
        base_url: String,
        addr: SocketAddr,
        stop: watch::Sender<bool>,
        server: JoinHandle<()>,
    ) -> SandboxHandle {
        tracing::warn!(%base_url, "SANDBOX gateway listening: test keys, no real money moves");
        SandboxHandle {
            sandbox,
            config,
            base_url,
            addr,
            stop,
            server: Some(server),
        }
    }
}

/// A running sandbox. Dropping it stops the server and pending callbacks.
pub struct SandboxHandle {
    sandbox: Arc<Sandbox>,
    config: SandboxConfig,
    base_url: String,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxHandle")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl SandboxHandle {
    /// `http://127.0.0.1:PORT` (`https://` when serving TLS), no trailing
    /// slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A config for a [`crate::wechat::WechatPayClient`] that talks to this
    /// sandbox with the matching keys; callbacks go to `notify_url`.
    pub fn client_config(&self, notify_url: &str) -> Result<WechatPayConfig, ConfigError> {
        self.config.client_config_for(&self.base_url, notify_url)
    }

    /// A verifier for this sandbox's callbacks.
    pub fn callback_verifier(&self) -> CallbackVerifier {
        let config = self
            .client_config(&format!("{}/notify", self.base_url))
            .expect("the client config was checked at start");
        CallbackVerifier::new(&config).expect("the client config was checked at start")
    }

    /// A snapshot of what the sandbox holds and paid.
    pub fn ledger(&self) -> SandboxLedger {
        self.sandbox.book().ledger()
    }

    pub fn faults(&self) -> Faults {
        self.sandbox.faults()
    }

    /// Replaces the faults; they apply from the next request. A rate above 1
    /// always strikes, below 0 (or NaN) never.
    pub fn set_faults(&self, faults: Faults) {
        self.sandbox.set_faults(faults);
    }

    pub fn statement_faults(&self) -> StatementFaults {
        self.sandbox.statements.faults()
    }

    /// Replaces the statement mismatch knobs; they apply to every statement
    /// served from then on. Refused past [`StatementFaults::MAX_LINES`].
    pub fn set_statement_faults(&self, faults: StatementFaults) -> Result<(), String> {
        faults.validate()?;
        self.sandbox.statements.set_faults(faults);
        Ok(())
    }

    /// The payee confirms: a waiting bill ends `SUCCESS` (or `FAIL` for a
    /// payee in `fail_openids`) and its callback leaves. Returns the bill's
    /// state afterwards; `None` if the sandbox has no such bill.
    pub fn confirm(&self, out_bill_no: &str) -> Option<BillState> {
        self.sandbox.confirm(out_bill_no)
    }

    /// The confirm window closes: a waiting bill ends `CANCELLED`. Returns
    /// the bill's state afterwards; `None` if the sandbox has no such bill.
    pub fn expire(&self, out_bill_no: &str) -> Option<BillState> {
        self.sandbox.close(out_bill_no)
    }

    /// A config for an [`crate::alipay::AlipayClient`] that talks to this
    /// sandbox for `product`, signing in `mode`; notifications go to
    /// `notify_url`.
    pub fn alipay_client_config(
        &self,
        product: AlipayProduct,
        mode: AlipayKeyMode,
        notify_url: &str,
    ) -> Result<AlipayConfig, alipay_client::ConfigError> {
        self.config
            .alipay_client_config_for(&self.base_url, product, mode, notify_url)
    }

    /// A verifier for this sandbox's Alipay notifications, trusting the keys
    /// of `mode`.
    pub fn alipay_notify_verifier(&self, mode: AlipayKeyMode) -> FundOrderNotifyVerifier {
        let config = self
            .alipay_client_config(
                AlipayProduct::BankCard,
                mode,
                &format!("{}/notify", self.base_url),
            )
            .expect("the Alipay client configs were checked at start");
        FundOrderNotifyVerifier::new(&config)
            .expect("the Alipay client configs were checked at start")
    }

    /// The bank returns a `SUCCESS` bank-card bill: it turns `REFUND` with
    /// `reason` (default [`DEFAULT_BOUNCE_REASON`]) and its notification
    /// leaves. Returns the status afterwards.
    pub fn bounce(
        &self,
        out_biz_no: &str,
        reason: Option<&str>,
    ) -> Result<FundOrderStatus, BounceRefusal> {
        self.sandbox
            .alipay_bounce(out_biz_no, reason.unwrap_or(DEFAULT_BOUNCE_REASON))
    }

    /// How far the sandbox's clock is from the wall clock.
    pub fn clock_offset(&self) -> chrono::Duration {
        self.sandbox.book().clock_offset()
    }

    /// Moves the sandbox's clock: every time it stamps from now on (bill
    /// times, `paid_at`, `returned_at`, `trans_date`, `pay_date`,
    /// notification times) is the wall clock plus `offset`. Signature
    /// timestamps stay on the wall clock, as receivers check them against
    /// theirs. Refused beyond ten years either way.
    pub fn set_clock_offset(&self, offset: chrono::Duration) -> Result<(), SandboxError> {
        self.sandbox
            .book()
            .set_clock_offset(offset)
            .map_err(|reason| SandboxError::Config {
                field: "clock_offset",
                reason,
            })
    }

    /// Crafts callbacks signed like this sandbox's (see [`CallbackBuilder`]).
    pub fn callback_builder(&self) -> CallbackBuilder {
        CallbackBuilder::new(Arc::clone(&self.sandbox))
    }

    /// Stops the server and pending callbacks; waits up to 2 s for answers
    /// in flight.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
