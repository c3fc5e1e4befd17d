//! A local WeChat Pay v3 transfer-bills server: the test double every
//! gateway test runs against and the demo's gateway. **No real money moves
//! through it**, and its keys (in `integrations/sandbox-keys/`) are public
//! test keys.
//!
//! It speaks the dialect [`crate::wechat::WechatPayClient`] speaks, byte for
//! byte: it verifies request signatures with the merchant public key, signs
//! every answer and callback with the platform key, decrypts `user_name`,
//! keeps bills idempotent by `out_bill_no`, runs the bill state machine
//! (`state`), delivers encrypted `MCHTRANSFER.BILL.FINISHED` callbacks with
//! retries (`notify`), and injects reproducible [`Faults`] (`faults`). Its
//! own [`SandboxLedger`] counts every payment, so tests can check that no
//! bill was ever paid twice.
//!
//! It also serves the day's statements built from that ledger
//! (`statements`): `GET /v3/bill/fundflowbill` (signed, like the real one)
//! and its download, and the Alipay `csv.zip` for the `gateway.do` bill
//! query. A bill is on the day its money moved (`paid_at`, China date).
//! [`StatementFaults`] (`POST /sandbox/statements/faults`, or
//! [`SandboxHandle::set_statement_faults`]) make the statements disagree
//! with the ledger, deterministically, on the payout lines sorted by bill
//! number: `drop_lines` leaves out the first n; `wrong_amount_lines` adds
//! 1.00 yuan to the next n; `flip_state_lines` shows the next n also
//! returned (a return line added); `extra_lines` adds n payouts of 1.00
//! yuan for bill numbers fenrun never sent (`sbxextra0001`, …). Each file's
//! summary agrees with its own lines, as a real file's would.
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

mod faults;
mod notify;
mod server;
mod state;
mod statements;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{
    AUTO_CONFIRM_MAX_MS, ConfirmMode, DEFAULT_HANG_MS, Faults, OUT_OF_ORDER_MAX_DELAY_MS,
};
pub use notify::{CallbackBuilder, CallbackSchedule, SignedCallback};
pub use statements::StatementFaults;

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

/// One bill in the sandbox's ledger. Never the openid: only a hash of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerBill {
    pub out_bill_no: String,
    pub transfer_bill_no: String,
    pub amount_fen: i64,
    pub state: BillState,
    pub fail_reason: Option<String>,
    /// First 8 bytes of SHA-256 of the openid, hex.
    pub openid_hash: String,
    /// Create requests that reached the bill: the first and each replay.
    pub create_count: u32,
    /// Times the money moved: 0 or 1, by construction.
    pub paid_times: u32,
    /// Genuine final-state callbacks the receiver acknowledged.
    pub callbacks_delivered: u32,
    /// When the money moved (RFC 3339, Beijing time): set on `SUCCESS`. The
    /// day's statements are built from it.
    #[serde(default)]
    pub paid_at: Option<String>,
}

/// What the sandbox paid, for comparison with fenrun's own ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxLedger {
    /// Sorted by `out_bill_no`.
    pub bills: Vec<LedgerBill>,
    pub total_paid_fen: i64,
    pub paid_count: u64,
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
        let base_url = format!("http://{addr}");
        // The handed-out client config must work: check it before serving.
        config.client_config_for(&base_url, &format!("{base_url}/notify"))?;

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
            config.faults.clone(),
            stopped.clone(),
        ));
        let app = server::router(Arc::clone(&sandbox));
        let mut shutdown = stopped;
        let server = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stopped| *stopped).await;
            });
            if let Err(error) = serving.await {
                tracing::error!(%error, "sandbox server stopped");
            }
        });
        tracing::warn!(%base_url, "SANDBOX gateway listening: test keys, no real money moves");
        Ok(SandboxHandle {
            sandbox,
            config,
            base_url,
            addr,
            stop,
            server: Some(server),
        })
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
    /// `http://127.0.0.1:PORT`, no trailing slash.
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
