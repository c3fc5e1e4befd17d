//! WeChat Pay API v3 商家转账 (`transfer-bills`, user-confirm mode): the
//! merchant's settings, the client that creates, queries and cancels bills,
//! and the verifier of `MCHTRANSFER.BILL.FINISHED` callbacks.
//!
//! - `crypto`: signing, verification, RSA-OAEP and AES-GCM primitives, shared
//!   with the sandbox so both ends speak byte-for-byte the same dialect.
//! - `client`: [`WechatPayClient`], its private wire structs, and the one
//!   function that classifies every failure into a [`crate::GatewayError`].
//! - `callback`: [`CallbackVerifier`] and [`BillNotification`].
//!
//! Money on the wire is integer fen (`transfer_amount`), as in
//! [`crate::AmountFen`]: no conversion happens here.

mod callback;
mod client;
pub(crate) mod crypto;

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use callback::{BillNotification, CallbackError, CallbackVerifier};
pub use client::WechatPayClient;

use crate::TransferStatus;

/// The primary API host. The backup `https://api2.mch.weixin.qq.com` is on
/// another site; switching is the caller's decision.
pub const PRODUCTION_BASE_URL: &str = "https://api.mch.weixin.qq.com";

/// Default `transfer_scene_id`: 佣金报酬 (commission). The reference marks the
/// number as likely, not verified; confirm it against the merchant platform.
pub const DEFAULT_TRANSFER_SCENE_ID: &str = "1005";

/// Default `user_recv_perception` for scene 1005.
pub const DEFAULT_USER_RECV_PERCEPTION: &str = "劳务报酬";

/// How long one API call may take, connection included. WeChat answers in
/// well under a second; past this the outcome is unknown and the caller
/// queries.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The `event_type` of a transfer bill's final-state callback.
pub const BILL_FINISHED_EVENT: &str = "MCHTRANSFER.BILL.FINISHED";

/// One entry of `transfer_scene_report_infos` (转账场景报备信息).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneReportInfo {
    pub info_type: String,
    pub info_content: String,
}

/// The report infos scene 1005 asks for, as fenrun pays commissions.
pub fn default_scene_report_infos() -> Vec<SceneReportInfo> {
    [("岗位类型", "分销推广"), ("报酬说明", "佣金提现")]
        .into_iter()
        .map(|(info_type, info_content)| SceneReportInfo {
            info_type: info_type.to_owned(),
            info_content: info_content.to_owned(),
        })
        .collect()
}

/// A merchant's WeChat Pay v3 settings. Build it with
/// [`WechatPayConfig::new`], which checks every key; `Debug` never shows a
/// secret.
#[derive(Debug, Clone)]
pub struct WechatPayConfig {
    /// Scheme and host, no trailing path: [`PRODUCTION_BASE_URL`] or a sandbox.
    pub base_url: String,
    pub mchid: String,
    /// The AppID the payees' openids belong to.
    pub appid: String,
    /// Serial number of the merchant API certificate whose key signs requests.
    pub merchant_serial_no: String,
    /// The merchant API private key, PKCS#8 PEM (`apiclient_key.pem`).
    pub merchant_private_key: SecretString,
    /// The WeChat Pay public key's id, `PUB_KEY_ID_…`: answers and callbacks
    /// must name it in `Wechatpay-Serial`.
    pub platform_public_key_id: String,
    /// The WeChat Pay public key, SPKI PEM.
    pub platform_public_key: String,
    /// The 32-byte APIv3 key that decrypts callbacks.
    pub api_v3_key: SecretString,
    /// Where WeChat posts the final-state callback: HTTPS, no query string.
    pub notify_url: String,
    pub transfer_scene_id: String,
    pub user_recv_perception: String,
    pub transfer_scene_report_infos: Vec<SceneReportInfo>,
    /// Limit on one API call, connection included.
    pub request_timeout: Duration,
    /// CA certificates trusted for `base_url` besides the public roots.
    pub extra_roots: crate::tls::ExtraRoots,
}

/// A setting that cannot work. Names the setting, never quotes a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WeChat Pay setting `{field}` {reason}")]
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

