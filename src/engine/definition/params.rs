//! Typed `[steps.params]`: which keys each step kind takes, of which type
//! and in which range. They are parsed with the rest of a definition, so
//! `fenrun workflows check` and `fenrun serve` refuse the same files, each
//! mistake as `file:line: what is wrong`. A key left out is `None`; the
//! engine that runs the step supplies its default.

use std::collections::BTreeMap;
use std::ops::{Range, RangeInclusive};

use toml::Spanned;

use chrono::NaiveTime;

use super::{DefinitionError, Source, StepKind};
use crate::domain::money::{Money, Rate};
use crate::domain::payout_cycle::{PayoutCycle, parse_weekday};

/// A step's parameters as written in its file: each value with its place.
pub(super) type RawParams = Spanned<BTreeMap<String, Spanned<toml::Value>>>;

/// Hours of a review look-back window (new distributor, changed account,
/// recent clawback): a window over a year flags everyone, so it is a typo.
const REVIEW_WINDOW_HOURS_RANGE: RangeInclusive<i64> = 1..=24 * 366;
/// Withdrawals within 24 h that raise the "many withdrawals" flag.
const MANY_WITHDRAWALS_RANGE: RangeInclusive<i64> = 1..=1_000;
/// How long a bill waits for news before the poller asks the gateway, in
/// ms: under a second the poller would query bills whose callback is
/// still on its way; over an hour a lost callback leaves money in limbo.
const POLL_INTERVAL_MS_RANGE: RangeInclusive<i64> = 1_000..=3_600_000;
/// Bills asked about per polling round; one round is one transaction each.
const POLL_BATCH_SIZE_RANGE: RangeInclusive<i64> = 1..=10_000;
/// Hours a payee has to accept a transfer (WeChat's bills expire after
/// about a day); a month is the most any gateway keeps a bill open.
const PAYEE_CONFIRMATION_HOURS_RANGE: RangeInclusive<i64> = 1..=24 * 30;

/// The parameters of a step, by its kind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StepParams {
    /// The kind takes no parameters.
    #[default]
    None,
    ReserveFunds(ReserveParams),
    WithholdTax(WithholdTaxParams),
    Review(ReviewParams),
    Confirm(ConfirmParams),
    Transfer(TransferParams),
}

/// `reserve_funds`: the request's amount limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReserveParams {
    /// The smallest withdrawal; above zero.
    pub minimum: Option<Money>,
    /// The most one distributor may withdraw per local day.
    pub daily_limit: Option<Money>,
}

/// `withhold_tax`: the express fee (the tax itself follows the law).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WithholdTaxParams {
    pub express_fee: Option<Rate>,
}

/// `review`: when a withdrawal waits for ops instead of going at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReviewParams {
    pub auto_approve_limit: Option<Money>,
    pub new_distributor_hours: Option<i64>,
    pub account_change_hours: Option<i64>,
    pub many_withdrawals_per_day: Option<u32>,
    pub clawback_lookback_hours: Option<i64>,
}

/// `confirm`: polling for news and how long a payee may take.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfirmParams {
    pub poll_interval_ms: Option<u64>,
    pub poll_batch_size: Option<i64>,
    pub payee_confirmation_hours: Option<i64>,
}

/// `transfer`: the settlement cycle standard withdrawals wait for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransferParams {
    /// `cycle` with its `weekday` (weekly) or `monthly_day` (monthly).
    pub cycle: Option<PayoutCycle>,
    /// `cutoff`, the local time of day ("15:00") in the workflow's zone.
    pub cutoff: Option<NaiveTime>,
}

/// The `cycle` names a transfer step takes.
const CYCLE_NAMES: &str = "immediate, daily, weekly, semi-monthly, monthly";
/// The days a monthly cycle may name; a shorter month sends on its last day.
const MONTHLY_DAY_RANGE: RangeInclusive<i64> = 1..=31;

/// The keys a kind takes, for the message that refuses any other.
fn known_keys(kind: StepKind) -> &'static [&'static str] {
    match kind {
        StepKind::ReserveFunds => &["minimum", "daily_limit"],
        StepKind::WithholdTax => &["express_fee"],
        StepKind::Review => &[
            "auto_approve_limit",
            "new_distributor_hours",
            "account_change_hours",
            "many_withdrawals_per_day",
            "clawback_lookback_hours",
        ],
        StepKind::Confirm => &[
            "poll_interval_ms",
            "poll_batch_size",
            "payee_confirmation_hours",
        ],
        StepKind::Transfer => &["cycle", "cutoff", "weekday", "monthly_day"],
        StepKind::IngestOrder
        | StepKind::Hold
        | StepKind::ReleaseCommission
        | StepKind::Refund
        | StepKind::Certificate
        | StepKind::Notify => &[],
    }
}

