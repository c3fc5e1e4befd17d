//! Alipay OpenAPI v1 (`gateway.do`) payouts: `alipay.fund.trans.uni.transfer`
//! to an Alipay account (`TRANS_ACCOUNT_NO_PWD`) or a bank card
//! (`TRANS_BANKCARD_NO_PWD`), `alipay.fund.trans.common.query`, and the
//! `alipay.fund.trans.order.changed` notification; in public-key mode or
//! certificate mode.
//!
//! - `crypto`: RSA2 sign content, signing and verification (ring), the raw
//!   response-node extractor, certificate SNs.
//! - `client`: [`AlipayClient`], its private wire structs, and the one
//!   function that classifies every failure into a [`crate::GatewayError`].
//! - `notify`: [`FundOrderNotifyVerifier`] and [`FundOrderNotification`].
//!
//! Money on the wire is a yuan string with two decimals (`trans_amount`);
//! [`yuan_from_fen`] and [`fen_from_yuan`] are the only conversions, both in
//! integer arithmetic.

mod client;
pub(crate) mod crypto;
mod notify;

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use client::AlipayClient;
pub use notify::{FundOrderNotification, FundOrderNotifyVerifier, NotifyAnswer, NotifyError};

use crate::{AmountFen, TransferStatus};

/// The production gateway host; the API path `/gateway.do` is added.
pub const PRODUCTION_BASE_URL: &str = "https://openapi.alipay.com";

/// How long one API call may take, connection included. Past this the outcome
/// is unknown and the caller queries.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Shown in the payee's bill (`order_title`).
pub const DEFAULT_ORDER_TITLE: &str = "佣金提现";

/// Which Alipay product pays, and so which rail the payee is on. One client
/// serves one product: the query must name the same product code and scene as
/// the transfer, so mixing them in one client would invite mismatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlipayProduct {
    /// 单笔无密转账 to an Alipay account, named by its logon id (phone or
    /// email) and checked against the payee's real name.
    AlipayAccount,
    /// 转账到银行卡 to a personal bank card, named by the card number and
    /// the holder's name. Can bounce (退票) after success.
    BankCard,
}

impl AlipayProduct {
    pub fn product_code(self) -> &'static str {
        match self {
            AlipayProduct::AlipayAccount => "TRANS_ACCOUNT_NO_PWD",
            AlipayProduct::BankCard => "TRANS_BANKCARD_NO_PWD",
        }
    }

    /// Both products are B2C single transfers.
    pub fn biz_scene(self) -> &'static str {
        "DIRECT_TRANSFER"
    }

    pub fn identity_type(self) -> &'static str {
        match self {
            AlipayProduct::AlipayAccount => "ALIPAY_LOGON_ID",
            AlipayProduct::BankCard => "BANKCARD_ACCOUNT",
        }
    }

    pub fn channel(self) -> crate::Channel {
        match self {
            AlipayProduct::AlipayAccount => crate::Channel::Alipay,
            AlipayProduct::BankCard => crate::Channel::Bank,
        }
    }
}

/// How answers are verified, and whether requests carry certificate SNs.
#[derive(Clone)]
pub enum AlipayKeys {
    /// 公钥模式: the Alipay public key, SPKI PEM or the bare Base64 the open
    /// platform shows. Requests carry no SN fields.
    PublicKey { alipay_public_key: String },
    /// 公钥证书模式, which fund transfers usually require. All PEM text:
    /// `app_cert` (appCertPublicKey), `alipay_certs` (one or more
    /// alipayCertPublicKey_RSA2 certificates; several during a rotation, as
    /// each answer names its signer by `alipay_cert_sn`) and
    /// `alipay_root_cert` (the whole alipayRootCert bundle).
    Certificate {
        app_cert: String,
        alipay_certs: String,
        alipay_root_cert: String,
    },
}

