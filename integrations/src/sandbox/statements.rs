//! The sandbox's daily statements, built from its own ledger: the WeChat
//! fund-flow bill behind `GET /v3/bill/fundflowbill`, the Alipay account log
//! behind [`alipay_bill_download_url`] (for the `gateway.do` dispatcher), the
//! short-lived downloads of both, and the [`StatementFaults`] that make them
//! disagree with the ledger on purpose.
//!
//! The WeChat bill holds the WeChat bills; the Alipay account log holds the
//! Alipay-account and the bank-card bills (one Alipay app pays both). A
//! payout (and its fee, if any) is on the China date of `paid_at`, a bank
//! return on the China date of `returned_at`. Days are China calendar days
//! by the sandbox's clock (wall clock plus [`super::SandboxHandle::set_clock_offset`]),
//! the clock that stamps those times, so today's statement already holds
//! today's payouts; only a day after the sandbox's today is "not ready".

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha1::{Digest, Sha1};

use super::SandboxLedger;
use super::server::{admin_error, authenticate, refuse, signed};
use super::state::Sandbox;
use crate::statement::{
    StatementLine, StatementLineKind, StatementSummary, alipay_signcustomer, wechat_fundflow,
};
use crate::wechat::crypto::alphanumeric_nonce;
use crate::{AmountFen, Channel};

/// The sandbox merchant's Alipay user id, named in the archive.
pub(crate) const SANDBOX_ALIPAY_ACCOUNT: &str = "2088000000000001";

/// Downloads kept; the oldest goes first. Real URLs live 30 s (Alipay) or a
/// few minutes (WeChat): a handful is plenty.
const MAX_DOWNLOADS: usize = 32;

/// What an injected extra or wrong amount is off by: 1.00 yuan.
const KNOB_AMOUNT_FEN: i64 = 100;

/// The path of the download route; the token follows.
const DOWNLOAD_PATH: &str = "/sandbox/download";

/// The statement mismatch knobs. Each applies to every statement served, on
/// the payout lines sorted by bill number, in this order: drop the first
/// `drop_lines`; add 1.00 yuan to the next `wrong_amount_lines`; add a return
/// line for the next `flip_state_lines`; then add `extra_lines` payouts of
/// 1.00 yuan for bill numbers fenrun never sent (`sbxextra0001`, …).
/// `duplicate_lines` then pays the next that many payouts twice on the
/// statement, and `drop_returns` leaves out the first that many returns (by
/// bill number): a bounce the statement does not show.
/// `corrupt_downloads` spoils the next that many files served (a byte of the
/// WeChat bill differs from the hash its answer gives; the Alipay archive is
/// cut short), then counts down to zero: a corrupt download and the retry
/// that succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatementFaults {
    pub drop_lines: u32,
    pub extra_lines: u32,
    pub wrong_amount_lines: u32,
    pub flip_state_lines: u32,
    pub duplicate_lines: u32,
    pub drop_returns: u32,
    pub corrupt_downloads: u32,
}

impl StatementFaults {
    /// More would only make a huge file; no test needs it.
    pub const MAX_LINES: u32 = 10_000;

    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("drop_lines", self.drop_lines),
            ("extra_lines", self.extra_lines),
            ("wrong_amount_lines", self.wrong_amount_lines),
            ("flip_state_lines", self.flip_state_lines),
            ("duplicate_lines", self.duplicate_lines),
            ("drop_returns", self.drop_returns),
            ("corrupt_downloads", self.corrupt_downloads),
        ] {
            if value > Self::MAX_LINES {
                return Err(format!("{name} must be at most {}", Self::MAX_LINES));
            }
        }
        Ok(())
    }
}

struct Download {
    token: String,
    bytes: Vec<u8>,
    /// WeChat wants the download signed; Alipay's URL is its own key.
    needs_signature: bool,
}

/// The knobs and the files waiting to be downloaded.
#[derive(Default)]
pub(crate) struct StatementDesk {
    faults: Mutex<StatementFaults>,
    downloads: Mutex<VecDeque<Download>>,
}

impl StatementDesk {
    pub(crate) fn faults(&self) -> StatementFaults {
        *self
            .faults
            .lock()
            .expect("statement faults poisoned by a panic")
    }

    pub(crate) fn set_faults(&self, faults: StatementFaults) {
        *self
            .faults
            .lock()
            .expect("statement faults poisoned by a panic") = faults;
    }

