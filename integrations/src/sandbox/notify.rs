//! `MCHTRANSFER.BILL.FINISHED` callbacks: how the sandbox builds, signs and
//! delivers them (with the faults that make receivers earn their keep), and
//! [`CallbackBuilder`] for tests that craft their own.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::faults::{Fault, OUT_OF_ORDER_MAX_DELAY_MS};
use super::state::{Bill, Sandbox};
use crate::wechat::crypto::{self, RESOURCE_NONCE_LEN, alphanumeric_nonce, sign_answer};
use crate::wechat::{BILL_FINISHED_EVENT, BillState, unix_now};

/// How long one delivery may take. WeChat expects an answer within a few
/// seconds and counts a slower one as failed.
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The callbacks' `associated_data` unless a fault or a test says otherwise.
const ASSOCIATED_DATA: &str = "mch_payment";

/// When to try a callback again: WeChat's schedule (0 s, 15 s ×10, 300 s
/// ×10, …) compressed so tests and the demo see retries in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackSchedule {
    /// Waits before the 2nd, 3rd, … tries.
    pub retry_delays_ms: Vec<u64>,
    /// The wait before each try after those.
    pub then_every_ms: u64,
    /// Tries in all, the first included; then the sandbox gives up, as
    /// WeChat does, and only a query tells.
    pub max_tries: u32,
}

impl Default for CallbackSchedule {
    fn default() -> CallbackSchedule {
        CallbackSchedule {
            retry_delays_ms: vec![100, 500, 2_000],
            then_every_ms: 5_000,
            max_tries: 20,
        }
    }
}

impl CallbackSchedule {
    /// The wait before try number `try_index` (0 = the first, sent at once).
    pub fn delay_before_try(&self, try_index: u32) -> Duration {
        let millis = match try_index {
            0 => 0,
            n => usize::try_from(n - 1)
                .ok()
                .and_then(|index| self.retry_delays_ms.get(index).copied())
                .unwrap_or(self.then_every_ms),
        };
        Duration::from_millis(millis)
    }
}

/// A signed callback, ready to post: headers (`Wechatpay-*`, `Request-ID`,
/// `Content-Type`) and the JSON body.
#[derive(Clone)]
pub struct SignedCallback {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    sandbox: Arc<Sandbox>,
}

impl std::fmt::Debug for SignedCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedCallback")
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl SignedCallback {
    fn signed(sandbox: Arc<Sandbox>, body: Vec<u8>, timestamp: i64) -> SignedCallback {
        let mut callback = SignedCallback {
            headers: Vec::new(),
            body,
            sandbox,
        };
        callback.sign(timestamp);
        callback
    }

    fn sign(&mut self, timestamp: i64) {
        let signed = sign_answer(
            &self.sandbox.platform_signer,
            &self.sandbox.platform_public_key_id,
            timestamp,
            &self.body,
        );
        self.headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Wechatpay-Timestamp".to_owned(), signed.timestamp),
            ("Wechatpay-Nonce".to_owned(), signed.nonce),
            ("Wechatpay-Signature".to_owned(), signed.signature),
            ("Wechatpay-Serial".to_owned(), signed.serial),
            (
                "Wechatpay-Signature-Type".to_owned(),
                crypto::AUTH_SCHEME.to_owned(),
            ),
            ("Request-ID".to_owned(), alphanumeric_nonce(32)),
        ];
    }

    fn header_mut(&mut self, name: &str) -> &mut String {
        &mut self
            .headers
            .iter_mut()
            .find(|(header, _)| header == name)
            .expect("every signed callback has its signature headers")
            .1
    }

    /// Signs again as of `unix_seconds` (a stale or future callback). Apply
    /// before [`Self::with_corrupted_signature`], which it would undo.
    pub fn at_timestamp(mut self, unix_seconds: i64) -> SignedCallback {
        self.sign(unix_seconds);
        self
    }

    /// Flips one bit of the signature: still Base64, never valid.
    pub fn with_corrupted_signature(mut self) -> SignedCallback {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD;
        let signature = self.header_mut("Wechatpay-Signature");
        let mut bytes = STANDARD
            .decode(signature.as_bytes())
            .expect("the sandbox's own signature is Base64");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        *signature = STANDARD.encode(bytes);
        self
    }

    /// Prefixes the signature as WeChat's probe traffic does
    /// (`WECHATPAY/SIGNTEST/`); receivers verify it like any other, so it
    /// fails.
    pub fn as_probe(mut self) -> SignedCallback {
        let signature = self.header_mut("Wechatpay-Signature");
        *signature = format!("WECHATPAY/SIGNTEST/{signature}");
        self
    }

    /// Names another key in `Wechatpay-Serial`.
    pub fn with_serial(mut self, serial: &str) -> SignedCallback {
        *self.header_mut("Wechatpay-Serial") = serial.to_owned();
        self
    }

    /// The headers as an `http::HeaderMap`, as a receiver sees them.
    pub fn header_map(&self) -> http::HeaderMap {
        self.headers
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::try_from(name.as_str())
                        .expect("header names are static ASCII"),
                    http::HeaderValue::try_from(value.as_str()).expect("header values are ASCII"),
                )
            })
            .collect()
    }
}