impl std::fmt::Debug for AlipayKeys {
    /// Names the mode only. The PEM text is public, but a log line full of
    /// Base64 helps no one, and the rule "no key material in Debug" is simpler
    /// kept without exceptions.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AlipayKeys::PublicKey { .. } => f.write_str("PublicKey(..)"),
            AlipayKeys::Certificate { .. } => f.write_str("Certificate(..)"),
        }
    }
}

/// An app's Alipay settings. Build it with [`AlipayConfig::new`], which
/// checks every key; `Debug` never shows key material.
#[derive(Debug, Clone)]
pub struct AlipayConfig {
    /// Scheme and host, no path: [`PRODUCTION_BASE_URL`] or a sandbox.
    pub base_url: String,
    pub app_id: String,
    pub product: AlipayProduct,
    /// The app private key (应用私钥): PEM `RSA PRIVATE KEY` (PKCS#1),
    /// `PRIVATE KEY` (PKCS#8), or the bare Base64 of either.
    pub app_private_key: SecretString,
    pub keys: AlipayKeys,
    pub order_title: String,
    /// Limit on one API call, connection included.
    pub request_timeout: Duration,
    /// Sent as the common parameter `notify_url` when set. Unset, Alipay
    /// posts `order.changed` to the app's gateway address configured on the
    /// open platform instead.
    pub notify_url: Option<String>,
    /// CA certificates trusted for `base_url` (and the statement download
    /// host) besides the public roots.
    pub extra_roots: crate::tls::ExtraRoots,
}

/// A setting that cannot work. Names the setting, never quotes a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Alipay setting `{field}` {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }
}

/// Verifiers for answers and notifications, parsed from [`AlipayKeys`].
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    PublicKey(crypto::AlipayVerifier),
    Certificate {
        app_cert_sn: String,
        alipay_root_cert_sn: String,
        /// Each Alipay certificate's SN and key.
        alipay: Vec<(String, crypto::AlipayVerifier)>,
    },
}

impl Trust {
    /// The key an answer must verify with: in certificate mode the one whose
    /// SN the answer names; `None` if we hold no such certificate.
    pub(crate) fn verifier_for(
        &self,
        alipay_cert_sn: Option<&str>,
    ) -> Option<&crypto::AlipayVerifier> {
        match self {
            Trust::PublicKey(verifier) => Some(verifier),
            Trust::Certificate { alipay, .. } => {
                let wanted = alipay_cert_sn?;
                alipay
                    .iter()
                    .find(|(sn, _)| sn == wanted)
                    .map(|(_, verifier)| verifier)
            }
        }
    }

    /// Every Alipay key we hold (notifications do not name theirs).
    pub(crate) fn verifiers(&self) -> Vec<&crypto::AlipayVerifier> {
        match self {
            Trust::PublicKey(verifier) => vec![verifier],
            Trust::Certificate { alipay, .. } => {
                alipay.iter().map(|(_, verifier)| verifier).collect()
            }
        }
    }
}

