//! Typed settings, layered and validated once at start-up.
//!
//! Layers, later wins: built-in defaults → a TOML file (`--config FILE`, or
//! `FENRUN_CONFIG`, or `fenrun.toml` in the working directory if present) →
//! `FENRUN_*` environment variables (`FENRUN_DATABASE_URL`, `FENRUN_LISTEN`, …)
//! → command-line flags. An invalid value fails the start with the key's name.
//!
//! The master key sources (`FENRUN_MASTER_KEY_FILE`, `FENRUN_MASTER_KEY`,
//! `FENRUN_MASTER_KEY_PREVIOUS_FILE`, `FENRUN_MASTER_KEY_PREVIOUS`) are read
//! here too, from the environment only, never from a file: building the
//! application reads no environment variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::identity::PayoutChannel;
use crate::domain::tax::WithholdingMethod;
use crate::vault::{
    KeySources, MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, PREVIOUS_KEYS_ENV, PREVIOUS_KEYS_FILE_ENV,
};

/// Default file read when it exists and no other file is named.
pub const DEFAULT_CONFIG_FILE: &str = "fenrun.toml";

/// Ten years: the most `order_max_age_days` may say. A confirmation older
/// than the ten years accounts are kept for has nothing left to settle.
const MAX_ORDER_AGE_DAYS: u32 = 3_650;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Where payouts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayKind {
    /// The sandbox gateway: in-process, or the `fenrun sandbox-gateway` at
    /// `sandbox_url`. It serves every channel. No real money moves; fenrun
    /// says so loudly.
    Sandbox,
    /// Real merchants, per channel: WeChat Pay API v3 when the `wechat_*`
    /// settings are given, Alipay (accounts, and bank cards with
    /// `alipay_bank_card`) when the `alipay_*` settings are. A channel with
    /// no merchant is refused at request (`channel_not_configured`).
    /// `wechat`, its name when WeChat was the only rail, still reads.
    #[serde(alias = "wechat")]
    Live,
}