    /// Whether the file about to be served is to be spoiled; counts the
    /// `corrupt_downloads` knob down.
    fn spoil_next(&self) -> bool {
        let mut faults = self
            .faults
            .lock()
            .expect("statement faults poisoned by a panic");
        let spoil = faults.corrupt_downloads > 0;
        faults.corrupt_downloads = faults.corrupt_downloads.saturating_sub(1);
        spoil
    }

    /// Keeps `bytes` for download and returns the token naming them.
    fn offer(&self, bytes: Vec<u8>, needs_signature: bool) -> String {
        let token = alphanumeric_nonce(32);
        let mut downloads = self
            .downloads
            .lock()
            .expect("downloads poisoned by a panic");
        if downloads.len() >= MAX_DOWNLOADS {
            downloads.pop_front();
        }
        downloads.push_back(Download {
            token: token.clone(),
            bytes,
            needs_signature,
        });
        token
    }

    fn get(&self, token: &str) -> Option<(Vec<u8>, bool)> {
        let downloads = self
            .downloads
            .lock()
            .expect("downloads poisoned by a panic");
        downloads
            .iter()
            .find(|download| download.token == token)
            .map(|download| (download.bytes.clone(), download.needs_signature))
    }
}

pub(super) fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/v3/bill/fundflowbill", get(fund_flow_bill))
        .route(&format!("{DOWNLOAD_PATH}/{{token}}"), get(download))
        .route(
            "/sandbox/statements/faults",
            get(statement_faults).post(set_statement_faults),
        )
}

/// The words each gateway writes on a transfer and its return.
struct Dialect {
    payout: &'static str,
    returned: &'static str,
    /// 业务类型 of a channel fee; `None` where the gateway charges none.
    fee: Option<&'static str>,
}

const WECHAT: Dialect = Dialect {
    payout: wechat_fundflow::PAYOUT_BUSINESS_TYPE,
    returned: wechat_fundflow::RETURN_BUSINESS_TYPE,
    fee: None,
};

const ALIPAY: Dialect = Dialect {
    payout: alipay_signcustomer::PAYOUT_BUSINESS_TYPE,
    returned: alipay_signcustomer::RETURN_BUSINESS_TYPE,
    fee: Some(alipay_signcustomer::FEE_BUSINESS_TYPE),
};

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// Today in China by the sandbox's clock (wall clock plus offset), the
/// clock that stamps `paid_at` and `returned_at`. Takes the book's lock.
pub(crate) fn china_today(sandbox: &Sandbox) -> NaiveDate {
    sandbox.now().with_timezone(&china()).date_naive()
}

/// China time of an RFC 3339 stamp.
fn china_time(rfc3339: &str) -> Option<NaiveDateTime> {
    DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|time| time.with_timezone(&china()).naive_local())
}

/// The ledger's lines for `date` of the bills on `channels`: a payout on
/// the China date of `paid_at`, its fee (when it has one) at the same time,
/// and a return on the China date of `returned_at`. Each carries our
/// number and the gateway's order id.
fn ledger_lines(
    ledger: &SandboxLedger,
    channels: &[Channel],
    date: NaiveDate,
    dialect: &Dialect,
) -> Vec<StatementLine> {
    let mut lines = Vec::new();
    for bill in ledger
        .bills
        .iter()
        .filter(|bill| channels.contains(&bill.channel))
    {
        let line = |kind, fen, occurred_at, business_type: &str| StatementLine {
            out_bill_no: bill.out_bill_no.clone(),
            gateway_ref: bill.order_id.clone(),
            kind,
            amount: AmountFen(fen),
            occurred_at,
            business_type: business_type.to_owned(),
        };
        let on_date = |stamp: &Option<String>| {
            stamp
                .as_deref()
                .and_then(china_time)
                .filter(|time| time.date() == date)
        };
        if bill.paid_times > 0
            && let Some(paid_at) = on_date(&bill.paid_at)
        {
            lines.push(line(
                StatementLineKind::Payout,
                bill.amount_fen,
                paid_at,
                dialect.payout,
            ));
            if let Some(fee) = dialect.fee
                && bill.order_fee_fen > 0
            {
                lines.push(line(
                    StatementLineKind::Fee,
                    bill.order_fee_fen,
                    paid_at,
                    fee,
                ));
            }
        }
        if bill.returned
            && let Some(returned_at) = on_date(&bill.returned_at)
        {
            lines.push(line(
                StatementLineKind::Return,
                bill.amount_fen,
                returned_at,
                dialect.returned,
            ));
        }
    }
    lines
}

