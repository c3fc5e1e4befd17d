//! `alipay.fund.trans.order.changed`: a form POST signed with the test
//! "Alipay" key over every field but `sign` and `sign_type`, delivered on the
//! sandbox's callback schedule until the receiver answers the text
//! `success`, with the same callback faults as the WeChat side.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

use super::super::faults::{Fault, OUT_OF_ORDER_MAX_DELAY_MS};
use super::super::notify::DELIVERY_TIMEOUT;
use super::super::state::Sandbox;
use super::Order;
use crate::alipay::crypto::notify_sign_content;
use crate::alipay::{AlipayProduct, FundOrderStatus, yuan_from_fen};
use crate::wechat::crypto::alphanumeric_nonce;

/// The method every fund order notification names.
const ORDER_CHANGED: &str = "alipay.fund.trans.order.changed";

/// The notification protocol version [U: `1.1` as in samples seen, not
/// confirmed in the docs].
const NOTIFY_VERSION: &str = "1.1";

/// The text that stops redelivery.
const ACKNOWLEDGED: &str = "success";

/// A signed notification, as form fields in the order they are posted.
#[derive(Clone)]
struct Notification {
    fields: Vec<(&'static str, String)>,
}

impl Notification {
    fn body(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                self.fields
                    .iter()
                    .map(|(key, value)| (*key, value.as_str())),
            )
            .finish()
    }

    /// Flips one bit of the signature: still Base64, never valid.
    fn with_corrupted_signature(mut self) -> Notification {
        if let Some((_, sign)) = self.fields.iter_mut().find(|(key, _)| *key == "sign") {
            let mut bytes = BASE64
                .decode(sign.as_bytes())
                .expect("the sandbox's own signature is Base64");
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            *sign = BASE64.encode(bytes);
        }
        self
    }
}

/// `action_type` of the change [U: `REFUND` as in samples of a bounce;
/// `FINISH` for the others is a guess].
fn action_type(status: FundOrderStatus) -> &'static str {
    match status {
        FundOrderStatus::Refund => "REFUND",
        FundOrderStatus::Success | FundOrderStatus::Fail | FundOrderStatus::Dealing => "FINISH",
    }
}

/// Signs the notification of `order` claiming `status`.
fn signed(
    sandbox: &Sandbox,
    order: &Order,
    status: FundOrderStatus,
    error_code: Option<&str>,
    fail_reason: Option<&str>,
    utc_timestamp_ms: i64,
) -> Notification {
    let mut biz = json!({
        "pay_fund_order_id": order.pay_fund_order_id,
        "out_biz_no": order.out_biz_no,
        "product_code": order.product.product_code(),
        "biz_scene": order.product.biz_scene(),
        "order_id": order.order_id,
        "status": status,
        "action_type": action_type(status),
        "trans_amount": yuan_from_fen(crate::AmountFen(order.amount_fen))
            .expect("orders hold positive amounts"),
    });
    if let Some(pay_date) = &order.pay_date {
        biz["pay_date"] = json!(pay_date);
    }
    if let Some(error_code) = error_code {
        biz["error_code"] = json!(error_code);
    }
    if let Some(fail_reason) = fail_reason {
        biz["fail_reason"] = json!(fail_reason);
    }
    let mut fields: Vec<(&'static str, String)> = vec![
        ("charset", "utf-8".to_owned()),
        ("biz_content", biz.to_string()),
        ("msg_method", ORDER_CHANGED.to_owned()),
        ("utc_timestamp", utc_timestamp_ms.to_string()),
        ("version", NOTIFY_VERSION.to_owned()),
        ("notify_id", alphanumeric_nonce(32)),
        ("app_id", sandbox.alipay.app_id.clone()),
    ];
    let content = notify_sign_content(fields.iter().map(|(key, value)| (*key, value.as_str())));
    let sign = sandbox.alipay.signer.sign(&content);
    fields.push(("sign_type", "RSA2".to_owned()));
    fields.push(("sign", sign));
    Notification { fields }
}