impl WechatPayConfig {
    /// Settings from the strings a merchant is given, with the defaults for
    /// scene 1005; every key is parsed here, so a bad one fails the start.
    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per credential the merchant platform hands out; a builder would only rename them"
    )]
    pub fn new(
        base_url: String,
        mchid: String,
        appid: String,
        merchant_serial_no: String,
        merchant_private_key: SecretString,
        platform_public_key_id: String,
        platform_public_key: String,
        api_v3_key: SecretString,
        notify_url: String,
    ) -> Result<WechatPayConfig, ConfigError> {
        let config = WechatPayConfig {
            base_url,
            mchid,
            appid,
            merchant_serial_no,
            merchant_private_key,
            platform_public_key_id,
            platform_public_key,
            api_v3_key,
            notify_url,
            transfer_scene_id: DEFAULT_TRANSFER_SCENE_ID.to_owned(),
            user_recv_perception: DEFAULT_USER_RECV_PERCEPTION.to_owned(),
            transfer_scene_report_infos: default_scene_report_infos(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            extra_roots: crate::tls::ExtraRoots::default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting; the client and the verifier call it again, as
    /// the fields are public.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_identity()?;
        self.merchant_signer()?;
        self.platform_verifier()?;
        self.platform_encryption_key()?;
        self.resource_key()?;
        if self.notify_url.is_empty() || self.notify_url.contains('?') {
            return Err(ConfigError::new(
                "notify_url",
                "must be an absolute URL without a query string",
            ));
        }
        reqwest::Url::parse(&self.notify_url)
            .map_err(|_| ConfigError::new("notify_url", "is not an absolute URL"))?;
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new(
                "request_timeout",
                "must be more than zero",
            ));
        }
        for (field, value) in [
            ("transfer_scene_id", &self.transfer_scene_id),
            ("user_recv_perception", &self.user_recv_perception),
        ] {
            if value.is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        Ok(())
    }

    /// The settings the callback verifier needs.
    fn validate_identity(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("mchid", &self.mchid),
            ("appid", &self.appid),
            ("merchant_serial_no", &self.merchant_serial_no),
            ("platform_public_key_id", &self.platform_public_key_id),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        if let Some(problem) = crate::base_url_problem(&self.base_url, "the API paths are") {
            return Err(ConfigError::new("base_url", problem));
        }
        Ok(())
    }

    pub(crate) fn merchant_signer(&self) -> Result<crypto::RsaSigner, ConfigError> {
        crypto::RsaSigner::from_pkcs8_pem(&self.merchant_private_key)
            .map_err(|error| ConfigError::new("merchant_private_key", error.0))
    }

    pub(crate) fn platform_verifier(&self) -> Result<crypto::RsaVerifier, ConfigError> {
        crypto::RsaVerifier::from_spki_pem(&self.platform_public_key)
            .map_err(|error| ConfigError::new("platform_public_key", error.0))
    }

    pub(crate) fn platform_encryption_key(&self) -> Result<rsa::RsaPublicKey, ConfigError> {
        crypto::rsa_public_key(&self.platform_public_key)
            .map_err(|error| ConfigError::new("platform_public_key", error.0))
    }

    pub(crate) fn resource_key(&self) -> Result<crypto::ResourceKey, ConfigError> {
        crypto::ResourceKey::from_api_v3_key(&self.api_v3_key)
            .map_err(|error| ConfigError::new("api_v3_key", error.0))
    }
}

/// A transfer bill's `state`, spelled as WeChat spells it (`TRANSFERING`,
/// `CANCELING`). A state not listed here fails parsing, so an answer with a
/// new state is treated as not understood rather than guessed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BillState {
    #[serde(rename = "ACCEPTED")]
    Accepted,
    #[serde(rename = "PROCESSING")]
    Processing,
    #[serde(rename = "WAIT_USER_CONFIRM")]
    WaitUserConfirm,
    #[serde(rename = "TRANSFERING")]
    Transfering,
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "FAIL")]
    Fail,
    #[serde(rename = "CANCELING")]
    Canceling,
    #[serde(rename = "CANCELLED")]
    Cancelled,
}