/// How Alipay answers are verified, from the `alipay_*` key files given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlipayKeyMode {
    /// `alipay_public_key_file`.
    PublicKey,
    /// `alipay_app_cert_file`, `alipay_cert_file`, `alipay_root_cert_file`.
    Certificate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// `sqlite://fenrun.db` (the default, a file beside the working directory)
    /// or `postgres://user:password@host/db`. Secret: it may hold a password.
    #[serde(serialize_with = "serialize_redacted")]
    pub database_url: SecretString,
    /// Address the HTTP API listens on.
    pub listen: String,
    /// `text` for people, `json` for log shippers.
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,fenrun=debug`.
    pub log_filter: String,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub request_body_limit_bytes: usize,
    /// Database pool size.
    pub db_max_connections: u32,
    /// How long a SQLite writer waits for the write lock, in milliseconds.
    pub sqlite_busy_timeout_ms: u64,
    /// Folder of workflow definitions, calendars and plans; the copies built
    /// into the binary are used for any file missing there.
    pub workflows_dir: PathBuf,
    /// Start with a clock that only moves on `POST /v1/admin/clock/advance`.
    /// Never in production.
    pub simulated_clock: bool,
    /// Send standard withdrawals as soon as they are approved, ignoring the
    /// transfer step's settlement cycle in `workflows/withdrawal.toml` (as
    /// `cycle = "immediate"` there would). For tests and benchmarks that
    /// need payouts at once; in production the cycle is what distributors
    /// were told, so leave it off and change the workflow file instead.
    pub standard_withdrawals_at_once: bool,
    /// Run the step workers and the scheduler in this process (`serve
    /// --no-workers` turns them off for API-only nodes).
    pub run_workers: bool,
    /// How individual income tax on distributors' commissions (劳务报酬所得)
    /// is withheld: `per-payment` (按次预扣预缴, 2018年第61号; a distributor's
    /// payouts in one calendar month are one 次), the default, or
    /// `cumulative` (累计预扣法, 2025年第16号, for internet platform
    /// enterprises, from 2025-10). One choice per withholding agent; have a
    /// tax adviser confirm it (tax reference §2.5).
    pub withholding_method: WithholdingMethod,
    /// `sandbox` (the default: no real money moves, every channel) or `live`
    /// (each channel whose merchant settings are given).
    pub gateway: GatewayKind,
    /// A running `fenrun sandbox-gateway` to pay through; unset, the sandbox
    /// runs inside this process.
    pub sandbox_url: Option<String>,
    /// The address gateways call back (`{public_url}/v1/gateways/wechat/notify`,
    /// `{public_url}/v1/gateways/alipay/notify`);
    /// unset, `http://` + the address this process listens on.
    pub public_url: Option<String>,
    /// WeChat Pay API v3 (`gateway = "wechat"`): the API host, merchant id,
    /// AppID, the merchant API certificate's serial number and private key
    /// file (PKCS#8 PEM), the WeChat Pay public key id and file, and the
    /// APIv3 key file (32 bytes). Key material only ever comes from files.
    pub wechat_base_url: Option<String>,
    pub wechat_mchid: Option<String>,
    pub wechat_appid: Option<String>,
    pub wechat_merchant_serial_no: Option<String>,
    pub wechat_merchant_key_file: Option<PathBuf>,
    pub wechat_platform_public_key_id: Option<String>,
    pub wechat_platform_public_key_file: Option<PathBuf>,
    pub wechat_api_v3_key_file: Option<PathBuf>,
    /// Alipay OpenAPI (`gateway = "live"`): the API host (scheme and host,
    /// e.g. `https://openapi.alipay.com`), the app id, the app private key
    /// file (PKCS#1 or PKCS#8 PEM), and either the Alipay public key file
    /// (公钥模式) or the three certificate files (公钥证书模式: the app's
    /// certificate, Alipay's certificate(s), Alipay's root bundle). Setting
    /// `alipay_app_id` configures the `alipay` channel; `alipay_bank_card`
    /// says the app has signed 转账到银行卡, which configures `bank`. Its
    /// notifications (`alipay.fund.trans.order.changed`) are subscribed in
    /// the open platform with `{public_url}/v1/gateways/alipay/notify`.
    pub alipay_base_url: Option<String>,
    pub alipay_app_id: Option<String>,
    pub alipay_app_private_key_file: Option<PathBuf>,
    pub alipay_public_key_file: Option<PathBuf>,
    pub alipay_app_cert_file: Option<PathBuf>,
    pub alipay_cert_file: Option<PathBuf>,
    pub alipay_root_cert_file: Option<PathBuf>,
    pub alipay_bank_card: bool,
    /// A PEM file of CA certificates (one or more) that every gateway client
    /// trusts besides the public roots built in (webpki-roots): WeChat,
    /// Alipay and bank-card rails, their statement downloads, and a
    /// `sandbox_url` served over HTTPS. For a private CA in front of the
    /// gateways, or a test CA; the public gateways need none. An unreadable
    /// file, or one with no certificate, fails the start. Certificates are
    /// always verified; no setting turns that off.
    pub gateway_ca_file: Option<PathBuf>,
    /// The withholding agent (扣缴义务人) printed on declarations and
    /// certificates: legal name and 统一社会信用代码.
    pub withholding_agent_name: String,
    pub withholding_agent_tin: String,
    /// How long one gateway call may take before its outcome counts as
    /// unknown (then the bill is queried before any new attempt), in ms.
    pub gateway_timeout_ms: u64,
    /// Oldest `placed_at` / `confirmed_at` an order may carry, in days before
    /// now; older ones are refused (422). Raise it for a one-off back-fill.
    pub order_max_age_days: u32,
    /// Largest amount of one order line (`items[].amount` of `POST
    /// /v1/orders`), in fen. The default, 100,000,000 fen (1,000,000.00
    /// yuan), is more than any real line: a larger one is a bug or an
    /// attack and is refused (422 `amount_too_large`, naming the line)
    /// before it can inflate commissions and balances.
    pub order_item_amount_max_fen: i64,
    /// Largest total of one order (the sum of its lines), in fen; default
    /// 1,000,000,000 fen (10,000,000.00 yuan). Refused like a line.
    pub order_total_max_fen: i64,
    /// Largest manual adjustment (`POST /v1/admin/adjustments`), in fen;
    /// default 1,000,000,000 fen (10,000,000.00 yuan). A slip of the keyboard
    /// cannot credit more; a larger correction is several adjustments.
    pub adjustment_amount_max_fen: i64,
    /// Sessions of the HTML pages and abuse limits (see `web::session`,
    /// `api::rate_limit`, `server`).
    #[serde(flatten)]
    pub guard: GuardSettings,
    /// Outgoing webhooks (`[webhooks]` in the file).
    #[serde(default)]
    pub webhooks: WebhookSettings,
    /// Where the master keys come from (SPEC §5): the environment only
    /// (see the module doc), so no settings file or serialized settings
    /// ever holds a key.
    #[serde(skip)]
    pub master_key: KeySources,
}

