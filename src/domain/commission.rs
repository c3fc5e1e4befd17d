//! The commission lines of one order (分佣): who earns what, at which level,
//! from which part of the order. Pure: a [`Plan`], the order and its
//! beneficiary chain in, [`CommissionLine`]s out.
//!
//! ```text
//! items ─► drop excluded skus ─► per level k (1..=3), per beneficiary who earns:
//!            rate of each item (sku > category > grade, see Plan::rate)
//!            group items by rate ─► one line per (level, rate): base × rate, half-up
//!        ─► order cap: trim from level 3 up until the total fits ─► drop zero lines
//! ```
//!
//! A plan with v2 rules adds, in this order ([`compute_with`] and its
//! [`CommissionContext`], which carries what only the caller knows):
//!
//! ```text
//! rate (sku > category > grade) ─► tier replaces a level-1 grade rate
//!   ─► campaign multiplier (highest matching, at most 100%) ─► lines
//!   ─► order cap ─► daily cap per beneficiary ─► cleared: a zero line
//! ```
//!
//! and every line carries its [`RuleTrail`]: where its rate came from and
//! each fen a cap removed.
//!
//! Rounding happens once per line, on the line's summed base
//! ([`Money::times_rounded`]), never per item, so a distributor's line can be
//! recomputed from the `base` and `rate` it shows.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};

use crate::domain::ids::{BuyerId, DistributorId};
use crate::domain::money::{Money, Rate};
use crate::domain::plan::{MAX_LEVELS, Plan, RateSource};

/// One line of a confirmed order, as the shop sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderItem {
    pub sku: String,
    pub category: String,
    /// The amount paid for the line (after the shop's discounts).
    pub amount: Money,
}

/// What commission is computed from: who sold, who bought, what was paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// The attributed seller: level 1 of the chain.
    pub distributor_id: DistributorId,
    pub buyer_id: BuyerId,
    pub items: Vec<OrderItem>,
}

/// A distributor in the order's referral chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beneficiary {
    pub distributor_id: DistributorId,
    /// The distributor's grade key; one the plan does not know reads as the
    /// plan's default grade.
    pub grade: String,
    /// `false` for a distributor cleared from earning (清退, inactive): they
    /// get no line, and the levels below them are not moved up. (Under
    /// [`compute_with`], [`CommissionContext::cleared`] gives such a
    /// distributor an explained zero line instead.)
    pub earns: bool,
}

/// What one beneficiary earns at one level at one rate, with its source.
///
/// Invariants: `amount > 0`; `uncapped_amount = base × rate` rounded half-up;
/// `amount <= uncapped_amount`, and `capped` is true exactly when they differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommissionLine {
    pub beneficiary: DistributorId,
    /// 1 = the attributed distributor, 2 = their referrer, 3 = the referrer's
    /// referrer.
    pub level: u8,
    /// The sum of the item amounts paying this rate at this level.
    pub base: Money,
    pub rate: Rate,
    /// What the beneficiary is paid.
    pub amount: Money,
    /// `base × rate` before the order cap.
    pub uncapped_amount: Money,
    /// Whether the order cap (or, under [`compute_with`], the daily cap)
    /// reduced this line.
    pub capped: bool,
}

/// What the v2 rules of a plan need to know beyond the order and its chain;
/// domain does no I/O, so the caller looks these up. The default knows
/// nothing: no campaign applies, no sales earlier in the month, nothing
/// earned today, nobody cleared — for a plan without v2 rules, exactly what
/// [`compute`] pays.
///
/// Kept with the order (as JSON) so that a refund recomputes the order with
/// exactly what it saw when it was ingested.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionContext {
    /// When the buyer placed the order; campaigns match on it (`[from, to)`).
    /// `None`: no campaign applies.
    pub placed_at: Option<DateTime<Utc>>,
    /// The level-1 distributor's level-1 commissionable sales confirmed
    /// earlier in the same local month, net of refunds recorded so far. The
    /// tier is chosen by this plus the order's own commissionable amount.
    pub month_level1_sales_before: Money,
    /// What each beneficiary has already earned on the local day of this
    /// order's confirmation, all levels; missing means 0.00.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub earned_today: BTreeMap<DistributorId, Money>,
    /// Beneficiaries cleared (清退): each gets a zero line explained as
    /// [`RuleStep::Cleared`]; the others are paid as if they earned.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub cleared: BTreeSet<DistributorId>,
}

/// A commission line and why it is what it is. The line keeps the
/// invariants of [`CommissionLine`], except that a cleared beneficiary's line
/// ([`ExplainedLine::is_cleared`]) has a zero amount and rate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExplainedLine {
    #[serde(flatten)]
    pub line: CommissionLine,
    pub rule_trail: RuleTrail,
}

/// The steps that made a line, in the order they were applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RuleTrail(pub Vec<RuleStep>);

/// One step of a [`RuleTrail`]. Serialised with a `step` tag:
/// `{"step":"order_cap","removed":"5.00"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum RuleStep {
    /// How the rate of (part of) the line's base was found; a line whose
    /// items reached the same rate by different rules has one step each.
    Rate(RateDerivation),
    /// The beneficiary is cleared (清退) and earns nothing new: the line is
    /// zero.
    Cleared,
    /// The order cap took `removed` from this line.
    OrderCap { removed: Money },
    /// The daily cap took `removed` from this line: the beneficiary had
    /// earned `earned_before` that day, and the day may pay at most `cap`.
    DailyCap {
        removed: Money,
        earned_before: Money,
        cap: Money,
    },
}

/// How the rate of some of a line's items was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateDerivation {
    /// The part of the line's base paid at this derivation.
    pub base: Money,
    pub source: RateSource,
    /// The rate the source gave, before any tier or campaign.
    pub source_rate: Rate,
    /// The tier step that replaced a level-1 grade rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierUsed>,
    /// The campaign whose multiplier applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignUsed>,
    /// The rate paid: the tier's or the source's, times the multiplier, at
    /// most 100%.
    pub rate: Rate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierUsed {
    /// The step's `from`.
    pub from: Money,
    pub level1: Rate,
    /// The measure that chose the step: the month's level-1 sales, this
    /// order included.
    pub month_level1_sales: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignUsed {
    pub name: String,
    #[serde(
        serialize_with = "decimal_as_string",
        deserialize_with = "decimal_from_string"
    )]
    pub multiplier: Decimal,
}

fn decimal_as_string<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn decimal_from_string<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Decimal, D::Error> {
    let text = String::deserialize(deserializer)?;
    Decimal::from_str_exact(&text).map_err(serde::de::Error::custom)
}