impl AlipayConfig {
    /// Settings with the default title and timeout; every key is parsed here,
    /// so a bad one fails the start.
    pub fn new(
        base_url: String,
        app_id: String,
        product: AlipayProduct,
        app_private_key: SecretString,
        keys: AlipayKeys,
    ) -> Result<AlipayConfig, ConfigError> {
        let config = AlipayConfig {
            base_url,
            app_id,
            product,
            app_private_key,
            keys,
            order_title: DEFAULT_ORDER_TITLE.to_owned(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            notify_url: None,
            extra_roots: crate::tls::ExtraRoots::default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting; the client and the verifier call it again, as
    /// the fields are public.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.app_id.trim().is_empty() {
            return Err(ConfigError::new("app_id", "must not be empty"));
        }
        if self.order_title.is_empty() {
            return Err(ConfigError::new("order_title", "must not be empty"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new(
                "request_timeout",
                "must be more than zero",
            ));
        }
        if let Some(problem) = crate::base_url_problem(&self.base_url, "/gateway.do is") {
            return Err(ConfigError::new("base_url", problem));
        }
        if let Some(notify_url) = &self.notify_url {
            match reqwest::Url::parse(notify_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => {
                    return Err(ConfigError::new(
                        "notify_url",
                        "must be an absolute http or https URL",
                    ));
                }
            }
        }
        self.app_signer()?;
        self.trust()?;
        Ok(())
    }

    pub(crate) fn app_signer(&self) -> Result<crypto::AppSigner, ConfigError> {
        crypto::AppSigner::from_pem(&self.app_private_key)
            .map_err(|error| ConfigError::new("app_private_key", error.0))
    }

    pub(crate) fn trust(&self) -> Result<Trust, ConfigError> {
        match &self.keys {
            AlipayKeys::PublicKey { alipay_public_key } => {
                crypto::AlipayVerifier::from_public_key(alipay_public_key)
                    .map(Trust::PublicKey)
                    .map_err(|error| ConfigError::new("alipay_public_key", error.0))
            }
            AlipayKeys::Certificate {
                app_cert,
                alipay_certs,
                alipay_root_cert,
            } => {
                let app = crypto::certificates(app_cert)
                    .map_err(|error| ConfigError::new("app_cert", error.0))?;
                let [app] = app.as_slice() else {
                    return Err(ConfigError::new(
                        "app_cert",
                        "must hold exactly one certificate",
                    ));
                };
                let alipay = crypto::certificates(alipay_certs)
                    .and_then(|certificates| {
                        certificates
                            .iter()
                            .map(crypto::certificate_verifier)
                            .collect()
                    })
                    .map_err(|error| ConfigError::new("alipay_certs", error.0))?;
                let root = crypto::certificates(alipay_root_cert)
                    .map_err(|error| ConfigError::new("alipay_root_cert", error.0))?;
                let alipay_root_cert_sn = crypto::root_cert_sn(&root);
                if alipay_root_cert_sn.is_empty() {
                    return Err(ConfigError::new(
                        "alipay_root_cert",
                        "holds no certificate signed with RSA (sha1WithRSA, sha256WithRSA, …)",
                    ));
                }
                Ok(Trust::Certificate {
                    app_cert_sn: crypto::cert_sn(app),
                    alipay_root_cert_sn,
                    alipay,
                })
            }
        }
    }
}

/// A fund order's `status`, spelled as Alipay spells it. A status not listed
/// here fails parsing, so an answer with a new status is treated as not
/// understood rather than guessed at. (`WAIT_PAY` and `CLOSED` belong to
/// `alipay.fund.trans.app.pay`, which fenrun does not use.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FundOrderStatus {
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "FAIL")]
    Fail,
    /// Bank card only: accepted, not yet at the bank.
    #[serde(rename = "DEALING")]
    Dealing,
    /// Bank card only: bounced (退票); may follow `SUCCESS`.
    #[serde(rename = "REFUND")]
    Refund,
}

impl FundOrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FundOrderStatus::Success => "SUCCESS",
            FundOrderStatus::Fail => "FAIL",
            FundOrderStatus::Dealing => "DEALING",
            FundOrderStatus::Refund => "REFUND",
        }
    }

    /// What this status means for the payout. The reason of a failure or a
    /// bounce is Alipay's `error_code` when given (a code a program can act
    /// on), else its `fail_reason`, else the status itself.
    pub fn to_status(self, error_code: Option<&str>, fail_reason: Option<&str>) -> TransferStatus {
        let reason = || {
            error_code
                .filter(|code| !code.is_empty())
                .or(fail_reason.filter(|reason| !reason.is_empty()))
                .unwrap_or(self.as_str())
                .to_owned()
        };
        match self {
            FundOrderStatus::Success => TransferStatus::Succeeded,
            FundOrderStatus::Dealing => TransferStatus::Processing,
            FundOrderStatus::Fail => TransferStatus::Failed { reason: reason() },
            FundOrderStatus::Refund => TransferStatus::Returned { reason: reason() },
        }
    }
}

impl std::fmt::Display for FundOrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `trans_amount` from fen: yuan with exactly two decimals. `None` for zero or
/// less, which no transfer may be.
pub fn yuan_from_fen(amount: AmountFen) -> Option<String> {
    let fen = amount.0;
    (fen > 0).then(|| format!("{}.{:02}", fen / 100, fen % 100))
}