/// Sends the notifications for an order that just changed, in the
/// background, shaped by the faults in force now.
pub(crate) fn dispatch(sandbox: &Arc<Sandbox>, order: Order) {
    let Some(url) = order
        .notify_url
        .clone()
        .or_else(|| sandbox.alipay.default_notify_url.clone())
    else {
        tracing::info!(out_biz_no = %order.out_biz_no, "no notify_url; the order change is only seen by a query");
        return;
    };
    let faults = sandbox.faults();
    // One decision per change: the success and the later bounce of one
    // order roll independently.
    let key = format!("{}/{}", order.out_biz_no, order.status);
    let now_ms = sandbox.now().timestamp_millis();
    let genuine = signed(
        sandbox,
        &order,
        order.status,
        order.error_code.as_deref(),
        order.fail_reason.as_deref(),
        now_ms,
    );
    let forged = faults.hits(Fault::BadSignatureCallback, &key, 0).then(|| {
        signed(
            sandbox,
            &order,
            FundOrderStatus::Fail,
            Some("PAYEE_NOT_EXIST"),
            None,
            now_ms,
        )
        .with_corrupted_signature()
    });
    let earlier = match (order.product, order.status) {
        (AlipayProduct::BankCard, FundOrderStatus::Refund) => Some(FundOrderStatus::Success),
        (AlipayProduct::BankCard, FundOrderStatus::Success | FundOrderStatus::Fail) => {
            Some(FundOrderStatus::Dealing)
        }
        // An account order is final from its first answer: nothing earlier.
        (AlipayProduct::AlipayAccount, _) | (AlipayProduct::BankCard, FundOrderStatus::Dealing) => {
            None
        }
    };
    let stale = earlier
        .filter(|_| faults.hits(Fault::StaleCallback, &key, 0))
        .map(|earlier| signed(sandbox, &order, earlier, None, None, now_ms));
    let extra_delay = if faults.out_of_order_callbacks {
        Duration::from_millis(faults.pick(Fault::CallbackDelay, &key, OUT_OF_ORDER_MAX_DELAY_MS))
    } else {
        Duration::ZERO
    };
    let twice = faults.duplicate_callbacks;
    let task_sandbox = Arc::clone(sandbox);
    let out_biz_no = order.out_biz_no;
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
                deliver(&sandbox, &url, &genuine, &out_biz_no).await;
            }
        };
        tokio::join!(deliver(&sandbox, &url, &genuine, &out_biz_no), copy);
        if let Some(stale) = stale {
            post(&sandbox, &url, &stale).await;
        }
    });
}

/// Delivers a genuine notification on the schedule until it is
/// acknowledged. Redeliveries are the same notification (same `notify_id`
/// and signature), as Alipay's are.
async fn deliver(sandbox: &Sandbox, url: &str, notification: &Notification, out_biz_no: &str) {
    for try_index in 0..sandbox.schedule.max_tries {
        if !sandbox
            .sleep(sandbox.schedule.delay_before_try(try_index))
            .await
        {
            return;
        }
        if post(sandbox, url, notification).await {
            sandbox.book().alipay_record_delivery(out_biz_no);
            return;
        }
    }
    tracing::warn!(
        out_biz_no,
        tries = sandbox.schedule.max_tries,
        "sandbox gave up delivering an Alipay notification; only a query will tell"
    );
}

/// One POST; whether the receiver answered `success`. Anything else, a 2xx
/// with another text included, counts as not received, as at Alipay.
async fn post(sandbox: &Sandbox, url: &str, notification: &Notification) -> bool {
    let request = sandbox
        .notifier
        .post(url)
        .timeout(DELIVERY_TIMEOUT)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(notification.body());
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let acknowledged = status.is_success() && text.trim() == ACKNOWLEDGED;
            if !acknowledged {
                tracing::debug!(
                    status = status.as_u16(),
                    "Alipay notification not acknowledged"
                );
            }
            acknowledged
        }
        Err(error) => {
            tracing::debug!(error = %error.without_url(), "Alipay notification delivery failed");
            false
        }
    }
}