/// File order: by time, then bill number, then payout, fee, return.
fn file_order(line: &StatementLine) -> (NaiveDateTime, &str, u8) {
    let rank = match line.kind {
        StatementLineKind::Payout => 0,
        StatementLineKind::Fee | StatementLineKind::OtherExpense => 1,
        StatementLineKind::Return | StatementLineKind::OtherIncome => 2,
    };
    (line.occurred_at, line.out_bill_no.as_str(), rank)
}

/// `lines` with the knobs applied, in file order.
fn with_faults(
    mut lines: Vec<StatementLine>,
    faults: StatementFaults,
    date: NaiveDate,
    dialect: &Dialect,
) -> Vec<StatementLine> {
    let mut returns: Vec<&str> = lines
        .iter()
        .filter(|line| line.kind == StatementLineKind::Return)
        .map(|line| line.out_bill_no.as_str())
        .collect();
    returns.sort_unstable();
    let dropped_returns: Vec<String> = returns
        .into_iter()
        .take(faults.drop_returns as usize)
        .map(str::to_owned)
        .collect();
    lines.retain(|line| {
        line.kind != StatementLineKind::Return || !dropped_returns.contains(&line.out_bill_no)
    });
    let mut payouts: Vec<StatementLine> = Vec::new();
    lines.retain(|line| {
        let payout = line.kind == StatementLineKind::Payout;
        if payout {
            payouts.push(line.clone());
        }
        !payout
    });
    payouts.sort_by(|a, b| a.out_bill_no.cmp(&b.out_bill_no));
    let take = |n: u32, len: usize| (n as usize).min(len);
    payouts.drain(..take(faults.drop_lines, payouts.len()));
    let wrong = take(faults.wrong_amount_lines, payouts.len());
    for line in &mut payouts[..wrong] {
        line.amount.0 += KNOB_AMOUNT_FEN;
    }
    let flip_end = wrong + take(faults.flip_state_lines, payouts.len() - wrong);
    let end_of_day = date.and_time(NaiveTime::from_hms_opt(23, 59, 59).expect("a valid time"));
    for line in &payouts[wrong..flip_end] {
        lines.push(StatementLine {
            kind: StatementLineKind::Return,
            occurred_at: (line.occurred_at + TimeDelta::minutes(1)).min(end_of_day),
            business_type: dialect.returned.to_owned(),
            ..line.clone()
        });
    }
    let duplicate_end = flip_end + take(faults.duplicate_lines, payouts.len() - flip_end);
    let duplicates: Vec<StatementLine> = payouts[flip_end..duplicate_end].to_vec();
    payouts.extend(duplicates);
    let noon = date.and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("a valid time"));
    for n in 1..=faults.extra_lines {
        payouts.push(StatementLine {
            out_bill_no: format!("sbxextra{n:04}"),
            gateway_ref: format!("9999{n:020}"),
            kind: StatementLineKind::Payout,
            amount: AmountFen(KNOB_AMOUNT_FEN),
            occurred_at: noon,
            business_type: dialect.payout.to_owned(),
        });
    }
    lines.extend(payouts);
    lines.sort_by(|a, b| file_order(a).cmp(&file_order(b)));
    lines
}

/// The WeChat fund-flow bill's lines: WeChat bills only.
fn wechat_lines(sandbox: &Sandbox, date: NaiveDate) -> Vec<StatementLine> {
    let ledger = sandbox.book().ledger();
    let lines = ledger_lines(&ledger, &[Channel::Wechat], date, &WECHAT);
    with_faults(lines, sandbox.statements.faults(), date, &WECHAT)
}

/// The Alipay account log's lines: one Alipay app pays both products, so
/// its account log holds the account and the bank-card bills, with the
/// bank's returns and fees.
fn alipay_lines(sandbox: &Sandbox, date: NaiveDate) -> Vec<StatementLine> {
    let ledger = sandbox.book().ledger();
    let lines = ledger_lines(&ledger, &[Channel::Alipay, Channel::Bank], date, &ALIPAY);
    with_faults(lines, sandbox.statements.faults(), date, &ALIPAY)
}

/// Why a day's statement cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BillRefusal {
    /// A future date: the bill is not generated yet (Alipay
    /// `isp.bill_not_exist`-style, as the dispatcher answers it).
    NotReady,
}