/// Fen from a yuan string as Alipay sends it (`"1234.56"`, `"1.5"`, `"3"`).
/// Anything else (a sign, a third decimal, an exponent, an overflow) is
/// `None`: a notification whose amount we cannot read exactly is not
/// understood.
pub fn fen_from_yuan(yuan: &str) -> Option<AmountFen> {
    let (whole, decimals) = yuan.split_once('.').unwrap_or((yuan, ""));
    let all_digits = |text: &str| text.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(decimals) || decimals.len() > 2 {
        return None;
    }
    if yuan.contains('.') && decimals.is_empty() {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let mut cents: i64 = if decimals.is_empty() {
        0
    } else {
        decimals.parse().ok()?
    };
    if decimals.len() == 1 {
        cents *= 10;
    }
    whole.checked_mul(100)?.checked_add(cents).map(AmountFen)
}

#[cfg(test)]
mod tests {
    use super::crypto::test_keys::*;
    use super::*;

    pub(crate) fn public_key_config() -> AlipayConfig {
        AlipayConfig::new(
            "http://127.0.0.1:9".to_owned(),
            "2021000000000001".to_owned(),
            AlipayProduct::AlipayAccount,
            app_private(),
            AlipayKeys::PublicKey {
                alipay_public_key: ALIPAY_PUBLIC.to_owned(),
            },
        )
        .unwrap()
    }

    pub(crate) fn certificate_config() -> AlipayConfig {
        AlipayConfig::new(
            "http://127.0.0.1:9".to_owned(),
            "2021000000000001".to_owned(),
            AlipayProduct::BankCard,
            app_private_pkcs1(),
            AlipayKeys::Certificate {
                app_cert: APP_CERT.to_owned(),
                alipay_certs: ALIPAY_CERT.to_owned(),
                alipay_root_cert: ROOT_BUNDLE.to_owned(),
            },
        )
        .unwrap()
    }

    #[test]
    fn a_config_debug_shows_no_key_material_in_either_mode() {
        for config in [public_key_config(), certificate_config()] {
            let debug = format!("{config:?}");
            for needle in ["PRIVATE KEY", "PUBLIC KEY", "CERTIFICATE", "MII"] {
                assert!(!debug.contains(needle), "{needle} in {debug}");
            }
            assert!(debug.contains("2021000000000001"), "{debug}");
        }
    }

    #[test]
    fn certificate_mode_computes_the_app_and_root_sns_at_start() {
        let Trust::Certificate {
            app_cert_sn,
            alipay_root_cert_sn,
            alipay,
        } = certificate_config().trust().unwrap()
        else {
            panic!("certificate mode");
        };
        assert_eq!(app_cert_sn, "05effdbaa2dd4c7c8fcb0119b496f799");
        assert_eq!(
            alipay_root_cert_sn,
            "e319b691be34edd2601a007aba85a2db_910fd420da83cd0d1b63b55d3a9fd230"
        );
        assert_eq!(alipay.len(), 1);
        assert_eq!(alipay[0].0, "b0d12f0521d2b0a9378fc1b198bd0226");
    }

    #[test]
    fn a_bad_key_names_its_setting_and_quotes_nothing() {
        let mut config = public_key_config();
        config.app_private_key = SecretString::from(ALIPAY_PUBLIC);
        let error = config.validate().unwrap_err();
        assert_eq!(error.field, "app_private_key");
        assert!(!error.to_string().contains("MII"));

        let mut config = public_key_config();
        config.keys = AlipayKeys::PublicKey {
            alipay_public_key: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
                .to_owned(),
        };
        assert_eq!(config.validate().unwrap_err().field, "alipay_public_key");

        let mut config = certificate_config();
        config.keys = AlipayKeys::Certificate {
            app_cert: format!("{APP_CERT}{ALIPAY_CERT}"),
            alipay_certs: ALIPAY_CERT.to_owned(),
            alipay_root_cert: ROOT_BUNDLE.to_owned(),
        };
        assert_eq!(config.validate().unwrap_err().field, "app_cert");

        let mut config = certificate_config();
        config.keys = AlipayKeys::Certificate {
            app_cert: APP_CERT.to_owned(),
            alipay_certs: ALIPAY_CERT.to_owned(),
            alipay_root_cert: include_str!("../../sandbox-keys/alipay/root_ec.crt").to_owned(),
        };
        assert_eq!(config.validate().unwrap_err().field, "alipay_root_cert");

        let mut config = public_key_config();
        config.base_url = "http://127.0.0.1:9/gateway.do".to_owned();
        assert_eq!(config.validate().unwrap_err().field, "base_url");
    }

    #[test]
    fn fen_become_yuan_with_two_decimals_exactly() {
        for (fen, yuan) in [
            (1, "0.01"),
            (10, "0.10"),
            (100, "1.00"),
            (123_456, "1234.56"),
            (i64::MAX, "92233720368547758.07"),
        ] {
            assert_eq!(yuan_from_fen(AmountFen(fen)).as_deref(), Some(yuan));
            assert_eq!(fen_from_yuan(yuan), Some(AmountFen(fen)));
        }
        assert_eq!(yuan_from_fen(AmountFen(0)), None);
        assert_eq!(yuan_from_fen(AmountFen(-1)), None);
    }

    #[test]
    fn only_plain_yuan_strings_are_read() {
        assert_eq!(fen_from_yuan("1.5"), Some(AmountFen(150)));
        assert_eq!(fen_from_yuan("3"), Some(AmountFen(300)));
        assert_eq!(fen_from_yuan("0.07"), Some(AmountFen(7)));
        for bad in [
            "",
            ".5",
            "1.",
            "1.234",
            "-1.00",
            "+1",
            "1e2",
            "1,00",
            " 1",
            "92233720368547758.08",
        ] {
            assert_eq!(fen_from_yuan(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_status_maps_to_one_transfer_status() {
        use FundOrderStatus::*;
        assert_eq!(Success.to_status(None, None), TransferStatus::Succeeded);
        assert_eq!(Dealing.to_status(None, None), TransferStatus::Processing);
        assert_eq!(
            Fail.to_status(Some("PAYEE_NOT_EXIST"), Some("收款账号不存在")),
            TransferStatus::Failed {
                reason: "PAYEE_NOT_EXIST".to_owned()
            }
        );
        assert_eq!(
            Fail.to_status(Some(""), Some("reason text")),
            TransferStatus::Failed {
                reason: "reason text".to_owned()
            }
        );
        assert_eq!(
            Refund.to_status(None, None),
            TransferStatus::Returned {
                reason: "REFUND".to_owned()
            }
        );
        assert!(Refund.to_status(None, None).is_final());
        assert!(!Dealing.to_status(None, None).is_final());
        let parsed: FundOrderStatus = serde_json::from_str("\"DEALING\"").unwrap();
        assert_eq!(parsed, Dealing);
        assert!(serde_json::from_str::<FundOrderStatus>("\"WAIT_PAY\"").is_err());
    }

    #[test]
    fn each_product_names_its_codes_and_channel() {
        assert_eq!(
            AlipayProduct::AlipayAccount.product_code(),
            "TRANS_ACCOUNT_NO_PWD"
        );
        assert_eq!(
            AlipayProduct::BankCard.product_code(),
            "TRANS_BANKCARD_NO_PWD"
        );
        assert_eq!(AlipayProduct::BankCard.identity_type(), "BANKCARD_ACCOUNT");
        assert_eq!(
            AlipayProduct::AlipayAccount.identity_type(),
            "ALIPAY_LOGON_ID"
        );
        assert_eq!(
            AlipayProduct::AlipayAccount.channel(),
            crate::Channel::Alipay
        );
        assert_eq!(AlipayProduct::BankCard.channel(), crate::Channel::Bank);
    }
}