impl RateDerivation {
    /// Whether `other` reached its rate by the same rules, so the two can
    /// share one step with their bases added.
    fn same_rules_as(&self, other: &RateDerivation) -> bool {
        (
            self.source,
            self.source_rate,
            &self.tier,
            &self.campaign,
            self.rate,
        ) == (
            other.source,
            other.source_rate,
            &other.tier,
            &other.campaign,
            other.rate,
        )
    }
}

impl ExplainedLine {
    /// Whether this is the zero line of a cleared beneficiary.
    pub fn is_cleared(&self) -> bool {
        self.rule_trail.0.contains(&RuleStep::Cleared)
    }

    /// The campaign that multiplied (part of) the line, if one did.
    pub fn campaign_name(&self) -> Option<&str> {
        self.rule_trail.0.iter().find_map(|step| match step {
            RuleStep::Rate(RateDerivation {
                campaign: Some(campaign),
                ..
            }) => Some(campaign.name.as_str()),
            _ => None,
        })
    }
}

impl RuleTrail {
    /// The trail as stored and shown: a JSON array of `step`-tagged objects.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a rule trail is plain data and always serialises")
    }
}

/// One line per step, `; `-separated: `grade 10% → tier from 10000.00 (month
/// 12000.00) 15% → 双11 ×2 = 30% on 100.00; order cap −5.00`.
impl fmt::Display for RuleTrail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, step) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

impl fmt::Display for RuleStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleStep::Rate(derivation) => {
                let source = match derivation.source {
                    RateSource::Grade => "grade",
                    RateSource::SkuOverride => "sku override",
                    RateSource::CategoryOverride => "category override",
                };
                write!(f, "{source} {}", derivation.source_rate)?;
                if let Some(tier) = &derivation.tier {
                    write!(
                        f,
                        " → tier from {} (month {}) {}",
                        tier.from, tier.month_level1_sales, tier.level1
                    )?;
                }
                if let Some(campaign) = &derivation.campaign {
                    write!(f, " → {} ×{}", campaign.name, campaign.multiplier)?;
                }
                write!(f, " = {} on {}", derivation.rate, derivation.base)
            }
            RuleStep::Cleared => f.write_str("cleared: earns nothing new"),
            RuleStep::OrderCap { removed } => write!(f, "order cap −{removed}"),
            RuleStep::DailyCap {
                removed,
                earned_before,
                cap,
            } => write!(
                f,
                "daily cap {cap} (earned {earned_before} before) −{removed}"
            ),
        }
    }
}

/// Why commissions could not be computed. All are bugs or absurd input from
/// the caller, never a property of a valid plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommissionError {
    #[error("commission arithmetic overflowed")]
    Overflow,
    #[error("the beneficiary chain has {found} distributors; at most {MAX_LEVELS} levels are paid")]
    ChainTooLong { found: usize },
    #[error("level 1 of the beneficiary chain is {found}, not the order's distributor {expected}")]
    ChainDoesNotStartAtSeller {
        expected: DistributorId,
        found: DistributorId,
    },
    #[error("distributor {0} appears twice in the beneficiary chain")]
    ChainRepeats(DistributorId),
    #[error("item {sku} has a negative amount")]
    NegativeAmount { sku: String },
}

/// The commission lines of `order` under `plan`, for `chain` (index 0 =
/// level 1 = `order.distributor_id`, then their referrer, then the
/// referrer's referrer; shorter when the chain ends).
///
/// - Excluded skus pay nothing and do not count toward the cap.
/// - One line per (level, rate), its amount rounded half-up once; lines
///   rounding to zero are left out.
/// - Self-purchase (buyer id = distributor id) pays no level 1 unless the plan
///   says so; levels 2 and 3 are paid either way.
/// - A beneficiary with `earns = false` gets no line; deeper levels stay put.
/// - Order cap: the total may not exceed the commissionable base × the plan's
///   `order_cap`, rounded half-up. The excess is trimmed from level 3 first,
///   then 2, then 1; within a level from the line with the largest amount
///   first (ties: the higher rate first). A trimmed line keeps its base and
///   rate and is marked `capped`; a line trimmed to zero is left out.
///
/// Lines come ordered by level, then by rate, highest first.
///
/// A plan's v2 rules are applied as [`compute_with`] does with a default
/// [`CommissionContext`]; for a plan without them this is the v1 computation.
pub fn compute(
    plan: &Plan,
    order: &Order,
    chain: &[Beneficiary],
) -> Result<Vec<CommissionLine>, CommissionError> {
    let lines = compute_with(plan, order, chain, &CommissionContext::default())?;
    Ok(lines.into_iter().map(|explained| explained.line).collect())
}