/// Outgoing webhooks (issue 16).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Lets endpoints name loopback, private or link-local addresses and
    /// plain http: for tests and the demo, whose receivers run on this
    /// machine. Off in production, where such a target could reach the
    /// internal network (server-side request forgery).
    /// `FENRUN_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true`.
    #[serde(default)]
    pub allow_private_targets: bool,
}

/// The variable that sets `webhooks.allow_private_targets`.
pub const ALLOW_PRIVATE_TARGETS_VAR: &str = "FENRUN_WEBHOOKS_ALLOW_PRIVATE_TARGETS";

/// Sessions of the HTML pages, rate limits on the routes anyone can call,
/// and how long a client may take to send a request. Rate limits count per
/// client address: the address of the TCP peer. Behind a reverse proxy every
/// client has the proxy's address (fenrun trusts no `X-Forwarded-For`), so
/// there the proxy must do the per-client limiting, or these limits must be
/// raised to what the proxy as a whole may send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardSettings {
    /// How long a page session lasts from sign-in, in seconds, however busy:
    /// then the person pastes their token again. Default 12 h, a working day
    /// with margin.
    pub session_absolute_timeout_seconds: u64,
    /// How long a page session survives without a page request, in seconds.
    /// Default 30 min: an unattended screen is not signed in for long.
    pub session_idle_timeout_seconds: u64,
    /// `POST /login` attempts per minute per client address (the sustained
    /// rate), and how many may come at once. Tokens are 256 random bits, so
    /// this is not what keeps them secret: it keeps a flood of guesses from
    /// costing database reads and filling the log.
    pub login_rate_per_minute: u32,
    pub login_rate_burst: u32,
    /// `POST /v1/tax/certificates/verify` (public: anyone handed a
    /// certificate may check it) per minute per client address, and burst.
    /// Each call parses a PDF of up to 2 MiB and checks a signature.
    pub verify_rate_per_minute: u32,
    pub verify_rate_burst: u32,
    /// How long a client may take to send a request's headers, in ms; also
    /// how long an idle keep-alive connection is kept. A slower client is
    /// disconnected, so half-sent headers cannot hold connections open.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request's body, in ms from the
    /// end of its headers; then it gets 408 and the connection is closed.
    /// Long enough for a 2 MiB upload on a slow line.
    pub body_read_timeout_ms: u64,
}

impl Default for GuardSettings {
    fn default() -> GuardSettings {
        GuardSettings {
            session_absolute_timeout_seconds: 12 * 60 * 60,
            session_idle_timeout_seconds: 30 * 60,
            login_rate_per_minute: 20,
            login_rate_burst: 10,
            verify_rate_per_minute: 60,
            verify_rate_burst: 20,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
        }
    }
}

impl GuardSettings {
    /// Every key a file or `FENRUN_*` variable may set.
    pub const KEYS: [&'static str; 8] = [
        "session_absolute_timeout_seconds",
        "session_idle_timeout_seconds",
        "login_rate_per_minute",
        "login_rate_burst",
        "verify_rate_per_minute",
        "verify_rate_burst",
        "header_read_timeout_ms",
        "body_read_timeout_ms",
    ];