/// For the `gateway.do` dispatcher (`alipay.data.dataservice.bill.downloadurl.query`,
/// `bill_type=signcustomer`): the URL of that day's `csv.zip`, under
/// `base_url` (the sandbox's own, as the request reached it).
pub(crate) fn alipay_bill_download_url(
    sandbox: &Sandbox,
    base_url: &str,
    bill_date: NaiveDate,
) -> Result<String, BillRefusal> {
    if bill_date > china_today(sandbox) {
        return Err(BillRefusal::NotReady);
    }
    let lines = alipay_lines(sandbox, bill_date);
    let mut zip = alipay_signcustomer::render(
        SANDBOX_ALIPAY_ACCOUNT,
        bill_date,
        &lines,
        &StatementSummary::of(&lines),
    );
    if sandbox.statements.spoil_next() {
        tracing::warn!(%bill_date, "sandbox: serving a corrupt account log on purpose");
        zip.truncate(zip.len() / 2);
    }
    let token = sandbox.statements.offer(zip, false);
    Ok(format!(
        "{}{DOWNLOAD_PATH}/{token}",
        base_url.trim_end_matches('/')
    ))
}

/// The query of `GET /v3/bill/fundflowbill`.
struct BillQuery {
    bill_date: NaiveDate,
    gzip: bool,
}

fn bill_query(uri: &Uri) -> Result<BillQuery, String> {
    let mut bill_date = None;
    let mut account_type = None;
    let mut tar_type = None;
    for (key, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "bill_date" => bill_date = Some(value.into_owned()),
            "account_type" => account_type = Some(value.into_owned()),
            "tar_type" => tar_type = Some(value.into_owned()),
            _ => {}
        }
    }
    let bill_date = bill_date.ok_or("bill_date is required")?;
    let bill_date = NaiveDate::parse_from_str(&bill_date, "%Y-%m-%d")
        .map_err(|_| "bill_date must be YYYY-MM-DD".to_owned())?;
    // The real default is BASIC; the sandbox pays from OPERATION only.
    if account_type.as_deref() != Some("OPERATION") {
        return Err(
            "the sandbox keeps only the OPERATION account: send account_type=OPERATION".to_owned(),
        );
    }
    let gzip = match tar_type.as_deref() {
        None => false,
        Some("GZIP") => true,
        Some(_) => return Err("tar_type must be GZIP or absent".to_owned()),
    };
    Ok(BillQuery { bill_date, gzip })
}

async fn fund_flow_bill(
    State(sandbox): State<Arc<Sandbox>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(reason) = authenticate(&sandbox, &method, &uri, &headers, &[]) {
        return refuse(&sandbox, StatusCode::UNAUTHORIZED, "SIGN_ERROR", reason);
    }
    let query = match bill_query(&uri) {
        Ok(query) => query,
        Err(reason) => return refuse(&sandbox, StatusCode::BAD_REQUEST, "PARAM_ERROR", &reason),
    };
    if query.bill_date > china_today(&sandbox) {
        return refuse(
            &sandbox,
            StatusCode::BAD_REQUEST,
            "NO_STATEMENT_EXIST",
            "the bill for that day is not generated yet",
        );
    }
    let Some(host) = headers.get(HOST).and_then(|host| host.to_str().ok()) else {
        return refuse(
            &sandbox,
            StatusCode::BAD_REQUEST,
            "PARAM_ERROR",
            "Host header is required",
        );
    };
    let lines = wechat_lines(&sandbox, query.bill_date);
    let mut csv = wechat_fundflow::render(&lines, &StatementSummary::of(&lines));
    let hash_value: String = Sha1::digest(&csv)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if sandbox.statements.spoil_next() {
        tracing::warn!(bill_date = %query.bill_date, "sandbox: serving a fund-flow bill that fails its hash on purpose");
        // One byte of the first line: the file no longer matches the hash.
        if let Some(first) = csv.first_mut() {
            *first ^= 0x01;
        }
    }
    let file = if query.gzip {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder
            .write_all(&csv)
            .expect("writing to memory cannot fail");
        encoder.finish().expect("writing to memory cannot fail")
    } else {
        csv
    };
    let token = sandbox.statements.offer(file, true);
    signed(
        &sandbox,
        StatusCode::OK,
        &json!({
            "hash_type": "SHA1",
            "hash_value": hash_value,
            "download_url": format!("{}://{host}{DOWNLOAD_PATH}/{token}", sandbox.scheme),
        }),
    )
}

