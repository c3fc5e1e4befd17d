//! What can go wrong at the sandbox, and when. Every decision is a pure
//! function of `(seed, fault, out_bill_no, attempt)` hashed with SHA-256, so a
//! storm replays exactly with the same seed, and a retry of the same bill
//! (a new attempt number) rolls again and eventually gets through.

use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};

/// Default for [`Faults::hang_ms`]: longer than the sandbox clients' request
/// timeout, so a hang is seen as a timeout.
pub const DEFAULT_HANG_MS: u64 = 5_000;

/// The longest automatic confirmation delay when none is given.
pub const AUTO_CONFIRM_MAX_MS: u64 = 50;

/// The longest extra delay of an out-of-order callback.
pub const OUT_OF_ORDER_MAX_DELAY_MS: u64 = 300;

/// Default for [`Faults::bank_settle_ms`]: long enough that the transfer
/// answer is `DEALING`, short enough that a test's next query sees `SUCCESS`.
pub const DEFAULT_BANK_SETTLE_MS: u64 = 100;

/// Default for [`Faults::bank_bounce_after_ms`].
pub const DEFAULT_BANK_BOUNCE_AFTER_MS: u64 = 200;

/// [`Faults::bank_bounce_permille`] is a share of 1000.
pub const PERMILLE: u16 = 1_000;

/// How a payee answers the confirm page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConfirmMode {
    /// The payee confirms by themself `after_ms` after creation (default:
    /// 0–50 ms, fixed per bill by the seed). The create answer is always
    /// `WAIT_USER_CONFIRM` first.
    Auto {
        #[serde(default)]
        after_ms: Option<u64>,
    },
    /// The bill waits until `confirm` or `expire` (handle or
    /// `POST /sandbox/bills/{out_bill_no}/confirm|expire`).
    Hold,
}

impl Default for ConfirmMode {
    fn default() -> ConfirmMode {
        ConfirmMode::Auto { after_ms: None }
    }
}

/// Faults to inject; all off by default. Rates are probabilities in `[0, 1]`
/// per request (or per bill, for callbacks). Every knob applies to both
/// dialects, each in its own words: where WeChat answers `500
/// SYSTEM_ERROR`, Alipay's `gateway.do` answers `20000 isp.unknow-error`;
/// `429` is HTTP's on both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay before every API answer.
    pub latency_ms: u64,
    /// `429 FREQUENCY_LIMITED`; nothing is created.
    pub transient_rate: f64,
    /// `500 SYSTEM_ERROR` before anything is created.
    pub error_before_commit_rate: f64,
    /// The bill is created (or the cancel applied), then `500 SYSTEM_ERROR`:
    /// the classic double-pay trap. Not for queries.
    pub error_after_commit_rate: f64,
    /// The bill is created, then the answer waits `hang_ms`, past the
    /// client's timeout. Transfers only.
    pub timeout_after_success_rate: f64,
    /// How long a `timeout_after_success` answer hangs.
    pub hang_ms: u64,
    /// Every callback is delivered twice, concurrently. Alipay: every
    /// notification, one per change (success, failure, bounce).
    pub duplicate_callbacks: bool,
    /// Callbacks leave after a random extra delay, and for about half the
    /// bills an earlier-state callback follows the final one; a correct
    /// receiver ignores it. Alipay rolls per change: a bank-card order's
    /// `DEALING` follows its `SUCCESS` or `FAIL`, its `SUCCESS` follows its
    /// `REFUND` (and with the delay a bounce can overtake its success); an
    /// account order is final from its first answer, so it has no earlier
    /// state to send and only gets the delay.
    pub out_of_order_callbacks: bool,
    /// Per bill: also send a forged `FAIL` callback with a corrupted
    /// signature, before the genuine one. A receiver must refuse it.
    /// Alipay: per change, a forged `FAIL` (`PAYEE_NOT_EXIST`).
    pub bad_signature_callback_rate: f64,
    pub confirm: ConfirmMode,
    /// Bills to these openids end `FAIL` with `PAYEE_ACCOUNT_ABNORMAL` when
    /// confirmed (decided at creation). Alipay payees listed here (logon id
    /// or card number) fail too: an account transfer is refused with
    /// `PAYEE_USER_INFO_ERROR`, a bank-card one goes `DEALING` then `FAIL`.
    pub fail_openids: Vec<String>,
    /// Seeds every fault decision.
    pub seed: u64,
    /// Alipay bank card: how long a transfer stays `DEALING` before it turns
    /// `SUCCESS`.
    pub bank_settle_ms: u64,
    /// Alipay bank card: how many bills in 1000 bounce (`REFUND`) by
    /// themselves, `bank_bounce_after_ms` after their `SUCCESS`. Which ones
    /// is fixed by the seed.
    pub bank_bounce_permille: u16,
    pub bank_bounce_after_ms: u64,
    /// Alipay bank card: the fee of every transfer (`order_fee`), in fen.
    pub bank_order_fee_fen: i64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            latency_ms: 0,
            transient_rate: 0.0,
            error_before_commit_rate: 0.0,
            error_after_commit_rate: 0.0,
            timeout_after_success_rate: 0.0,
            hang_ms: DEFAULT_HANG_MS,
            duplicate_callbacks: false,
            out_of_order_callbacks: false,
            bad_signature_callback_rate: 0.0,
            confirm: ConfirmMode::default(),
            fail_openids: Vec::new(),
            seed: 0,
            bank_settle_ms: DEFAULT_BANK_SETTLE_MS,
            bank_bounce_permille: 0,
            bank_bounce_after_ms: DEFAULT_BANK_BOUNCE_AFTER_MS,
            bank_order_fee_fen: 0,
        }
    }
}