    fn validate(&self) -> Result<(), ConfigError> {
        let ranges: [(&str, u64, std::ops::RangeInclusive<u64>); 8] = [
            (
                "session_absolute_timeout_seconds",
                self.session_absolute_timeout_seconds,
                1..=7 * 86_400,
            ),
            (
                "session_idle_timeout_seconds",
                self.session_idle_timeout_seconds,
                1..=86_400,
            ),
            (
                "login_rate_per_minute",
                u64::from(self.login_rate_per_minute),
                1..=60_000,
            ),
            (
                "login_rate_burst",
                u64::from(self.login_rate_burst),
                1..=10_000,
            ),
            (
                "verify_rate_per_minute",
                u64::from(self.verify_rate_per_minute),
                1..=60_000,
            ),
            (
                "verify_rate_burst",
                u64::from(self.verify_rate_burst),
                1..=10_000,
            ),
            (
                "header_read_timeout_ms",
                self.header_read_timeout_ms,
                100..=300_000,
            ),
            (
                "body_read_timeout_ms",
                self.body_read_timeout_ms,
                100..=3_600_000,
            ),
        ];
        for (key, value, range) in ranges {
            if !range.contains(&value) {
                return Err(ConfigError {
                    key: key.to_owned(),
                    message: format!(
                        "must be between {} and {}, got {value}",
                        range.start(),
                        range.end()
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Largest value an amount ceiling may be set to, in fen (about 9 × 10^15
/// fen, 90 trillion yuan): an order of the most lines allowed, each at the
/// ceiling, still sums within 64 bits.
pub const AMOUNT_CEILING_MAX_FEN: i64 = i64::MAX / 1024;

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            database_url: SecretString::from("sqlite://fenrun.db"),
            listen: "127.0.0.1:8080".to_owned(),
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            request_body_limit_bytes: 1024 * 1024,
            db_max_connections: crate::store::DEFAULT_MAX_CONNECTIONS,
            sqlite_busy_timeout_ms: crate::store::DEFAULT_SQLITE_BUSY_TIMEOUT_MS,
            workflows_dir: PathBuf::from("workflows"),
            simulated_clock: false,
            standard_withdrawals_at_once: false,
            run_workers: true,
            withholding_method: WithholdingMethod::PerPayment,
            gateway: GatewayKind::Sandbox,
            sandbox_url: None,
            public_url: None,
            wechat_base_url: None,
            wechat_mchid: None,
            wechat_appid: None,
            wechat_merchant_serial_no: None,
            wechat_merchant_key_file: None,
            wechat_platform_public_key_id: None,
            wechat_platform_public_key_file: None,
            wechat_api_v3_key_file: None,
            alipay_base_url: None,
            alipay_app_id: None,
            alipay_app_private_key_file: None,
            alipay_public_key_file: None,
            alipay_app_cert_file: None,
            alipay_cert_file: None,
            alipay_root_cert_file: None,
            alipay_bank_card: false,
            gateway_ca_file: None,
            gateway_timeout_ms: 10_000,
            order_max_age_days: 180,
            withholding_agent_name: "（未设置扣缴义务人名称）".to_owned(),
            withholding_agent_tin: "（未设置）".to_owned(),
            order_item_amount_max_fen: 100_000_000,
            order_total_max_fen: 1_000_000_000,
            adjustment_amount_max_fen: 1_000_000_000,
            guard: GuardSettings::default(),
            webhooks: WebhookSettings::default(),
            master_key: KeySources::default(),
        }
    }
}

/// The master key sources from the environment. A variable set to the
/// empty string counts as set (and the vault then refuses it as malformed):
/// an empty key in production is a deployment mistake, not a request for a
/// development key.
/// Whether a group of settings that only work together is given: all or
/// none; a partial group names its first missing key.
fn all_or_none(given: &[(&str, bool)], what: &str) -> Result<bool, ConfigError> {
    let set = given.iter().filter(|(_, set)| *set).count();
    if set == 0 {
        return Ok(false);
    }
    match given.iter().find(|(_, set)| !set) {
        None => Ok(true),
        Some((key, _)) => Err(ConfigError {
            key: (*key).to_owned(),
            message: format!("is required to configure {what} (some of its settings are given)"),
        }),
    }
}

fn key_sources_from_env() -> Result<KeySources, ConfigError> {
    let text = |name: &str| match std::env::var(name) {
        Ok(text) => Ok(Some(SecretString::from(text))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError {
            key: name.to_owned(),
            message: "is not UTF-8 text".to_owned(),
        }),
    };
    Ok(KeySources {
        key_file: std::env::var_os(MASTER_KEY_FILE_ENV).map(PathBuf::from),
        key: text(MASTER_KEY_ENV)?,
        previous_keys_file: std::env::var_os(PREVIOUS_KEYS_FILE_ENV).map(PathBuf::from),
        previous_keys: text(PREVIOUS_KEYS_ENV)?,
    })
}

fn serialize_redacted<S: serde::Serializer>(
    url: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::store::redact_url(url.expose_secret()))
}

/// A setting that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl Settings {
    /// Reads the layers (see the module doc) and validates the result.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let named = config_file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("FENRUN_CONFIG").map(PathBuf::from));
        match named {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError {
                        key: "config".to_owned(),
                        message: format!("file {} does not exist", path.display()),
                    });
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        figment = figment.merge(
            Env::prefixed("FENRUN_")
                .only(&[&Settings::KEYS[..], &GuardSettings::KEYS[..]].concat()),
        );
        figment = figment.merge(
            Env::raw()
                .only(&[ALLOW_PRIVATE_TARGETS_VAR])
                .map(|_| "webhooks.allow_private_targets".into()),
        );
        let mut settings: Settings = figment.extract().map_err(|error| ConfigError {
            key: error.path.join("."),
            message: error.kind.to_string(),
        })?;
        settings.master_key = key_sources_from_env()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Every key a file or `FENRUN_*` variable may set.
    pub const KEYS: [&'static str; 39] = [
        "database_url",
        "listen",
        "log_format",
        "log_filter",
        "request_body_limit_bytes",
        "db_max_connections",
        "sqlite_busy_timeout_ms",
        "workflows_dir",
        "simulated_clock",
        "standard_withdrawals_at_once",
        "run_workers",
        "withholding_method",
        "gateway",
        "sandbox_url",
        "public_url",
        "wechat_base_url",
        "wechat_mchid",
        "wechat_appid",
        "wechat_merchant_serial_no",
        "wechat_merchant_key_file",
        "wechat_platform_public_key_id",
        "wechat_platform_public_key_file",
        "wechat_api_v3_key_file",
        "alipay_base_url",
        "alipay_app_id",
        "alipay_app_private_key_file",
        "alipay_public_key_file",
        "alipay_app_cert_file",
        "alipay_cert_file",
        "alipay_root_cert_file",
        "alipay_bank_card",
        "gateway_ca_file",
        "gateway_timeout_ms",
        "withholding_agent_name",
        "withholding_agent_tin",
        "order_max_age_days",
        "order_item_amount_max_fen",
        "order_total_max_fen",
        "adjustment_amount_max_fen",
    ];

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError {
            key: key.to_owned(),
            message,
        };
        if crate::store::backend_of(self.database_url.expose_secret()).is_none() {
            return Err(invalid(
                "database_url",
                "must start with sqlite: or postgres:".to_owned(),
            ));
        }
        self.listen_addr()?;
        if !(1024..=64 * 1024 * 1024).contains(&self.request_body_limit_bytes) {
            return Err(invalid(
                "request_body_limit_bytes",
                "must be between 1024 and 67108864".to_owned(),
            ));
        }
        if !(1..=256).contains(&self.db_max_connections) {
            return Err(invalid(
                "db_max_connections",
                "must be between 1 and 256".to_owned(),
            ));
        }
        if !(1..=MAX_ORDER_AGE_DAYS).contains(&self.order_max_age_days) {
            return Err(invalid(
                "order_max_age_days",
                format!("must be between 1 and {MAX_ORDER_AGE_DAYS}"),
            ));
        }
        if !(100..=120_000).contains(&self.gateway_timeout_ms) {
            return Err(invalid(
                "gateway_timeout_ms",
                "must be between 100 and 120000".to_owned(),
            ));
        }
        for (key, ceiling) in [
            ("order_item_amount_max_fen", self.order_item_amount_max_fen),
            ("order_total_max_fen", self.order_total_max_fen),
            ("adjustment_amount_max_fen", self.adjustment_amount_max_fen),
        ] {
            if !(1..=AMOUNT_CEILING_MAX_FEN).contains(&ceiling) {
                return Err(invalid(
                    key,
                    format!("must be between 1 and {AMOUNT_CEILING_MAX_FEN} (fen)"),
                ));
            }
        }
        if self.gateway == GatewayKind::Live {
            self.live_channels()?;
        }
        for (key, url) in [
            ("sandbox_url", &self.sandbox_url),
            ("public_url", &self.public_url),
            ("wechat_base_url", &self.wechat_base_url),
            ("alipay_base_url", &self.alipay_base_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(invalid(
                    key,
                    format!("{url:?} must start with http:// or https://"),
                ));
            }
        }
        self.guard.validate()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log_filter).is_err() {
            return Err(invalid(
                "log_filter",
                format!("{:?} is not a valid filter", self.log_filter),
            ));
        }
        Ok(())
    }

    /// Whether the `wechat_*` settings configure a WeChat merchant: none set,
    /// no; all set, yes; some set, the first missing one is named.
    fn wechat_configured(&self) -> Result<bool, ConfigError> {
        let given = [
            ("wechat_base_url", self.wechat_base_url.is_some()),
            ("wechat_mchid", self.wechat_mchid.is_some()),
            ("wechat_appid", self.wechat_appid.is_some()),
            (
                "wechat_merchant_serial_no",
                self.wechat_merchant_serial_no.is_some(),
            ),
            (
                "wechat_merchant_key_file",
                self.wechat_merchant_key_file.is_some(),
            ),
            (
                "wechat_platform_public_key_id",
                self.wechat_platform_public_key_id.is_some(),
            ),
            (
                "wechat_platform_public_key_file",
                self.wechat_platform_public_key_file.is_some(),
            ),
            (
                "wechat_api_v3_key_file",
                self.wechat_api_v3_key_file.is_some(),
            ),
        ];
        all_or_none(&given, "a WeChat Pay merchant")
    }

    /// The key mode of the `alipay_*` settings, if they configure an app.
    pub fn alipay_key_mode(&self) -> Result<Option<AlipayKeyMode>, ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError {
            key: key.to_owned(),
            message: message.to_owned(),
        };
        let base = [
            ("alipay_app_id", self.alipay_app_id.is_some()),
            ("alipay_base_url", self.alipay_base_url.is_some()),
            (
                "alipay_app_private_key_file",
                self.alipay_app_private_key_file.is_some(),
            ),
        ];
        let certificates = [
            ("alipay_app_cert_file", self.alipay_app_cert_file.is_some()),
            ("alipay_cert_file", self.alipay_cert_file.is_some()),
            (
                "alipay_root_cert_file",
                self.alipay_root_cert_file.is_some(),
            ),
        ];
        let public_key = self.alipay_public_key_file.is_some();
        let any_certificate = certificates.iter().any(|(_, set)| *set);
        if !all_or_none(&base, "an Alipay app")? {
            if let Some((key, _)) = certificates
                .iter()
                .find(|(_, set)| *set)
                .or(public_key.then_some(&("alipay_public_key_file", true)))
            {
                return Err(invalid(key, "is set, but `alipay_app_id` is not"));
            }
            if self.alipay_bank_card {
                return Err(invalid(
                    "alipay_bank_card",
                    "is true, but no Alipay app is configured (`alipay_app_id`)",
                ));
            }
            return Ok(None);
        }
        match (public_key, any_certificate) {
            (true, true) => Err(invalid(
                "alipay_public_key_file",
                "and the certificate files are both set: give one mode (certificate mode is what fund transfers usually require)",
            )),
            (true, false) => Ok(Some(AlipayKeyMode::PublicKey)),
            (false, true) => {
                all_or_none(&certificates, "Alipay certificate mode")?;
                Ok(Some(AlipayKeyMode::Certificate))
            }
            (false, false) => Err(invalid(
                "alipay_public_key_file",
                "or the three certificate files (`alipay_app_cert_file`, `alipay_cert_file`, `alipay_root_cert_file`) are required with `alipay_app_id`",
            )),
        }
    }