/// [`compute`] with a plan's v2 rules and an explanation of every line:
///
/// - the rate of an item at a level comes from [`Plan::rate_with_source`];
/// - at level 1, a rate from the grade is replaced by the plan's tier step
///   for `month_level1_sales_before` + this order's commissionable amount
///   (overrides still win);
/// - the highest multiplier among the campaigns matching `placed_at` and the
///   item's category multiplies the rate, at most to 100%;
/// - items paying the same rate share a line, as in [`compute`]; the order
///   cap trims as in [`compute`];
/// - the daily cap then trims each beneficiary's lines (largest first) so
///   `earned_today` + this order never passes it;
/// - a beneficiary in `cleared` (and with `earns`) gets one zero line at its
///   level whose trail is [`RuleStep::Cleared`]; no other line is zero.
pub fn compute_with(
    plan: &Plan,
    order: &Order,
    chain: &[Beneficiary],
    context: &CommissionContext,
) -> Result<Vec<ExplainedLine>, CommissionError> {
    check_chain(order, chain)?;
    if let Some(item) = order.items.iter().find(|item| item.amount.is_negative()) {
        return Err(CommissionError::NegativeAmount {
            sku: item.sku.clone(),
        });
    }

    let paid_items: Vec<&OrderItem> = order
        .items
        .iter()
        .filter(|item| !plan.is_excluded(&item.sku))
        .collect();
    let commissionable = Money::checked_sum(paid_items.iter().map(|item| item.amount))
        .ok_or(CommissionError::Overflow)?;
    let is_self_purchase = order.buyer_id.as_str() == order.distributor_id.as_str();
    let month_level1_sales = context
        .month_level1_sales_before
        .checked_add(commissionable)
        .ok_or(CommissionError::Overflow)?;

    let mut lines = Vec::new();
    let mut trails: Vec<Vec<RuleStep>> = Vec::new();
    let mut cleared_lines = Vec::new();
    for (level, beneficiary) in (1u8..).zip(chain) {
        let unpaid_self_purchase = level == 1 && is_self_purchase && !plan.self_purchase_pays();
        if !beneficiary.earns || unpaid_self_purchase {
            continue;
        }
        if context.cleared.contains(&beneficiary.distributor_id) {
            cleared_lines.push(ExplainedLine {
                line: CommissionLine {
                    beneficiary: beneficiary.distributor_id.clone(),
                    level,
                    base: commissionable,
                    rate: Rate::ZERO,
                    amount: Money::ZERO,
                    uncapped_amount: Money::ZERO,
                    capped: false,
                },
                rule_trail: RuleTrail(vec![RuleStep::Cleared]),
            });
            continue;
        }
        let mut by_rate: BTreeMap<Rate, (Money, Vec<RateDerivation>)> = BTreeMap::new();
        for item in &paid_items {
            let derivation =
                derive_rate(plan, context, beneficiary, item, level, month_level1_sales);
            if derivation.rate == Rate::ZERO {
                continue;
            }
            let (base, derivations) = by_rate
                .entry(derivation.rate)
                .or_insert((Money::ZERO, Vec::new()));
            *base = base
                .checked_add(item.amount)
                .ok_or(CommissionError::Overflow)?;
            match derivations
                .iter_mut()
                .find(|seen| seen.same_rules_as(&derivation))
            {
                Some(seen) => {
                    seen.base = seen
                        .base
                        .checked_add(item.amount)
                        .ok_or(CommissionError::Overflow)?;
                }
                None => derivations.push(derivation),
            }
        }
        for (rate, (base, derivations)) in by_rate.into_iter().rev() {
            let amount = base
                .times_rounded(rate)
                .map_err(|_| CommissionError::Overflow)?;
            if amount.is_zero() {
                continue;
            }
            lines.push(CommissionLine {
                beneficiary: beneficiary.distributor_id.clone(),
                level,
                base,
                rate,
                amount,
                uncapped_amount: amount,
                capped: false,
            });
            trails.push(derivations.into_iter().map(RuleStep::Rate).collect());
        }
    }

    let cap = commissionable
        .times_rounded(plan.order_cap())
        .map_err(|_| CommissionError::Overflow)?;
    for (index, removed) in apply_order_cap(&mut lines, cap)? {
        trails[index].push(RuleStep::OrderCap { removed });
    }
    if let Some(daily_cap) = plan.daily_cap() {
        for (index, step) in apply_daily_cap(&mut lines, daily_cap, &context.earned_today)? {
            trails[index].push(step);
        }
    }

    let mut explained: Vec<ExplainedLine> = lines
        .into_iter()
        .zip(trails)
        .filter(|(line, _)| !line.amount.is_zero())
        .map(|(line, trail)| ExplainedLine {
            line,
            rule_trail: RuleTrail(trail),
        })
        .chain(cleared_lines)
        .collect();
    // Stable: within a level the lines keep their rate order.
    explained.sort_by_key(|explained| explained.line.level);
    Ok(explained)
}

/// The rate `beneficiary` earns at `level` on `item`, and how it was found.
fn derive_rate(
    plan: &Plan,
    context: &CommissionContext,
    beneficiary: &Beneficiary,
    item: &OrderItem,
    level: u8,
    month_level1_sales: Money,
) -> RateDerivation {
    let (source_rate, source) =
        plan.rate_with_source(&beneficiary.grade, &item.sku, &item.category, level);
    let tier = match (level, source, plan.tier_for(month_level1_sales)) {
        (1, RateSource::Grade, Some(step)) => Some(TierUsed {
            from: step.from(),
            level1: step.level1(),
            month_level1_sales,
        }),
        _ => None,
    };
    let before_campaign = tier.as_ref().map_or(source_rate, |tier| tier.level1);
    // The highest multiplier; among equals the first in the file.
    let campaign = context.placed_at.and_then(|placed_at| {
        plan.campaigns()
            .iter()
            .rev()
            .filter(|campaign| campaign.applies(placed_at, &item.category))
            .max_by_key(|campaign| campaign.multiplier())
    });
    let rate = match campaign {
        // A multiplied rate past 100% pays 100%; the order cap trims it.
        Some(campaign) => before_campaign
            .scaled(campaign.multiplier())
            .unwrap_or_else(|_| full_rate()),
        None => before_campaign,
    };
    RateDerivation {
        base: item.amount,
        source,
        source_rate,
        tier,
        campaign: campaign.map(|campaign| CampaignUsed {
            name: campaign.name().to_owned(),
            multiplier: campaign.multiplier(),
        }),
        rate,
    }
}

/// 100%: the most a rate multiplied by a campaign may pay.
fn full_rate() -> Rate {
    Rate::from_fraction(Decimal::ONE).expect("100% is within 0%–100%")
}

fn check_chain(order: &Order, chain: &[Beneficiary]) -> Result<(), CommissionError> {
    if chain.len() > MAX_LEVELS {
        return Err(CommissionError::ChainTooLong { found: chain.len() });
    }
    if let Some(first) = chain.first()
        && first.distributor_id != order.distributor_id
    {
        return Err(CommissionError::ChainDoesNotStartAtSeller {
            expected: order.distributor_id.clone(),
            found: first.distributor_id.clone(),
        });
    }
    for (index, beneficiary) in chain.iter().enumerate() {
        if chain[..index]
            .iter()
            .any(|earlier| earlier.distributor_id == beneficiary.distributor_id)
        {
            return Err(CommissionError::ChainRepeats(
                beneficiary.distributor_id.clone(),
            ));
        }
    }
    Ok(())
}

/// Trims `lines` until their total is at most `cap`: deepest level first,
/// then the largest amount, then the highest rate (lines of one level have
/// distinct rates, so the order is total and the result deterministic).
/// Returns what was removed from each trimmed line.
fn apply_order_cap(
    lines: &mut [CommissionLine],
    cap: Money,
) -> Result<Vec<(usize, Money)>, CommissionError> {
    let all: Vec<usize> = (0..lines.len()).collect();
    trim_to(lines, &all, cap)
}

/// Trims each beneficiary's lines so that what they earned earlier that day
/// plus this order stays within `cap`; returns each trim as its trail step.
fn apply_daily_cap(
    lines: &mut [CommissionLine],
    cap: Money,
    earned_today: &BTreeMap<DistributorId, Money>,
) -> Result<Vec<(usize, RuleStep)>, CommissionError> {
    let mut by_beneficiary: BTreeMap<&DistributorId, Vec<usize>> = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        by_beneficiary
            .entry(&line.beneficiary)
            .or_default()
            .push(index);
    }
    let groups: Vec<(DistributorId, Vec<usize>)> = by_beneficiary
        .into_iter()
        .map(|(beneficiary, indices)| (beneficiary.clone(), indices))
        .collect();
    let mut steps = Vec::new();
    for (beneficiary, indices) in groups {
        let earned_before = earned_today
            .get(&beneficiary)
            .copied()
            .unwrap_or(Money::ZERO);
        let room = cap
            .checked_sub(earned_before)
            .ok_or(CommissionError::Overflow)?
            .max(Money::ZERO);
        for (index, removed) in trim_to(lines, &indices, room)? {
            steps.push((
                index,
                RuleStep::DailyCap {
                    removed,
                    earned_before,
                    cap,
                },
            ));
        }
    }
    Ok(steps)
}