/// Crafts callbacks signed with the sandbox's platform key, for any bill
/// (known to the sandbox or not), any state, any time.
#[derive(Clone)]
pub struct CallbackBuilder {
    sandbox: Arc<Sandbox>,
    associated_data: String,
}

impl std::fmt::Debug for CallbackBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackBuilder")
            .field("associated_data", &self.associated_data)
            .finish_non_exhaustive()
    }
}

/// The plaintext of one callback.
struct Content<'a> {
    bill: &'a Bill,
    state: BillState,
    fail_reason: Option<&'a str>,
    update_time: &'a str,
    associated_data: &'a str,
}

/// Encrypts a bill into a v3 notification body.
fn notification_body(sandbox: &Sandbox, content: &Content<'_>) -> Vec<u8> {
    let bill = content.bill;
    let plaintext = json!({
        "mchid": sandbox.mchid,
        "out_bill_no": bill.out_bill_no,
        "transfer_bill_no": bill.transfer_bill_no,
        "state": content.state,
        "transfer_amount": bill.amount_fen,
        "fail_reason": content.fail_reason.unwrap_or_default(),
        "openid": bill.openid,
        "create_time": bill.create_time,
        "update_time": content.update_time,
    });
    let nonce = alphanumeric_nonce(RESOURCE_NONCE_LEN);
    let ciphertext = sandbox
        .resource_key
        .seal(
            &nonce,
            content.associated_data,
            plaintext.to_string().as_bytes(),
        )
        .expect("a 12-character nonce is a valid AES-GCM nonce");
    json!({
        "id": format!("EV-{}", alphanumeric_nonce(24)),
        "create_time": sandbox.book().beijing_now(),
        "resource_type": "encrypt-resource",
        "event_type": BILL_FINISHED_EVENT,
        "summary": "商家转账单据终态通知",
        "resource": {
            "original_type": "mch_payment",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": ciphertext,
            "nonce": nonce,
            "associated_data": content.associated_data,
        },
    })
    .to_string()
    .into_bytes()
}

impl CallbackBuilder {
    pub(crate) fn new(sandbox: Arc<Sandbox>) -> CallbackBuilder {
        CallbackBuilder {
            sandbox,
            associated_data: ASSOCIATED_DATA.to_owned(),
        }
    }

    /// Sets `resource.associated_data` (`""` is valid and must be accepted).
    pub fn with_associated_data(mut self, associated_data: &str) -> CallbackBuilder {
        associated_data.clone_into(&mut self.associated_data);
        self
    }

    pub fn success(&self, out_bill_no: &str, amount_fen: i64) -> SignedCallback {
        self.with_state(out_bill_no, amount_fen, BillState::Success, None)
    }

    pub fn failed(&self, out_bill_no: &str, amount_fen: i64, fail_reason: &str) -> SignedCallback {
        self.with_state(out_bill_no, amount_fen, BillState::Fail, Some(fail_reason))
    }

    pub fn cancelled(&self, out_bill_no: &str, amount_fen: i64) -> SignedCallback {
        self.with_state(out_bill_no, amount_fen, BillState::Cancelled, None)
    }

    /// A callback claiming `state` for `out_bill_no` and `amount_fen`,
    /// signed now. The bill's other fields come from the sandbox's book when
    /// it holds the bill.
    pub fn with_state(
        &self,
        out_bill_no: &str,
        amount_fen: i64,
        state: BillState,
        fail_reason: Option<&str>,
    ) -> SignedCallback {
        let (known, now) = {
            let book = self.sandbox.book();
            (book.get(out_bill_no).cloned(), book.beijing_now())
        };
        let bill = match known {
            Some(bill) => bill.with_amount(amount_fen),
            None => Bill::stand_in(out_bill_no, amount_fen, &now),
        };
        let body = notification_body(
            &self.sandbox,
            &Content {
                bill: &bill,
                state,
                fail_reason,
                update_time: &now,
                associated_data: &self.associated_data,
            },
        );
        SignedCallback::signed(Arc::clone(&self.sandbox), body, unix_now())
    }
}