impl Source<'_> {
    /// Parses a step's `[steps.params]` for its kind: every key known, of
    /// the right type, in range.
    pub(super) fn params(
        &self,
        kind: StepKind,
        raw: Option<&RawParams>,
    ) -> Result<StepParams, DefinitionError> {
        let Some(raw) = raw else {
            return Ok(StepParams::None);
        };
        let known = known_keys(kind);
        for (key, value) in raw.get_ref() {
            if known.contains(&key.as_str()) {
                continue;
            }
            let message = if known.is_empty() {
                format!("a {kind} step takes no `[steps.params]`, yet it has `{key}`")
            } else {
                format!(
                    "unknown parameter `{key}` for a {kind} step; it takes {}",
                    known.join(", ")
                )
            };
            return Err(self.bad_value(value.span(), message));
        }
        let values = raw.get_ref();
        let value = |key: &str| values.get(key);
        Ok(match kind {
            StepKind::ReserveFunds => StepParams::ReserveFunds(ReserveParams {
                minimum: value("minimum")
                    .map(|v| self.positive_money("minimum", v))
                    .transpose()?,
                daily_limit: value("daily_limit")
                    .map(|v| self.positive_money("daily_limit", v))
                    .transpose()?,
            }),
            StepKind::WithholdTax => StepParams::WithholdTax(WithholdTaxParams {
                express_fee: value("express_fee")
                    .map(|v| self.percent("express_fee", v))
                    .transpose()?,
            }),
            StepKind::Review => StepParams::Review(ReviewParams {
                auto_approve_limit: value("auto_approve_limit")
                    .map(|v| self.money("auto_approve_limit", v))
                    .transpose()?,
                new_distributor_hours: self.whole(
                    "new_distributor_hours",
                    value,
                    REVIEW_WINDOW_HOURS_RANGE,
                    "hours",
                )?,
                account_change_hours: self.whole(
                    "account_change_hours",
                    value,
                    REVIEW_WINDOW_HOURS_RANGE,
                    "hours",
                )?,
                many_withdrawals_per_day: self
                    .whole(
                        "many_withdrawals_per_day",
                        value,
                        MANY_WITHDRAWALS_RANGE,
                        "withdrawals",
                    )?
                    .map(|n| u32::try_from(n).expect("range-checked to fit in u32")),
                clawback_lookback_hours: self.whole(
                    "clawback_lookback_hours",
                    value,
                    REVIEW_WINDOW_HOURS_RANGE,
                    "hours",
                )?,
            }),
            StepKind::Confirm => StepParams::Confirm(ConfirmParams {
                poll_interval_ms: self
                    .whole(
                        "poll_interval_ms",
                        value,
                        POLL_INTERVAL_MS_RANGE,
                        "milliseconds",
                    )?
                    .map(|n| u64::try_from(n).expect("range-checked to be positive")),
                poll_batch_size: self.whole(
                    "poll_batch_size",
                    value,
                    POLL_BATCH_SIZE_RANGE,
                    "bills",
                )?,
                payee_confirmation_hours: self.whole(
                    "payee_confirmation_hours",
                    value,
                    PAYEE_CONFIRMATION_HOURS_RANGE,
                    "hours",
                )?,
            }),
            StepKind::Transfer => StepParams::Transfer(self.transfer(&value, raw)?),
            StepKind::IngestOrder
            | StepKind::Hold
            | StepKind::ReleaseCommission
            | StepKind::Refund
            | StepKind::Certificate
            | StepKind::Notify => StepParams::None,
        })
    }

    /// The transfer step's cycle: `weekday` only with a weekly one and
    /// required there, `monthly_day` likewise with a monthly one, and no
    /// `cutoff` for an immediate one (it has none).
    fn transfer<'v>(
        &self,
        value: &impl Fn(&str) -> Option<&'v Spanned<toml::Value>>,
        raw: &RawParams,
    ) -> Result<TransferParams, DefinitionError> {
        let cutoff = value("cutoff")
            .map(|v| {
                v.get_ref()
                    .as_str()
                    .filter(|text| text.len() == 5)
                    .and_then(|text| NaiveTime::parse_from_str(text, "%H:%M").ok())
                    .ok_or_else(|| {
                        self.bad_value(
                            v.span(),
                            "`cutoff` must be a local time of day in a string, from \"00:00\" to \"23:59\", such as \"15:00\"",
                        )
                    })
            })
            .transpose()?;
        let weekday = value("weekday")
            .map(|v| {
                v.get_ref()
                    .as_str()
                    .and_then(parse_weekday)
                    .map(|weekday| (weekday, v))
                    .ok_or_else(|| {
                        self.bad_value(
                            v.span(),
                            "`weekday` must be a lowercase English weekday in a string, such as \"monday\"",
                        )
                    })
            })
            .transpose()?;
        let monthly_day = self.whole("monthly_day", value, MONTHLY_DAY_RANGE, "days")?;
        let name = value("cycle")
            .map(|v| {
                v.get_ref().as_str().map(|name| (name, v)).ok_or_else(|| {
                    self.bad_value(
                        v.span(),
                        format!("`cycle` must be a string, one of {CYCLE_NAMES}"),
                    )
                })
            })
            .transpose()?;
        let cycle_line = name.map_or_else(|| raw.span(), |(_, v)| v.span());
        let needs = |key: &str, cycle: &str| {
            self.bad_value(cycle_line.clone(), format!("a {cycle} cycle needs `{key}`"))
        };
        let stray = |key: &str, span: Range<usize>, cycle: &str| {
            self.bad_value(span, format!("`{key}` does not apply to the {cycle} cycle"))
        };
        let cycle_name = name.map_or("daily", |(name, _)| name);
        if cycle_name != "weekly"
            && let Some((_, v)) = weekday
        {
            return Err(stray("weekday", v.span(), cycle_name));
        }
        if cycle_name != "monthly"
            && let Some(v) = value("monthly_day")
        {
            return Err(stray("monthly_day", v.span(), cycle_name));
        }
        if cycle_name == "immediate"
            && let Some(v) = value("cutoff")
        {
            return Err(stray("cutoff", v.span(), cycle_name));
        }
        let cycle = match name {
            None => None,
            Some((name, v)) => Some(match name {
                "immediate" => PayoutCycle::Immediate,
                "daily" => PayoutCycle::Daily,
                "weekly" => PayoutCycle::Weekly {
                    weekday: weekday.ok_or_else(|| needs("weekday", name))?.0,
                },
                "semi-monthly" => PayoutCycle::SemiMonthly,
                "monthly" => PayoutCycle::Monthly {
                    day: monthly_day
                        .map(|day| u32::try_from(day).expect("range-checked to 1..=31"))
                        .ok_or_else(|| needs("monthly_day", name))?,
                },
                other => {
                    return Err(self.bad_value(
                        v.span(),
                        format!("unknown cycle `{other}`; it is one of {CYCLE_NAMES}"),
                    ));
                }
            }),
        };
        Ok(TransferParams { cycle, cutoff })
    }

    fn money(&self, key: &str, value: &Spanned<toml::Value>) -> Result<Money, DefinitionError> {
        value
            .get_ref()
            .as_str()
            .and_then(|text| Money::parse(text).ok())
            .ok_or_else(|| {
                self.bad_value(
                    value.span(),
                    format!("`{key}` must be an amount in a string, such as \"10.00\""),
                )
            })
    }

    fn positive_money(
        &self,
        key: &str,
        value: &Spanned<toml::Value>,
    ) -> Result<Money, DefinitionError> {
        let money = self.money(key, value)?;
        if money.is_zero() {
            return Err(self.bad_value(value.span(), format!("`{key}` must be above zero")));
        }
        Ok(money)
    }

    fn percent(&self, key: &str, value: &Spanned<toml::Value>) -> Result<Rate, DefinitionError> {
        value
            .get_ref()
            .as_str()
            .and_then(|text| Rate::parse_percent(text).ok())
            .ok_or_else(|| {
                self.bad_value(
                    value.span(),
                    format!("`{key}` must be a percentage in a string, such as \"0.5%\""),
                )
            })
    }

    /// An optional whole number in `range`, named with its unit when refused.
    fn whole<'v>(
        &self,
        key: &str,
        value: impl Fn(&str) -> Option<&'v Spanned<toml::Value>>,
        range: RangeInclusive<i64>,
        unit: &str,
    ) -> Result<Option<i64>, DefinitionError> {
        let Some(value) = value(key) else {
            return Ok(None);
        };
        let span: Range<usize> = value.span();
        match value.get_ref().as_integer() {
            Some(number) if range.contains(&number) => Ok(Some(number)),
            _ => Err(self.bad_value(
                span,
                format!(
                    "`{key}` must be a whole number of {unit} from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }
}