async fn download(
    State(sandbox): State<Arc<Sandbox>>,
    Path(token): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some((bytes, needs_signature)) = sandbox.statements.get(&token) else {
        return admin_error(
            StatusCode::NOT_FOUND,
            "no such download (they expire): ask for the bill again",
        );
    };
    if needs_signature && let Err(reason) = authenticate(&sandbox, &method, &uri, &headers, &[]) {
        return refuse(&sandbox, StatusCode::UNAUTHORIZED, "SIGN_ERROR", reason);
    }
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

async fn statement_faults(State(sandbox): State<Arc<Sandbox>>) -> Response {
    axum::Json(sandbox.statements.faults()).into_response()
}

async fn set_statement_faults(
    State(sandbox): State<Arc<Sandbox>>,
    body: axum::body::Bytes,
) -> Response {
    let faults: StatementFaults = match serde_json::from_slice(&body) {
        Ok(faults) => faults,
        Err(error) => {
            return admin_error(
                StatusCode::BAD_REQUEST,
                &format!("not a StatementFaults object: {error}"),
            );
        }
    };
    if let Err(reason) = faults.validate() {
        return admin_error(StatusCode::BAD_REQUEST, &reason);
    }
    tracing::info!(?faults, "sandbox statement faults set");
    sandbox.statements.set_faults(faults);
    axum::Json(faults).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{SandboxConfig, SandboxGateway};

    fn line(out_bill_no: &str, fen: i64) -> StatementLine {
        StatementLine {
            out_bill_no: out_bill_no.to_owned(),
            gateway_ref: format!("1330{out_bill_no}"),
            kind: StatementLineKind::Payout,
            amount: AmountFen(fen),
            occurred_at: NaiveDate::from_ymd_opt(2024, 5, 1)
                .unwrap()
                .and_hms_opt(9, 0, 0)
                .unwrap(),
            business_type: WECHAT.payout.to_owned(),
        }
    }

    #[test]
    fn each_knob_strikes_its_own_payouts_in_bill_number_order() {
        let lines = ["wd05", "wd01", "wd04", "wd02", "wd03"]
            .iter()
            .map(|no| line(no, 1000))
            .collect();
        let faults = StatementFaults {
            drop_lines: 1,
            wrong_amount_lines: 2,
            flip_state_lines: 1,
            extra_lines: 2,
            ..StatementFaults::default()
        };
        let date = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
        let out = with_faults(lines, faults, date, &WECHAT);
        let seen: Vec<_> = out
            .iter()
            .map(|line| (line.out_bill_no.as_str(), line.kind.clone(), line.amount.0))
            .collect();
        use StatementLineKind::{Payout, Return};
        assert_eq!(
            seen,
            vec![
                ("wd02", Payout, 1100),
                ("wd03", Payout, 1100),
                ("wd04", Payout, 1000),
                ("wd05", Payout, 1000),
                ("wd04", Return, 1000),
                ("sbxextra0001", Payout, 100),
                ("sbxextra0002", Payout, 100),
            ]
        );
    }

    #[test]
    fn a_duplicated_payout_shows_twice_and_a_dropped_return_not_at_all() {
        let mut lines: Vec<StatementLine> = ["wd02", "wd01", "wd03"]
            .iter()
            .map(|no| line(no, 1000))
            .collect();
        for no in ["wd03", "wd01"] {
            lines.push(StatementLine {
                kind: StatementLineKind::Return,
                ..line(no, 1000)
            });
        }
        let faults = StatementFaults {
            duplicate_lines: 1,
            drop_returns: 1,
            ..StatementFaults::default()
        };
        let date = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
        let mut seen: Vec<_> = with_faults(lines, faults, date, &WECHAT)
            .iter()
            .map(|line| (line.out_bill_no.clone(), line.kind.clone()))
            .collect();
        seen.sort_by(|a, b| (&a.0, a.1.is_income()).cmp(&(&b.0, b.1.is_income())));
        use StatementLineKind::{Payout, Return};
        let expected: Vec<(String, StatementLineKind)> = [
            ("wd01", Payout),
            ("wd01", Payout),
            ("wd02", Payout),
            ("wd03", Payout),
            ("wd03", Return),
        ]
        .into_iter()
        .map(|(no, kind)| (no.to_owned(), kind))
        .collect();
        assert_eq!(seen, expected);
    }

    fn ledger_bill(
        out_bill_no: &str,
        channel: Channel,
        paid_at: &str,
        returned_at: Option<&str>,
        fee_fen: i64,
    ) -> crate::sandbox::LedgerBill {
        crate::sandbox::LedgerBill {
            out_bill_no: out_bill_no.to_owned(),
            transfer_bill_no: format!("order-{out_bill_no}"),
            amount_fen: 500,
            state: crate::wechat::BillState::Success,
            fail_reason: None,
            openid_hash: String::new(),
            create_count: 1,
            paid_times: 1,
            callbacks_delivered: 0,
            channel,
            order_id: format!("order-{out_bill_no}"),
            alipay_status: None,
            paid_at: Some(paid_at.to_owned()),
            returned: returned_at.is_some(),
            returned_at: returned_at.map(str::to_owned),
            order_fee_fen: fee_fen,
        }
    }

    #[test]
    fn a_line_is_on_the_china_day_of_its_stamp_and_on_its_rails_statement() {
        let ledger = SandboxLedger {
            bills: vec![
                // 23:30 China time on 1 May, though 15:30 UTC; returned on
                // 2 May.
                ledger_bill(
                    "wd01",
                    Channel::Bank,
                    "2024-05-01T15:30:00.000Z",
                    Some("2024-05-02T09:00:00.000+08:00"),
                    200,
                ),
                ledger_bill(
                    "wd02",
                    Channel::Alipay,
                    "2024-05-01T10:00:00+08:00",
                    None,
                    0,
                ),
                ledger_bill(
                    "wd03",
                    Channel::Wechat,
                    "2024-05-01T10:00:00+08:00",
                    None,
                    0,
                ),
            ],
            total_paid_fen: 0,
            paid_count: 0,
            total_returned_fen: 0,
            returned_count: 0,
            channels: Vec::new(),
        };
        let day = |d| NaiveDate::from_ymd_opt(2024, 5, d).unwrap();
        let seen = |channels: &[Channel], date, dialect| {
            ledger_lines(&ledger, channels, date, dialect)
                .into_iter()
                .map(|line| {
                    (
                        line.out_bill_no,
                        line.gateway_ref,
                        line.kind,
                        line.amount.0,
                        line.occurred_at.to_string(),
                    )
                })
                .collect::<Vec<_>>()
        };
        use StatementLineKind::{Fee, Payout, Return};
        let alipay = [Channel::Alipay, Channel::Bank];
        assert_eq!(
            seen(&alipay, day(1), &ALIPAY),
            vec![
                (
                    "wd01".into(),
                    "order-wd01".into(),
                    Payout,
                    500,
                    "2024-05-01 23:30:00".into()
                ),
                (
                    "wd01".into(),
                    "order-wd01".into(),
                    Fee,
                    200,
                    "2024-05-01 23:30:00".into()
                ),
                (
                    "wd02".into(),
                    "order-wd02".into(),
                    Payout,
                    500,
                    "2024-05-01 10:00:00".into()
                ),
            ]
        );
        assert_eq!(
            seen(&alipay, day(2), &ALIPAY),
            vec![(
                "wd01".into(),
                "order-wd01".into(),
                Return,
                500,
                "2024-05-02 09:00:00".into()
            )]
        );
        assert_eq!(
            seen(&[Channel::Wechat], day(1), &WECHAT),
            vec![(
                "wd03".into(),
                "order-wd03".into(),
                Payout,
                500,
                "2024-05-01 10:00:00".into()
            )]
        );
        // WeChat writes no fee line even for a bill that had one.
        let mut wechat_fee = ledger.clone();
        wechat_fee.bills[2].order_fee_fen = 7;
        assert_eq!(
            ledger_lines(&wechat_fee, &[Channel::Wechat], day(1), &WECHAT).len(),
            1
        );
    }

    #[tokio::test]
    async fn the_alipay_bill_url_serves_a_csv_zip_without_a_signature() {
        let sandbox = SandboxGateway::start(SandboxConfig::default())
            .await
            .unwrap();
        sandbox
            .set_statement_faults(StatementFaults {
                extra_lines: 2,
                ..StatementFaults::default()
            })
            .unwrap();
        let today = china_today(&sandbox.sandbox);
        let url = alipay_bill_download_url(&sandbox.sandbox, sandbox.base_url(), today).unwrap();
        let zip = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
        let statement = alipay_signcustomer::parse(today, &zip).unwrap();
        let numbers: Vec<_> = statement
            .lines
            .iter()
            .map(|line| line.out_bill_no.as_str())
            .collect();
        assert_eq!(numbers, ["sbxextra0001", "sbxextra0002"]);
        assert_eq!(statement.summary.expense, AmountFen(200));
        assert_eq!(
            alipay_bill_download_url(
                &sandbox.sandbox,
                sandbox.base_url(),
                today.succ_opt().unwrap()
            ),
            Err(BillRefusal::NotReady)
        );
        sandbox.shutdown().await;
    }
}