    /// The channels real merchants serve with `gateway = "live"`; at least one.
    pub fn live_channels(&self) -> Result<Vec<PayoutChannel>, ConfigError> {
        let mut channels = Vec::new();
        if self.wechat_configured()? {
            channels.push(PayoutChannel::Wechat);
        }
        if self.alipay_key_mode()?.is_some() {
            channels.push(PayoutChannel::Alipay);
            if self.alipay_bank_card {
                channels.push(PayoutChannel::Bank);
            }
        }
        if channels.is_empty() {
            return Err(ConfigError {
                key: "gateway".to_owned(),
                message: "is \"live\" but no merchant is configured: give the `wechat_*` or the `alipay_*` settings, or use \"sandbox\"".to_owned(),
            });
        }
        Ok(channels)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| ConfigError {
            key: "listen".to_owned(),
            message: format!("{:?} is not an address such as 127.0.0.1:8080", self.listen),
        })
    }

    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            max_connections: self.db_max_connections,
            sqlite_busy_timeout_ms: self.sqlite_busy_timeout_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_channels_follow_the_merchant_settings_and_partial_groups_name_their_gap() {
        let live = Settings {
            gateway: GatewayKind::Live,
            ..Settings::default()
        };
        assert_eq!(live.validate().unwrap_err().key, "gateway");
        let alipay = Settings {
            alipay_app_id: Some("2021000000000001".to_owned()),
            alipay_base_url: Some("https://openapi.alipay.com".to_owned()),
            alipay_app_private_key_file: Some("app.pem".into()),
            alipay_public_key_file: Some("alipay.pem".into()),
            ..live.clone()
        };
        assert_eq!(alipay.live_channels().unwrap(), [PayoutChannel::Alipay]);
        let with_bank = Settings {
            alipay_bank_card: true,
            ..alipay.clone()
        };
        assert_eq!(
            with_bank.live_channels().unwrap(),
            [PayoutChannel::Alipay, PayoutChannel::Bank]
        );
        let both_modes = Settings {
            alipay_cert_file: Some("alipayCert.crt".into()),
            ..alipay.clone()
        };
        assert_eq!(
            both_modes.validate().unwrap_err().key,
            "alipay_public_key_file"
        );
        let half_certificates = Settings {
            alipay_public_key_file: None,
            alipay_app_cert_file: Some("appCert.crt".into()),
            ..alipay.clone()
        };
        assert_eq!(
            half_certificates.validate().unwrap_err().key,
            "alipay_cert_file"
        );
        let no_app = Settings {
            alipay_app_id: None,
            ..alipay
        };
        assert_eq!(no_app.validate().unwrap_err().key, "alipay_app_id");
        let half_wechat = Settings {
            wechat_mchid: Some("1900000109".to_owned()),
            ..live
        };
        assert_eq!(half_wechat.validate().unwrap_err().key, "wechat_base_url");
        // The name from when WeChat was the only rail still reads.
        let old: GatewayKind = serde_json::from_str("\"wechat\"").unwrap();
        assert_eq!(old, GatewayKind::Live);
    }

    #[test]
    fn the_gateway_ca_file_is_read_from_the_file_and_unset_by_default() {
        assert_eq!(Settings::default().gateway_ca_file, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fenrun.toml");
        std::fs::write(&path, "gateway_ca_file = \"/etc/fenrun/gateway-ca.pem\"\n").unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        assert_eq!(
            settings.gateway_ca_file,
            Some(PathBuf::from("/etc/fenrun/gateway-ca.pem"))
        );
        assert!(Settings::KEYS.contains(&"gateway_ca_file"));
    }

    #[test]
    fn a_bad_listen_address_is_named_by_its_key() {
        let settings = Settings {
            listen: "nowhere".to_owned(),
            ..Settings::default()
        };
        let error = settings.validate().unwrap_err();
        assert_eq!(error.key, "listen");
        assert!(error.to_string().contains("`listen`"));
    }

    #[test]
    fn an_unknown_database_scheme_is_refused() {
        let settings = Settings {
            database_url: SecretString::from("mysql://x"),
            ..Settings::default()
        };
        assert_eq!(settings.validate().unwrap_err().key, "database_url");
    }

    #[test]
    fn private_webhook_targets_are_refused_unless_the_file_allows_them() {
        assert!(!Settings::default().webhooks.allow_private_targets);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fenrun.toml");
        std::fs::write(&path, "[webhooks]\nallow_private_targets = true\n").unwrap();
        assert!(
            Settings::load(Some(&path))
                .unwrap()
                .webhooks
                .allow_private_targets
        );
    }

    #[test]
    fn a_file_value_of_the_wrong_type_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fenrun.toml");
        std::fs::write(&path, "db_max_connections = \"many\"\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err();
        assert_eq!(error.key, "db_max_connections");
    }

    #[test]
    fn the_withholding_method_defaults_to_per_payment_and_reads_kebab_case() {
        assert_eq!(
            Settings::default().withholding_method,
            WithholdingMethod::PerPayment
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fenrun.toml");
        std::fs::write(&path, "withholding_method = \"cumulative\"\n").unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        assert_eq!(settings.withholding_method, WithholdingMethod::Cumulative);
        std::fs::write(&path, "withholding_method = \"per_payment\"\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err();
        assert_eq!(error.key, "withholding_method");
    }

    #[test]
    fn amount_ceilings_are_whole_fen_within_range_and_named_when_wrong() {
        let defaults = Settings::default();
        assert_eq!(defaults.order_item_amount_max_fen, 100_000_000);
        assert_eq!(defaults.order_total_max_fen, 1_000_000_000);
        assert_eq!(defaults.adjustment_amount_max_fen, 1_000_000_000);
        for (key, settings) in [
            (
                "order_item_amount_max_fen",
                Settings {
                    order_item_amount_max_fen: 0,
                    ..Settings::default()
                },
            ),
            (
                "order_total_max_fen",
                Settings {
                    order_total_max_fen: AMOUNT_CEILING_MAX_FEN + 1,
                    ..Settings::default()
                },
            ),
            (
                "adjustment_amount_max_fen",
                Settings {
                    adjustment_amount_max_fen: -5,
                    ..Settings::default()
                },
            ),
        ] {
            assert_eq!(settings.validate().unwrap_err().key, key);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fenrun.toml");
        std::fs::write(&path, "order_total_max_fen = \"ten million\"\n").unwrap();
        assert_eq!(
            Settings::load(Some(&path)).unwrap_err().key,
            "order_total_max_fen"
        );
        std::fs::write(&path, "order_total_max_fen = 500\n").unwrap();
        assert_eq!(
            Settings::load(Some(&path)).unwrap().order_total_max_fen,
            500
        );
    }

    #[test]
    fn session_and_limit_settings_have_defaults_and_are_checked_by_key() {
        let defaults = Settings::default();
        assert_eq!(defaults.guard.session_absolute_timeout_seconds, 43_200);
        assert_eq!(defaults.guard.session_idle_timeout_seconds, 1_800);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fenrun.toml");
        std::fs::write(
            &path,
            "session_idle_timeout_seconds = 60\nlogin_rate_burst = 2\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        assert_eq!(settings.guard.session_idle_timeout_seconds, 60);
        assert_eq!(settings.guard.login_rate_burst, 2);
        std::fs::write(&path, "login_rate_per_minute = 0\n").unwrap();
        assert_eq!(
            Settings::load(Some(&path)).unwrap_err().key,
            "login_rate_per_minute"
        );
        std::fs::write(&path, "header_read_timeout_ms = 1\n").unwrap();
        assert_eq!(
            Settings::load(Some(&path)).unwrap_err().key,
            "header_read_timeout_ms"
        );
    }

    #[test]
    fn the_database_password_is_redacted_when_settings_are_shown() {
        let settings = Settings {
            database_url: SecretString::from("postgres://u:hunter2@h/db"),
            ..Settings::default()
        };
        let shown = serde_json::to_string(&settings).unwrap();
        assert!(!shown.contains("hunter2"));
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