impl BillState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BillState::Accepted => "ACCEPTED",
            BillState::Processing => "PROCESSING",
            BillState::WaitUserConfirm => "WAIT_USER_CONFIRM",
            BillState::Transfering => "TRANSFERING",
            BillState::Success => "SUCCESS",
            BillState::Fail => "FAIL",
            BillState::Canceling => "CANCELING",
            BillState::Cancelled => "CANCELLED",
        }
    }

    /// `SUCCESS`, `FAIL` and `CANCELLED` never change and trigger a callback.
    pub fn is_final(self) -> bool {
        match self {
            BillState::Success | BillState::Fail | BillState::Cancelled => true,
            BillState::Accepted
            | BillState::Processing
            | BillState::WaitUserConfirm
            | BillState::Transfering
            | BillState::Canceling => false,
        }
    }

    /// What this state means for the payout. `fail_reason` and
    /// `package_info` are taken when the state carries them.
    pub fn to_status(
        self,
        fail_reason: Option<&str>,
        package_info: Option<&str>,
    ) -> TransferStatus {
        match self {
            BillState::Accepted
            | BillState::Processing
            | BillState::Transfering
            | BillState::Canceling => TransferStatus::Processing,
            BillState::WaitUserConfirm => TransferStatus::AwaitingPayee {
                package_info: package_info.unwrap_or_default().to_owned(),
            },
            BillState::Success => TransferStatus::Succeeded,
            BillState::Fail => TransferStatus::Failed {
                reason: fail_reason
                    .filter(|reason| !reason.is_empty())
                    .unwrap_or("FAIL")
                    .to_owned(),
            },
            BillState::Cancelled => TransferStatus::Failed {
                reason: "CANCELLED".to_owned(),
            },
        }
    }
}

impl std::fmt::Display for BillState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Seconds since the Unix epoch, as signed timestamps carry them.
pub(crate) fn unix_now() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the system clock is after 1970");
    i64::try_from(since_epoch.as_secs()).expect("the clock fits in i64 seconds")
}

#[cfg(test)]
mod tests {
    use super::crypto::test_keys::*;
    use super::*;

    pub(crate) fn valid_config() -> WechatPayConfig {
        WechatPayConfig::new(
            "http://127.0.0.1:9".to_owned(),
            "1900000109".to_owned(),
            "wx0000000000000001".to_owned(),
            "MERCHANTSERIAL01".to_owned(),
            merchant_private(),
            "PUB_KEY_ID_0000000001".to_owned(),
            PLATFORM_PUBLIC.to_owned(),
            api_v3_key(),
            "http://127.0.0.1:9/notify".to_owned(),
        )
        .unwrap()
    }

    #[test]
    fn a_config_with_good_keys_is_accepted_and_its_debug_hides_the_secrets() {
        let config = valid_config();
        let debug = format!("{config:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        assert!(!debug.contains("SANDBOX"), "{debug}");
        assert_eq!(config.transfer_scene_id, "1005");
    }

    #[test]
    fn a_bad_key_names_its_setting_and_quotes_nothing() {
        let mut config = valid_config();
        config.merchant_private_key = SecretString::from(PLATFORM_PUBLIC);
        let error = config.validate().unwrap_err();
        assert_eq!(error.field, "merchant_private_key");
        assert!(!error.to_string().contains("MII"));

        let mut config = valid_config();
        config.api_v3_key = SecretString::from("too short");
        assert_eq!(config.validate().unwrap_err().field, "api_v3_key");

        let mut config = valid_config();
        config.platform_public_key =
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".to_owned();
        assert_eq!(config.validate().unwrap_err().field, "platform_public_key");

        let mut config = valid_config();
        config.notify_url = "https://example.com/notify?x=1".to_owned();
        assert_eq!(config.validate().unwrap_err().field, "notify_url");

        let mut config = valid_config();
        config.base_url = "http://127.0.0.1:9/v3".to_owned();
        assert_eq!(config.validate().unwrap_err().field, "base_url");
    }

    #[test]
    fn every_state_maps_to_one_status() {
        assert_eq!(
            BillState::WaitUserConfirm.to_status(None, Some("pkg")),
            TransferStatus::AwaitingPayee {
                package_info: "pkg".to_owned()
            }
        );
        assert_eq!(
            BillState::Fail.to_status(Some("PAYEE_ACCOUNT_ABNORMAL"), None),
            TransferStatus::Failed {
                reason: "PAYEE_ACCOUNT_ABNORMAL".to_owned()
            }
        );
        assert_eq!(
            BillState::Cancelled.to_status(None, None),
            TransferStatus::Failed {
                reason: "CANCELLED".to_owned()
            }
        );
        for state in [
            BillState::Accepted,
            BillState::Processing,
            BillState::Transfering,
            BillState::Canceling,
        ] {
            assert_eq!(state.to_status(None, None), TransferStatus::Processing);
            assert!(!state.is_final());
        }
        assert_eq!(
            BillState::Success.to_status(None, None),
            TransferStatus::Succeeded
        );
        let parsed: BillState = serde_json::from_str("\"TRANSFERING\"").unwrap();
        assert_eq!(parsed, BillState::Transfering);
        assert!(serde_json::from_str::<BillState>("\"NEW_STATE\"").is_err());
    }
}