/// One kind of decision; its name goes into the hash, so decisions of
/// different kinds are independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Transient,
    ErrorBeforeCommit,
    ErrorAfterCommit,
    TimeoutAfterSuccess,
    BadSignatureCallback,
    StaleCallback,
    EmptyAssociatedData,
    ConfirmDelay,
    CallbackDelay,
    BankBounce,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Transient => "transient",
            Fault::ErrorBeforeCommit => "error_before_commit",
            Fault::ErrorAfterCommit => "error_after_commit",
            Fault::TimeoutAfterSuccess => "timeout_after_success",
            Fault::BadSignatureCallback => "bad_signature_callback",
            Fault::StaleCallback => "stale_callback",
            Fault::EmptyAssociatedData => "empty_associated_data",
            Fault::ConfirmDelay => "confirm_delay",
            Fault::CallbackDelay => "callback_delay",
            Fault::BankBounce => "bank_bounce",
        }
    }
}

impl Faults {
    /// Refuses rates outside `[0, 1]` (or NaN).
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("transient_rate", self.transient_rate),
            ("error_before_commit_rate", self.error_before_commit_rate),
            ("error_after_commit_rate", self.error_after_commit_rate),
            (
                "timeout_after_success_rate",
                self.timeout_after_success_rate,
            ),
            (
                "bad_signature_callback_rate",
                self.bad_signature_callback_rate,
            ),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        if self.bank_bounce_permille > PERMILLE {
            return Err("bank_bounce_permille must be between 0 and 1000".to_owned());
        }
        if self.bank_order_fee_fen < 0 {
            return Err("bank_order_fee_fen must not be negative".to_owned());
        }
        Ok(())
    }

    /// Whether this bank-card bill bounces by itself after its success.
    pub(crate) fn bank_bounces(&self, out_biz_no: &str) -> bool {
        // 0..=999 against the share: 0 never, 1000 always.
        self.bank_bounce_permille > 0
            && self.pick(Fault::BankBounce, out_biz_no, u64::from(PERMILLE) - 1)
                < u64::from(self.bank_bounce_permille)
    }

    fn rate(&self, fault: Fault) -> f64 {
        match fault {
            Fault::Transient => self.transient_rate,
            Fault::ErrorBeforeCommit => self.error_before_commit_rate,
            Fault::ErrorAfterCommit => self.error_after_commit_rate,
            Fault::TimeoutAfterSuccess => self.timeout_after_success_rate,
            Fault::BadSignatureCallback => self.bad_signature_callback_rate,
            Fault::StaleCallback if self.out_of_order_callbacks => 0.5,
            Fault::StaleCallback => 0.0,
            // Both spellings of an empty AAD reach receivers.
            Fault::EmptyAssociatedData => 0.5,
            Fault::ConfirmDelay | Fault::CallbackDelay | Fault::BankBounce => 0.0,
        }
    }

    /// Whether `fault` strikes this attempt at this bill.
    pub(crate) fn hits(&self, fault: Fault, out_bill_no: &str, attempt: u32) -> bool {
        let rate = self.rate(fault);
        if rate <= 0.0 {
            return false;
        }
        // The top 53 bits as a uniform float in [0, 1): a probability, not money.
        let unit = (self.roll(fault, out_bill_no, attempt) >> 11) as f64 / (1u64 << 53) as f64;
        unit < rate
    }

    /// A number in `0..=max`, fixed by the seed.
    pub(crate) fn pick(&self, fault: Fault, out_bill_no: &str, max: u64) -> u64 {
        self.roll(fault, out_bill_no, 0) % (max + 1)
    }

    fn roll(&self, fault: Fault, out_bill_no: &str, attempt: u32) -> u64 {
        let mut input = Vec::with_capacity(out_bill_no.len() + 48);
        input.extend_from_slice(&self.seed.to_le_bytes());
        input.extend_from_slice(fault.name().as_bytes());
        input.push(0);
        input.extend_from_slice(out_bill_no.as_bytes());
        input.push(0);
        input.extend_from_slice(&attempt.to_le_bytes());
        let hash = digest(&SHA256, &input);
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_ref()[..8]);
        u64::from_le_bytes(first)
    }

    /// The delay before an automatic confirmation, if the payee confirms by
    /// themself.
    pub(crate) fn auto_confirm_after_ms(&self, out_bill_no: &str) -> Option<u64> {
        match self.confirm {
            ConfirmMode::Auto {
                after_ms: Some(after_ms),
            } => Some(after_ms),
            ConfirmMode::Auto { after_ms: None } => {
                Some(self.pick(Fault::ConfirmDelay, out_bill_no, AUTO_CONFIRM_MAX_MS))
            }
            ConfirmMode::Hold => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_reproducible_from_the_seed_and_change_with_the_attempt() {
        let faults = Faults {
            transient_rate: 0.5,
            seed: 7,
            ..Faults::default()
        };
        let storm: Vec<bool> = (0..64)
            .map(|attempt| faults.hits(Fault::Transient, "wd0001", attempt))
            .collect();
        let again: Vec<bool> = (0..64)
            .map(|attempt| faults.hits(Fault::Transient, "wd0001", attempt))
            .collect();
        assert_eq!(storm, again);
        assert!(storm.contains(&true) && storm.contains(&false));
        let other_seed = Faults {
            seed: 8,
            ..faults.clone()
        };
        let other: Vec<bool> = (0..64)
            .map(|attempt| other_seed.hits(Fault::Transient, "wd0001", attempt))
            .collect();
        assert_ne!(storm, other);
    }

    #[test]
    fn rates_are_roughly_honoured_and_zero_and_one_are_exact() {
        let faults = Faults {
            transient_rate: 0.3,
            error_after_commit_rate: 1.0,
            ..Faults::default()
        };
        let hits = (0..10_000)
            .filter(|attempt| faults.hits(Fault::Transient, "wd0001", *attempt))
            .count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
        assert!((0..100).all(|attempt| faults.hits(Fault::ErrorAfterCommit, "wd0001", attempt)));
        assert!((0..100).all(|attempt| !faults.hits(Fault::ErrorBeforeCommit, "wd0001", attempt)));
    }

    #[test]
    fn faults_parse_from_json_with_defaults_and_refuse_unknown_fields_and_bad_rates() {
        let faults: Faults =
            serde_json::from_str(r#"{"transient_rate":0.2,"confirm":{"mode":"hold"}}"#).unwrap();
        assert_eq!(faults.confirm, ConfirmMode::Hold);
        assert_eq!(faults.hang_ms, DEFAULT_HANG_MS);
        let auto: Faults =
            serde_json::from_str(r#"{"confirm":{"mode":"auto","after_ms":10}}"#).unwrap();
        assert_eq!(auto.auto_confirm_after_ms("wd0001"), Some(10));
        assert!(serde_json::from_str::<Faults>(r#"{"transient":0.2}"#).is_err());
        let bad = Faults {
            transient_rate: 1.5,
            ..Faults::default()
        };
        assert!(bad.validate().is_err());
        assert!(Faults::default().auto_confirm_after_ms("wd0001").unwrap() <= AUTO_CONFIRM_MAX_MS);
        let bank: Faults = serde_json::from_str(r#"{"bank_bounce_permille":250}"#).unwrap();
        assert_eq!(bank.bank_settle_ms, DEFAULT_BANK_SETTLE_MS);
        let too_many = Faults {
            bank_bounce_permille: 1_001,
            ..Faults::default()
        };
        assert!(too_many.validate().is_err());
    }

    #[test]
    fn a_bounce_share_is_roughly_honoured_and_reproducible() {
        let faults = Faults {
            bank_bounce_permille: 250,
            seed: 3,
            ..Faults::default()
        };
        let bounced: Vec<bool> = (0..2_000)
            .map(|n| faults.bank_bounces(&format!("wd{n:05}")))
            .collect();
        let count = bounced.iter().filter(|bounced| **bounced).count();
        assert!((400..600).contains(&count), "{count}");
        let again: Vec<bool> = (0..2_000)
            .map(|n| faults.bank_bounces(&format!("wd{n:05}")))
            .collect();
        assert_eq!(bounced, again);
        let all = Faults {
            bank_bounce_permille: PERMILLE,
            ..Faults::default()
        };
        assert!((0..100).all(|n| all.bank_bounces(&format!("wd{n:05}"))));
        assert!((0..100).all(|n| !Faults::default().bank_bounces(&format!("wd{n:05}"))));
    }
}