/// Trims the lines at `indices` until their total is at most `limit` (not
/// negative): deepest level first, then the largest amount, then the highest
/// rate. Returns what was removed from each trimmed line.
fn trim_to(
    lines: &mut [CommissionLine],
    indices: &[usize],
    limit: Money,
) -> Result<Vec<(usize, Money)>, CommissionError> {
    let total = Money::checked_sum(indices.iter().map(|&index| lines[index].amount))
        .ok_or(CommissionError::Overflow)?;
    let mut excess = total
        .checked_sub(limit)
        .ok_or(CommissionError::Overflow)?
        .max(Money::ZERO);
    let mut removed = Vec::new();
    if excess.is_zero() {
        return Ok(removed);
    }

    let mut trim_order = indices.to_vec();
    trim_order.sort_by_key(|&index| {
        let line = &lines[index];
        Reverse((line.level, line.amount, line.rate))
    });
    for index in trim_order {
        if excess.is_zero() {
            break;
        }
        let line = &mut lines[index];
        let trim = line.amount.min(excess);
        if trim.is_zero() {
            // Already trimmed to nothing by an earlier cap.
            continue;
        }
        line.amount = line
            .amount
            .checked_sub(trim)
            .ok_or(CommissionError::Overflow)?;
        line.capped = true;
        excess = excess.checked_sub(trim).ok_or(CommissionError::Overflow)?;
        removed.push((index, trim));
    }
    // The limit is never negative (amounts and rates are not), so the lines
    // always hold enough to absorb the excess.
    assert!(excess.is_zero(), "cap excess left after trimming");
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grades as in the shipped default, a high-paying `star` grade for cap
    /// tests, and overrides for the precedence tests.
    const PLAN: &str = r#"
name = "test"
default_grade = "regular"
excluded_skus = ["GIFT"]

[grades.regular]
levels = ["10%", "5%", "2%"]

[grades.gold]
levels = ["12%", "6%", "3%"]

[grades.partner]
levels = ["15%", "8%", "3%"]

[[overrides]]
category = "books"
levels = ["4%", "2%", "1%"]

[[overrides]]
category = "books"
grade = "gold"
levels = ["7%", "3.5%"]

[[overrides]]
sku = "RARE-BOOK"
levels = ["20%", "1%"]

[[overrides]]
sku = "RARE-BOOK"
grade = "partner"
levels = ["25%"]
"#;

    fn plan() -> Plan {
        Plan::parse(PLAN, "test.toml").unwrap()
    }

    fn plan_with(extra_top_level: &str, star_levels: &str) -> Plan {
        let text = format!("{extra_top_level}\n{PLAN}\n[grades.star]\nlevels = {star_levels}\n");
        Plan::parse(&text, "test.toml").unwrap()
    }

    fn money(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn id(text: &str) -> DistributorId {
        DistributorId::parse(text).unwrap()
    }

    fn item(sku: &str, category: &str, amount: &str) -> OrderItem {
        OrderItem {
            sku: sku.to_owned(),
            category: category.to_owned(),
            amount: money(amount),
        }
    }

    fn order(items: Vec<OrderItem>) -> Order {
        Order {
            distributor_id: id("a"),
            buyer_id: BuyerId::parse("buyer").unwrap(),
            items,
        }
    }

    fn who(distributor: &str, grade: &str) -> Beneficiary {
        Beneficiary {
            distributor_id: id(distributor),
            grade: grade.to_owned(),
            earns: true,
        }
    }

    /// The chain a ← b ← c with the given grades.
    fn chain(grades: [&str; 3]) -> Vec<Beneficiary> {
        vec![
            who("a", grades[0]),
            who("b", grades[1]),
            who("c", grades[2]),
        ]
    }

    /// A line as (beneficiary, level, base, rate, amount), for readable asserts.
    type Summary = (String, u8, String, String, String);

    fn summary(lines: &[CommissionLine]) -> Vec<Summary> {
        lines
            .iter()
            .map(|line| {
                (
                    line.beneficiary.to_string(),
                    line.level,
                    line.base.to_string(),
                    line.rate.to_string(),
                    line.amount.to_string(),
                )
            })
            .collect()
    }

    fn line(who: &str, level: u8, base: &str, rate: &str, amount: &str) -> Summary {
        (
            who.to_owned(),
            level,
            base.to_owned(),
            rate.to_owned(),
            amount.to_owned(),
        )
    }

    #[test]
    fn a_three_level_tree_pays_each_level_at_its_own_grade_rate() {
        let lines = compute(
            &plan(),
            &order(vec![item("T1", "toys", "199.00")]),
            &chain(["partner", "gold", "regular"]),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                line("a", 1, "199.00", "15%", "29.85"),
                line("b", 2, "199.00", "6%", "11.94"),
                line("c", 3, "199.00", "2%", "3.98"),
            ]
        );
        assert!(lines.iter().all(|line| !line.capped));
    }

    #[test]
    fn a_sku_override_beats_a_category_override_which_beats_the_grade_rate() {
        let lines = compute(
            &plan(),
            &order(vec![
                item("RARE-BOOK", "books", "100.00"),
                item("NOVEL", "books", "50.00"),
                item("T1", "toys", "10.00"),
            ]),
            &chain(["regular", "regular", "regular"]),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                line("a", 1, "100.00", "20%", "20.00"),
                line("a", 1, "10.00", "10%", "1.00"),
                line("a", 1, "50.00", "4%", "2.00"),
                line("b", 2, "10.00", "5%", "0.50"),
                line("b", 2, "50.00", "2%", "1.00"),
                line("b", 2, "100.00", "1%", "1.00"),
                // The sku override lists no level 3, so the rare book pays
                // nothing there even though its category would.
                line("c", 3, "10.00", "2%", "0.20"),
                line("c", 3, "50.00", "1%", "0.50"),
            ]
        );
    }

    #[test]
    fn a_grade_specific_override_beats_a_grade_less_one_for_that_grade_only() {
        let items = vec![
            item("RARE-BOOK", "books", "100.00"),
            item("NOVEL", "books", "100.00"),
        ];
        let lines = compute(
            &plan(),
            &order(items),
            &chain(["partner", "gold", "regular"]),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                // partner: sku + partner (25%) for the rare book; the novel
                // has no partner override so the category's 4%.
                line("a", 1, "100.00", "25%", "25.00"),
                line("a", 1, "100.00", "4%", "4.00"),
                // gold: sku for all grades (1%) beats category + gold (3.5%).
                line("b", 2, "100.00", "3.5%", "3.50"),
                line("b", 2, "100.00", "1%", "1.00"),
                // regular: the category's 1% for the novel; the rare book's
                // sku override has no level 3.
                line("c", 3, "100.00", "1%", "1.00"),
            ]
        );
    }

    #[test]
    fn items_paying_the_same_rate_share_one_line_rounded_once() {
        // Per item, 0.25 × 2% = 0.005 would round up to 0.01 twice; as one
        // line 0.50 × 2% = 0.01 once.
        let lines = compute(
            &plan(),
            &order(vec![item("T1", "toys", "0.25"), item("T2", "toys", "0.25")]),
            &[
                who("a", "regular"),
                who("b", "regular"),
                who("c", "regular"),
            ],
        )
        .unwrap();
        let level_3: Vec<_> = lines.iter().filter(|line| line.level == 3).collect();
        assert_eq!(level_3.len(), 1);
        assert_eq!(level_3[0].base, money("0.50"));
        assert_eq!(level_3[0].amount, money("0.01"));
    }

    #[test]
    fn excluded_skus_pay_nothing_and_do_not_count_toward_the_cap() {
        let plan = plan_with("order_cap = \"10%\"", "[\"10%\"]");
        let lines = compute(
            &plan,
            &order(vec![
                item("GIFT", "cards", "500.00"),
                item("T1", "toys", "100.00"),
            ]),
            &chain(["regular", "regular", "regular"]),
        )
        .unwrap();
        // Base 100.00, cap 10.00: level 1 alone reaches it, so 2 and 3 go.
        assert_eq!(
            summary(&lines),
            vec![line("a", 1, "100.00", "10%", "10.00")]
        );
    }

    #[test]
    fn the_cap_trims_level_three_first_then_level_two() {
        // star pays 20% / 10% / 10% = 40% against a 30% cap.
        let plan = plan_with("", "[\"20%\", \"10%\", \"10%\"]");
        let lines = compute(
            &plan,
            &order(vec![item("T1", "toys", "100.00")]),
            &chain(["star", "star", "star"]),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                line("a", 1, "100.00", "20%", "20.00"),
                line("b", 2, "100.00", "10%", "10.00"),
            ]
        );
        assert!(!lines[0].capped && !lines[1].capped);
    }

    #[test]
    fn the_cap_can_stop_partway_through_level_two() {
        let plan = plan_with("order_cap = \"25%\"", "[\"20%\", \"10%\", \"10%\"]");
        let lines = compute(
            &plan,
            &order(vec![item("T1", "toys", "100.00")]),
            &chain(["star", "star", "star"]),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                line("a", 1, "100.00", "20%", "20.00"),
                line("b", 2, "100.00", "10%", "5.00"),
            ]
        );
        assert!(!lines[0].capped);
        assert!(lines[1].capped);
        assert_eq!(lines[1].uncapped_amount, money("10.00"));
    }

    #[test]
    fn within_a_level_the_cap_trims_the_largest_line_first() {
        // Level 2 for a star: toys 10% of 100 = 10.00, books (category
        // override) 2% of 100 = 2.00. Level 3: 10.00 + 1.00.
        // Total 20 + 4 + 10 + 2 + 10 + 1 = 47.00; cap 30% of 200 = 60.00 is
        // not reached, so lower it to 15% = 30.00: excess 17.00 takes level 3
        // (11.00) and then 6.00 from the larger level-2 line.
        let plan = plan_with("order_cap = \"15%\"", "[\"20%\", \"10%\", \"10%\"]");
        let lines = compute(
            &plan,
            &order(vec![
                item("T1", "toys", "100.00"),
                item("NOVEL", "books", "100.00"),
            ]),
            &chain(["star", "star", "star"]),
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                line("a", 1, "100.00", "20%", "20.00"),
                line("a", 1, "100.00", "4%", "4.00"),
                line("b", 2, "100.00", "10%", "4.00"),
                line("b", 2, "100.00", "2%", "2.00"),
            ]
        );
        assert_eq!(
            lines.iter().map(|line| line.capped).collect::<Vec<_>>(),
            vec![false, false, true, false]
        );
        let total = Money::checked_sum(lines.iter().map(|line| line.amount)).unwrap();
        assert_eq!(total, money("30.00"));
    }

    #[test]
    fn a_self_purchase_pays_no_level_one_unless_the_plan_says_so() {
        let mut self_purchase = order(vec![item("T1", "toys", "100.00")]);
        self_purchase.buyer_id = BuyerId::parse("a").unwrap();
        let tree = chain(["regular", "regular", "regular"]);

        let lines = compute(&plan(), &self_purchase, &tree).unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                line("b", 2, "100.00", "5%", "5.00"),
                line("c", 3, "100.00", "2%", "2.00"),
            ]
        );

        let paying = plan_with("self_purchase_pays = true", "[]");
        let lines = compute(&paying, &self_purchase, &tree).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].level, 1);
        assert_eq!(lines[0].amount, money("10.00"));
    }

    #[test]
    fn a_cleared_distributor_in_the_middle_gets_nothing_and_level_three_stays_level_three() {
        let mut tree = chain(["regular", "partner", "regular"]);
        tree[1].earns = false;
        let lines = compute(&plan(), &order(vec![item("T1", "toys", "100.00")]), &tree).unwrap();
        assert_eq!(
            summary(&lines),
            vec![
                line("a", 1, "100.00", "10%", "10.00"),
                line("c", 3, "100.00", "2%", "2.00"),
            ]
        );
    }

    #[test]
    fn rounding_is_half_up_on_a_tie_and_down_just_below_it() {
        let tree = [who("a", "regular"), who("b", "regular")];
        // 0.50 × 5% = 0.025 → 0.03
        let lines = compute(&plan(), &order(vec![item("T1", "toys", "0.50")]), &tree).unwrap();
        assert_eq!(lines[1].level, 2);
        assert_eq!(lines[1].amount, money("0.03"));
        // 0.49 × 5% = 0.0245 → 0.02
        let lines = compute(&plan(), &order(vec![item("T1", "toys", "0.49")]), &tree).unwrap();
        assert_eq!(lines[1].amount, money("0.02"));
    }

    #[test]
    fn a_grade_the_plan_does_not_know_is_paid_as_the_default_grade() {
        let lines = compute(
            &plan(),
            &order(vec![item("T1", "toys", "100.00")]),
            &[who("a", "diamond")],
        )
        .unwrap();
        assert_eq!(
            summary(&lines),
            vec![line("a", 1, "100.00", "10%", "10.00")]
        );
    }

    #[test]
    fn nothing_to_pay_gives_no_lines() {
        let tree = chain(["regular", "regular", "regular"]);
        // No items.
        assert!(compute(&plan(), &order(vec![]), &tree).unwrap().is_empty());
        // Only excluded items.
        let gift = order(vec![item("GIFT", "cards", "100.00")]);
        assert!(compute(&plan(), &gift, &tree).unwrap().is_empty());
        // Amounts that round to zero: 0.04 × 10% = 0.004.
        let tiny = order(vec![item("T1", "toys", "0.04")]);
        assert!(compute(&plan(), &tiny, &tree).unwrap().is_empty());
        // Zero-amount items.
        let free = order(vec![item("T1", "toys", "0.00")]);
        assert!(compute(&plan(), &free, &tree).unwrap().is_empty());
        // No chain at all.
        let paid = order(vec![item("T1", "toys", "100.00")]);
        assert!(compute(&plan(), &paid, &[]).unwrap().is_empty());
        // A grade with no levels.
        let silent = plan_with("", "[]");
        assert!(
            compute(&silent, &paid, &[who("a", "star")])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_malformed_chain_or_order_is_an_error_not_a_panic() {
        let paid = order(vec![item("T1", "toys", "100.00")]);
        let mut four = chain(["regular", "regular", "regular"]);
        four.push(who("d", "regular"));
        assert_eq!(
            compute(&plan(), &paid, &four),
            Err(CommissionError::ChainTooLong { found: 4 })
        );
        assert!(matches!(
            compute(&plan(), &paid, &[who("z", "regular")]),
            Err(CommissionError::ChainDoesNotStartAtSeller { .. })
        ));
        assert_eq!(
            compute(&plan(), &paid, &[who("a", "regular"), who("a", "gold")]),
            Err(CommissionError::ChainRepeats(id("a")))
        );
        let mut negative = paid.clone();
        negative.items[0].amount = Money::from_fen(-1);
        assert_eq!(
            compute(&plan(), &negative, &[who("a", "regular")]),
            Err(CommissionError::NegativeAmount {
                sku: "T1".to_owned()
            })
        );
        let huge = order(vec![
            OrderItem {
                amount: Money::from_fen(i64::MAX),
                ..item("T1", "toys", "0")
            },
            item("T2", "toys", "0.01"),
        ]);
        assert_eq!(
            compute(&plan(), &huge, &[who("a", "regular")]),
            Err(CommissionError::Overflow)
        );
    }

    // ---- v2 rules: compute_with ----

    use crate::domain::ledger::{self, AccountId, Bucket};
    use proptest::prelude::*;

    fn v2_plan(top: &str, sections: &str) -> Plan {
        let text = format!(
            "{top}\n{PLAN}\n[grades.star]\nlevels = [\"20%\", \"10%\", \"10%\"]\n{sections}"
        );
        Plan::parse(&text, "v2.toml").unwrap_or_else(|error| panic!("{error}"))
    }

    fn rate(text: &str) -> Rate {
        Rate::parse_percent(text).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn explained_summary(lines: &[ExplainedLine]) -> Vec<Summary> {
        let plain: Vec<CommissionLine> = lines
            .iter()
            .map(|explained| explained.line.clone())
            .collect();
        summary(&plain)
    }

    fn derivation(line: &ExplainedLine) -> &RateDerivation {
        match &line.rule_trail.0[0] {
            RuleStep::Rate(derivation) => derivation,
            other => panic!("the first step is not a rate: {other}"),
        }
    }

    const TIERS: &str = "[tiers]\nsteps = [{ from = \"0.00\", level1 = \"10%\" }, { from = \"1000.00\", level1 = \"15%\" }]\n";

    #[test]
    fn a_tier_replaces_the_level_one_grade_rate_by_the_months_sales_including_this_order() {
        let plan = v2_plan("", TIERS);
        let paid = order(vec![
            item("T1", "toys", "100.00"),
            item("NOVEL", "books", "50.00"),
        ]);
        let tree = chain(["regular", "regular", "regular"]);
        // 950.00 before + 150.00 of this order = 1,100.00 ≥ 1,000.00: 15%.
        let context = CommissionContext {
            month_level1_sales_before: money("950.00"),
            ..CommissionContext::default()
        };
        let lines = compute_with(&plan, &paid, &tree, &context).unwrap();
        assert_eq!(
            explained_summary(&lines),
            vec![
                line("a", 1, "100.00", "15%", "15.00"),
                // The books category override (4%) still wins over the tier.
                line("a", 1, "50.00", "4%", "2.00"),
                // Levels 2 and 3 keep their grade rates.
                line("b", 2, "100.00", "5%", "5.00"),
                line("b", 2, "50.00", "2%", "1.00"),
                line("c", 3, "100.00", "2%", "2.00"),
                line("c", 3, "50.00", "1%", "0.50"),
            ]
        );
        let tiered = derivation(&lines[0]);
        assert_eq!(tiered.source, RateSource::Grade);
        assert_eq!(tiered.source_rate, rate("10%"));
        assert_eq!(
            tiered.tier,
            Some(TierUsed {
                from: money("1000.00"),
                level1: rate("15%"),
                month_level1_sales: money("1100.00"),
            })
        );
        assert_eq!(derivation(&lines[1]).source, RateSource::CategoryOverride);
        assert_eq!(derivation(&lines[1]).tier, None);

        // 849.99 + 150.00 = 999.99: still the first step, 10%.
        let below = CommissionContext {
            month_level1_sales_before: money("849.99"),
            ..CommissionContext::default()
        };
        let lines = compute_with(&plan, &paid, &tree, &below).unwrap();
        assert_eq!(lines[0].line.amount, money("10.00"));
        assert_eq!(
            derivation(&lines[0]).tier.as_ref().unwrap().from,
            money("0.00")
        );
    }

    const CAMPAIGNS: &str = r#"
[[campaigns]]
name = "双11"
from = 2026-11-11T00:00:00+08:00
to = 2026-11-12T00:00:00+08:00
multiplier = "2"
categories = ["toys"]

[[campaigns]]
name = "十一月"
from = 2026-11-01T00:00:00+08:00
to = 2026-12-01T00:00:00+08:00
multiplier = "1.5"
"#;

    fn placed(placed_at: Option<&str>) -> CommissionContext {
        CommissionContext {
            placed_at: placed_at.map(at),
            ..CommissionContext::default()
        }
    }

    #[test]
    fn the_highest_matching_campaign_multiplies_the_rate_of_its_categories_in_from_to() {
        let plan = v2_plan("", CAMPAIGNS);
        let paid = order(vec![
            item("T1", "toys", "100.00"),
            item("NOVEL", "books", "100.00"),
        ]);
        let tree = [who("a", "regular")];
        let amounts = |placed_at: Option<&str>| {
            let lines = compute_with(&plan, &paid, &tree, &placed(placed_at)).unwrap();
            explained_summary(&lines)
        };
        // On 11-11 toys match both (×2 wins): 10% × 2 = 20%; books only the
        // month-long one: 4% × 1.5 = 6%.
        assert_eq!(
            amounts(Some("2026-11-11T10:00:00+08:00")),
            vec![
                line("a", 1, "100.00", "20%", "20.00"),
                line("a", 1, "100.00", "6%", "6.00"),
            ]
        );
        // `to` is exclusive: at midnight on 11-12 only ×1.5 is left.
        assert_eq!(
            amounts(Some("2026-11-12T00:00:00+08:00")),
            vec![
                line("a", 1, "100.00", "15%", "15.00"),
                line("a", 1, "100.00", "6%", "6.00"),
            ]
        );
        // Outside every campaign, or with no placed_at: the plain rates.
        let plain = vec![
            line("a", 1, "100.00", "10%", "10.00"),
            line("a", 1, "100.00", "4%", "4.00"),
        ];
        assert_eq!(amounts(Some("2026-12-01T00:00:00+08:00")), plain);
        assert_eq!(amounts(None), plain);

        let lines = compute_with(
            &plan,
            &paid,
            &tree,
            &placed(Some("2026-11-11T10:00:00+08:00")),
        )
        .unwrap();
        assert_eq!(
            derivation(&lines[0]).campaign,
            Some(CampaignUsed {
                name: "双11".to_owned(),
                multiplier: Decimal::TWO,
            })
        );
    }

    #[test]
    fn the_daily_cap_trims_a_beneficiarys_lines_to_what_is_left_of_the_day() {
        let plan = v2_plan("daily_cap = \"15.00\"", "");
        let tree = [who("a", "regular"), who("b", "regular")];
        let paid = order(vec![
            item("T1", "toys", "100.00"),
            item("NOVEL", "books", "100.00"),
        ]);
        // a had earned 3.00: room 12.00 for 10.00 + 4.00, so 2.00 comes off
        // the larger line. b had earned 20.00: nothing left that day.
        let context = CommissionContext {
            earned_today: BTreeMap::from([(id("a"), money("3.00")), (id("b"), money("20.00"))]),
            ..CommissionContext::default()
        };
        let lines = compute_with(&plan, &paid, &tree, &context).unwrap();
        assert_eq!(
            explained_summary(&lines),
            vec![
                line("a", 1, "100.00", "10%", "8.00"),
                line("a", 1, "100.00", "4%", "4.00"),
            ]
        );
        assert!(lines[0].line.capped);
        assert_eq!(
            lines[0].rule_trail.0[1],
            RuleStep::DailyCap {
                removed: money("2.00"),
                earned_before: money("3.00"),
                cap: money("15.00"),
            }
        );
        assert_eq!(lines[1].rule_trail.0.len(), 1, "untrimmed: its rate only");
    }

    #[test]
    fn a_cleared_beneficiary_gets_a_zero_line_and_the_others_are_unchanged() {
        let tree = chain(["regular", "regular", "regular"]);
        let context = CommissionContext {
            cleared: BTreeSet::from([id("b")]),
            ..CommissionContext::default()
        };
        let paid = order(vec![item("T1", "toys", "100.00")]);
        let lines = compute_with(&plan(), &paid, &tree, &context).unwrap();
        assert_eq!(
            explained_summary(&lines),
            vec![
                line("a", 1, "100.00", "10%", "10.00"),
                line("b", 2, "100.00", "0%", "0.00"),
                line("c", 3, "100.00", "2%", "2.00"),
            ]
        );
        assert!(lines[1].is_cleared());
        assert_eq!(lines[1].rule_trail, RuleTrail(vec![RuleStep::Cleared]));
        assert!(!lines[0].is_cleared() && !lines[2].is_cleared());
    }

    #[test]
    fn tier_campaign_order_cap_and_daily_cap_apply_in_that_order_and_are_all_explained() {
        let plan = v2_plan(
            "order_cap = \"20%\"\ndaily_cap = \"30.00\"",
            &format!(
                "[tiers]\nsteps = [{{ from = \"0.00\", level1 = \"10%\" }}, {{ from = \"500.00\", level1 = \"20%\" }}]\n{CAMPAIGNS}"
            ),
        );
        let paid = order(vec![item("T1", "toys", "100.00")]);
        let tree = chain(["regular", "regular", "regular"]);
        let context = CommissionContext {
            placed_at: Some(at("2026-11-11T10:00:00+08:00")),
            month_level1_sales_before: money("400.00"),
            earned_today: BTreeMap::from([(id("a"), money("15.00"))]),
            cleared: BTreeSet::new(),
        };
        // Level 1: tier (400 + 100 = 500 → 20%) × 2 = 40% → 40.00; level 2:
        // 5% × 2 → 10.00; level 3: 2% × 2 → 4.00. Total 54.00 against an
        // order cap of 20.00: level 3 loses 4.00, level 2 10.00, level 1
        // 20.00. Then a's day: 15.00 earned + 20.00 > 30.00, so 5.00 more.
        let lines = compute_with(&plan, &paid, &tree, &context).unwrap();
        assert_eq!(
            explained_summary(&lines),
            vec![line("a", 1, "100.00", "40%", "15.00")]
        );
        let only = &lines[0];
        assert_eq!(only.line.uncapped_amount, money("40.00"));
        assert_eq!(
            only.rule_trail.0[1..],
            [
                RuleStep::OrderCap {
                    removed: money("20.00")
                },
                RuleStep::DailyCap {
                    removed: money("5.00"),
                    earned_before: money("15.00"),
                    cap: money("30.00"),
                },
            ]
        );
        assert_eq!(
            only.rule_trail.to_string(),
            "grade 10% → tier from 500.00 (month 500.00) 20% → 双11 ×2 = 40% on 100.00; \
             order cap −20.00; daily cap 30.00 (earned 15.00 before) −5.00"
        );
        let json = serde_json::to_value(only).unwrap();
        assert_eq!(json["amount"], "15.00");
        assert_eq!(json["rule_trail"][0]["step"], "rate");
        assert_eq!(json["rule_trail"][0]["source"], "grade");
        assert_eq!(json["rule_trail"][0]["campaign"]["multiplier"], "2");
        assert_eq!(json["rule_trail"][1]["step"], "order_cap");
        assert_eq!(json["rule_trail"][1]["removed"], "20.00");
        assert_eq!(json["rule_trail"][2]["step"], "daily_cap");
    }

    #[test]
    fn a_campaign_multiplied_rate_pays_at_most_100_percent_before_the_order_cap() {
        let plan = v2_plan(
            "order_cap = \"100%\"",
            "[[overrides]]\nsku = \"BIG\"\nlevels = [\"60%\"]\n\n\
             [[campaigns]]\nname = \"x\"\nfrom = 2026-01-01T00:00:00Z\n\
             to = 2026-01-02T00:00:00Z\nmultiplier = \"2\"\n",
        );
        let paid = order(vec![item("BIG", "toys", "10.00")]);
        let context = placed(Some("2026-01-01T12:00:00Z"));
        let lines = compute_with(&plan, &paid, &[who("a", "regular")], &context).unwrap();
        // 60% × 2 = 120%, paid as 100%: 10.00.
        assert_eq!(
            explained_summary(&lines),
            vec![line("a", 1, "10.00", "100%", "10.00")]
        );
        assert_eq!(derivation(&lines[0]).source_rate, rate("60%"));
    }

    #[test]
    fn compute_is_compute_with_a_default_context() {
        let tree = chain(["partner", "gold", "regular"]);
        let paid = order(vec![
            item("RARE-BOOK", "books", "100.00"),
            item("T1", "toys", "9.99"),
        ]);
        let plain = compute(&plan(), &paid, &tree).unwrap();
        let explained = compute_with(&plan(), &paid, &tree, &CommissionContext::default()).unwrap();
        let lines: Vec<CommissionLine> = explained.iter().map(|e| e.line.clone()).collect();
        assert_eq!(plain, lines);
        assert_eq!(derivation(&explained[0]).source, RateSource::SkuOverride);
    }

    /// A plan with every v2 rule that touches the computation, and a 40% grade
    /// against a 30% order cap.
    fn property_plan() -> Plan {
        v2_plan(
            "daily_cap = \"50.00\"",
            &format!(
                "[tiers]\nsteps = [{{ from = \"0.00\", level1 = \"10%\" }}, {{ from = \"300.00\", level1 = \"18%\" }}]\n{CAMPAIGNS}"
            ),
        )
    }

    const SKUS: [(&str, &str); 5] = [
        ("T1", "toys"),
        ("NOVEL", "books"),
        ("RARE-BOOK", "books"),
        ("GIFT", "cards"),
        ("L1", "beauty"),
    ];
    const GRADES: [&str; 4] = ["regular", "gold", "partner", "star"];

    fn arbitrary_case() -> impl Strategy<Value = (Order, Vec<Beneficiary>, CommissionContext)> {
        (
            proptest::collection::vec((0..SKUS.len(), 0i64..=100_000), 0..6),
            proptest::collection::vec(
                (0..GRADES.len(), any::<bool>(), 0i64..=6_000, any::<bool>()),
                0..=3,
            ),
            0i64..=60_000,
            proptest::option::of(0i64..=24 * 40),
            any::<bool>(),
        )
            .prop_map(|(items, people, month_fen, hours, self_purchase)| {
                let items = items
                    .into_iter()
                    .map(|(sku, fen)| OrderItem {
                        sku: SKUS[sku].0.to_owned(),
                        category: SKUS[sku].1.to_owned(),
                        amount: Money::from_fen(fen),
                    })
                    .collect();
                let mut paid = order(items);
                if self_purchase {
                    paid.buyer_id = BuyerId::parse("a").unwrap();
                }
                let mut context = CommissionContext {
                    // From 2026-10-25 on, across both campaigns.
                    placed_at: hours.map(|hours| {
                        at("2026-10-25T00:00:00+08:00") + chrono::TimeDelta::hours(hours)
                    }),
                    month_level1_sales_before: Money::from_fen(month_fen),
                    ..CommissionContext::default()
                };
                let mut tree = Vec::new();
                for ((grade, cleared, earned_fen, earns), name) in
                    people.into_iter().zip(["a", "b", "c"])
                {
                    let mut beneficiary = who(name, GRADES[grade]);
                    beneficiary.earns = earns;
                    if cleared {
                        context.cleared.insert(id(name));
                    }
                    context
                        .earned_today
                        .insert(id(name), Money::from_fen(earned_fen));
                    tree.push(beneficiary);
                }
                (paid, tree, context)
            })
    }

    proptest! {
        #[test]
        fn no_cap_is_ever_exceeded_and_no_line_is_negative(case in arbitrary_case()) {
            let (paid, tree, context) = case;
            let plan = property_plan();
            let lines = compute_with(&plan, &paid, &tree, &context).unwrap();
            let commissionable = Money::checked_sum(
                paid.items.iter().filter(|item| !plan.is_excluded(&item.sku)).map(|item| item.amount),
            ).unwrap();
            let order_cap = commissionable.times_rounded(plan.order_cap()).unwrap();
            let total = Money::checked_sum(lines.iter().map(|l| l.line.amount)).unwrap();
            prop_assert!(total <= order_cap, "{total} > order cap {order_cap}");
            let daily_cap = plan.daily_cap().unwrap();
            for beneficiary in &tree {
                let earned = Money::checked_sum(
                    lines.iter().filter(|l| l.line.beneficiary == beneficiary.distributor_id).map(|l| l.line.amount),
                ).unwrap();
                let before = context.earned_today[&beneficiary.distributor_id];
                let room = daily_cap.checked_sub(before).unwrap().max(Money::ZERO);
                prop_assert!(earned <= room, "{} earned {earned}, room {room}", beneficiary.distributor_id);
            }
            for explained in &lines {
                let line = &explained.line;
                prop_assert!(!line.amount.is_negative());
                prop_assert_eq!(line.amount.is_zero(), explained.is_cleared());
                // What the line shows adds up: uncapped − every trim = paid.
                let removed = Money::checked_sum(explained.rule_trail.0.iter().map(|step| match step {
                    RuleStep::OrderCap { removed } | RuleStep::DailyCap { removed, .. } => *removed,
                    RuleStep::Rate(_) | RuleStep::Cleared => Money::ZERO,
                })).unwrap();
                prop_assert_eq!(line.uncapped_amount.checked_sub(removed), Some(line.amount));
                prop_assert_eq!(line.capped, !removed.is_zero());
                if !explained.is_cleared() {
                    prop_assert_eq!(line.base.times_rounded(line.rate).unwrap(), line.uncapped_amount);
                }
            }
        }

        #[test]
        fn the_same_inputs_give_the_same_lines_and_the_ledger_posts_their_sum(case in arbitrary_case()) {
            let (paid, tree, context) = case;
            let plan = property_plan();
            let lines = compute_with(&plan, &paid, &tree, &context).unwrap();
            prop_assert_eq!(&compute_with(&plan, &paid, &tree, &context).unwrap(), &lines);
            let postings: Vec<(DistributorId, Money)> = lines
                .iter()
                .map(|l| (l.line.beneficiary.clone(), l.line.amount))
                .collect();
            let total = Money::checked_sum(postings.iter().map(|(_, amount)| *amount)).unwrap();
            let posted = match ledger::commission_pending("o1", &postings).unwrap() {
                None => Money::ZERO,
                Some(transfer) => Money::checked_sum(
                    transfer
                        .postings()
                        .iter()
                        .filter(|posting| matches!(posting.account, AccountId::Distributor(_, Bucket::Pending)))
                        .map(|posting| posting.amount),
                ).unwrap(),
            };
            prop_assert_eq!(posted, total);
        }
    }
}