/// Sends the callbacks for a bill that just finished, in the background,
/// shaped by the faults in force now.
pub(crate) fn dispatch(sandbox: &Arc<Sandbox>, bill: Bill) {
    let faults = sandbox.faults();
    let key = bill.out_bill_no.as_str();
    let associated_data = if faults.hits(Fault::EmptyAssociatedData, key, 0) {
        ""
    } else {
        ASSOCIATED_DATA
    };
    let now = unix_now();
    let sign = |state: BillState, fail_reason: Option<&str>, update_time: &str| {
        let body = notification_body(
            sandbox,
            &Content {
                bill: &bill,
                state,
                fail_reason,
                update_time,
                associated_data,
            },
        );
        SignedCallback::signed(Arc::clone(sandbox), body, now)
    };
    let genuine = sign(bill.state, bill.fail_reason.as_deref(), &bill.update_time);
    let forged = faults.hits(Fault::BadSignatureCallback, key, 0).then(|| {
        sign(
            BillState::Fail,
            Some("PAYEE_ACCOUNT_ABNORMAL"),
            &bill.update_time,
        )
        .with_corrupted_signature()
    });
    let stale = faults.hits(Fault::StaleCallback, key, 0).then(|| {
        let earlier = match bill.state {
            BillState::Cancelled => BillState::Canceling,
            _ => BillState::WaitUserConfirm,
        };
        sign(earlier, None, &bill.create_time)
    });
    let extra_delay = if faults.out_of_order_callbacks {
        Duration::from_millis(faults.pick(Fault::CallbackDelay, key, OUT_OF_ORDER_MAX_DELAY_MS))
    } else {
        Duration::ZERO
    };
    let twice = faults.duplicate_callbacks;
    let task_sandbox = Arc::clone(sandbox);
    let out_bill_no = bill.out_bill_no.clone();
    let url = bill.notify_url.clone();
    sandbox.runtime.spawn(async move {
        let sandbox = task_sandbox;
        if let Some(forged) = forged {
            post(&sandbox, &url, &forged).await;
        }
        if !sandbox.sleep(extra_delay).await {
            return;
        }
        let copy = async {
            if twice {
                deliver(&sandbox, &url, &genuine, &out_bill_no).await;
            }
        };
        tokio::join!(deliver(&sandbox, &url, &genuine, &out_bill_no), copy);
        if let Some(stale) = stale {
            post(&sandbox, &url, &stale).await;
        }
    });
}

/// Delivers a genuine callback on the schedule until the receiver answers 2xx.
async fn deliver(sandbox: &Sandbox, url: &str, callback: &SignedCallback, out_bill_no: &str) {
    for try_index in 0..sandbox.schedule.max_tries {
        if !sandbox
            .sleep(sandbox.schedule.delay_before_try(try_index))
            .await
        {
            return;
        }
        // Each try is signed afresh, as its timestamp must be current.
        let fresh = callback.clone().at_timestamp(unix_now());
        if post(sandbox, url, &fresh).await {
            sandbox.book().record_delivery(out_bill_no);
            return;
        }
    }
    tracing::warn!(
        out_bill_no,
        tries = sandbox.schedule.max_tries,
        "sandbox gave up delivering a callback; only a query will tell"
    );
}

/// One POST; whether the receiver acknowledged it.
async fn post(sandbox: &Sandbox, url: &str, callback: &SignedCallback) -> bool {
    let mut request = sandbox
        .notifier
        .post(url)
        .timeout(DELIVERY_TIMEOUT)
        .body(callback.body.clone());
    for (name, value) in &callback.headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            tracing::debug!(
                status = response.status().as_u16(),
                "callback not acknowledged"
            );
            false
        }
        Err(error) => {
            tracing::debug!(error = %error.without_url(), "callback delivery failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_starts_at_once_then_follows_the_delays_then_repeats() {
        let schedule = CallbackSchedule::default();
        let delays: Vec<u64> = (0..6)
            .map(|n| schedule.delay_before_try(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [0, 100, 500, 2_000, 5_000, 5_000]);
    }
}
