//! Commission plans (分佣方案): the rates each level of the referral chain earns
//! on a sale, parsed from a TOML file and refused with its file and line when
//! it breaks a rule.
//!
//! The rules that make a plan lawful are enforced here, at load time, so no
//! code downstream can ever see an unlawful plan:
//!
//! - at most [`MAX_LEVELS`] levels (Chinese law treats more as pyramid selling,
//!   传销);
//! - pay only from sales amounts: every table refuses unknown keys, and a key
//!   that sounds like pay per person recruited gets its own error first;
//! - every rate a percentage string within 0%–100% (`"10%"`), never a bare
//!   number whose meaning (10% or 0.1%?) would have to be guessed.
//!
//! The file format is documented by the shipped default,
//! `workflows/plans/default.toml` ([`SHIPPED_DEFAULT_TOML`]). A plan's version
//! number is assigned by the store when the plan is applied, so it is not part
//! of [`Plan`] and a `version` key in the file is refused.
//!
//! Parsing runs in three passes over the text:
//!
//! ```text
//! text ──► toml syntax tree ──► per-recruit keys? ──► raw serde structs ──► validated Plan
//!          (syntax errors)      (specific error)      (unknown keys,      (levels, rates, grades,
//!                                                      wrong types)        overrides)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::domain::money::{Money, Rate, RateError};

/// The most commission levels a plan may pay: the attributed distributor,
/// their referrer and the referrer's referrer. More is pyramid selling under
/// Chinese law (《禁止传销条例》), so a plan asking for more is refused.
pub const MAX_LEVELS: usize = 3;

/// Where the plan in force on a fresh install lives, relative to the
/// repository root (for error messages and the audit log).
pub const SHIPPED_DEFAULT_FILE: &str = "workflows/plans/default.toml";

/// The text of the plan in force on a fresh install, built into the binary so
/// a new install pays commissions with no setup.
pub const SHIPPED_DEFAULT_TOML: &str = include_str!("../../workflows/plans/default.toml");

/// Fragments of key names that describe pay per person recruited (per
/// recruit, per sign-up, per invitation, per head). Such pay is unlawful, so a
/// key containing one is refused with an explanation rather than the generic
/// "unknown field" error. Matched case-insensitively against every key in the
/// file, grade names included.
const PER_RECRUIT_KEY_FRAGMENTS: &[&str] = &[
    "recruit",
    "signup",
    "sign_up",
    "invite",
    "per_referral",
    "per_head",
    "headcount",
];

/// Fragments of key names that make pay or a grade depend on the number of
/// people (invitees, team size, members, head count). A rate, grade or bonus
/// may only depend on sales amounts: a condition on how many people someone
/// has brought in is per-head pay in disguise. Checked after
/// [`PER_RECRUIT_KEY_FRAGMENTS`], in the same way.
const HEAD_COUNT_KEY_FRAGMENTS: &[&str] = &[
    "team_size",
    "teamsize",
    "members",
    "member_count",
    "head_count",
    "people",
    "persons",
    "referrals",
    "referral_count",
    "downlines",
    "downline_count",
    "subordinates",
    "followers",
    "fans",
    "user_count",
    "direct_count",
];

/// The largest campaign multiplier a plan may set: a multiplier beyond it is
/// more likely a typo than a promotion, and the order cap would swallow it.
const MAX_CAMPAIGN_MULTIPLIER: Decimal = Decimal::TEN;

/// The order cap when a plan does not set `order_cap`: 30% of the order's
/// commissionable amount.
fn default_order_cap() -> Rate {
    Rate::from_fraction(Decimal::new(30, 2)).expect("30% is within 0%–100%")
}

/// A validated commission plan. Fields are private: the only way to get one
/// is [`Plan::parse`], so every `Plan` obeys the rules in the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    name: String,
    effective_from: Option<DateTime<Utc>>,
    /// In file order, which is the order an admin expects to see them in.
    grades: Vec<Grade>,
    /// Index into `grades`; always valid.
    default_grade: usize,
    /// In file order; no two share the same (target, grade).
    overrides: Vec<Override>,
    excluded_skus: BTreeSet<String>,
    order_cap: Rate,
    self_purchase_pays: bool,
    /// Ordered by `from`, the first from 0.00; empty when the plan has no
    /// `[tiers]`.
    tiers: Vec<TierStep>,
    /// In file order.
    campaigns: Vec<Campaign>,
    daily_cap: Option<Money>,
    risk: Option<RiskRules>,
    clearing: Option<ClearingRule>,
    team_bonus: Option<TeamBonus>,
    source_text: String,
}

/// One step of `[tiers]` (阶梯佣金): from `from` of the distributor's level-1
/// sales in the month on, level 1 pays `level1` instead of the grade rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierStep {
    from: Money,
    level1: Rate,
}

/// A `[[campaigns]]` entry (活动佣金): orders placed in `[from, to)` have their
/// rates multiplied, for the listed categories or all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaign {
    name: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Greater than 0, at most [`MAX_CAMPAIGN_MULTIPLIER`].
    multiplier: Decimal,
    /// `None`: every category.
    categories: Option<BTreeSet<String>>,
}

/// `[risk]`: orders beyond the limit are flagged and held longer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RiskRules {
    same_buyer_orders_per_day: u32,
    extra_hold_days: u32,
}

/// `[grades.<g>.upgrade]` (晋级): the settled sales that move a distributor
/// up to this grade. Never a head count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpgradeRule {
    own_sales: Money,
    team_sales: Option<Money>,
    any: bool,
}

/// `[clearing]` (清退): a distributor with no settled sale for this long is
/// cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClearingRule {
    inactive_days: u32,
}

/// `[team_bonus]`: a monthly bonus on the team's settled sales once they
/// reach the threshold. Off unless `enabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TeamBonus {
    enabled: bool,
    threshold: Money,
    rate: Rate,
}

/// A distributor grade (等级) and the rates it earns at each level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grade {
    key: String,
    display_name: String,
    /// Rates for levels 1..=len; at most [`MAX_LEVELS`].
    levels: Vec<Rate>,
    upgrade: Option<UpgradeRule>,
}

/// Which rule of the plan gave an item its rate at a level.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RateSource {
    /// The beneficiary's grade (or the default grade).
    Grade,
    /// An override for the item's sku.
    SkuOverride,
    /// An override for the item's category.
    CategoryOverride,
}

/// What an [`Override`] applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OverrideTarget {
    Category(String),
    Sku(String),
}

/// Rates that replace the grade rates for one category or sku, for one grade
/// or (with no grade) for all of them. Levels past the end of its list pay
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    target: OverrideTarget,
    grade: Option<String>,
    levels: Vec<Rate>,
}

/// Why a plan file was refused. Every variant names the file and the 1-based
/// line of the offending key or value, and displays as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Not valid TOML, an unknown key, a missing key or a value of the wrong
    /// type; the message is the TOML parser's.
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error(
        "{file}:{line}: at most {MAX_LEVELS} commission levels are allowed \
         (more is pyramid selling under Chinese law); this list has {found}"
    )]
    TooManyLevels {
        file: String,
        line: usize,
        found: usize,
    },
    #[error(
        "{file}:{line}: `{key}` would pay per person recruited; pay may only be \
         computed from sales amounts, never from the number of people recruited \
         (Chinese law treats that as pyramid selling)"
    )]
    PaysPerRecruit {
        file: String,
        line: usize,
        key: String,
    },
    #[error("{file}:{line}: rate \"{text}\" is outside 0%–100%")]
    RateOutOfRange {
        file: String,
        line: usize,
        text: String,
    },
    #[error(
        "{file}:{line}: rate \"{text}\" is not a percentage; write rates as \
         strings such as \"10%\" or \"2.5%\""
    )]
    RateNotAPercentage {
        file: String,
        line: usize,
        text: String,
    },
    #[error(
        "{file}:{line}: rate {found} is a bare number; write rates as percentage \
         strings in quotes, such as \"10%\""
    )]
    RateIsANumber {
        file: String,
        line: usize,
        found: String,
    },
    #[error("{file}:{line}: unknown grade \"{grade}\"; this plan's grades are {known}")]
    UnknownGrade {
        file: String,
        line: usize,
        grade: String,
        known: String,
    },
    #[error("{file}:{line}: an override names both `category` and `sku`; give exactly one")]
    OverrideHasBothTargets { file: String, line: usize },
    #[error("{file}:{line}: an override must name exactly one of `category` or `sku`")]
    OverrideHasNoTarget { file: String, line: usize },
    #[error(
        "{file}:{line}: a second override for {target} and {grades}; \
         the first is on line {first_line}"
    )]
    DuplicateOverride {
        file: String,
        line: usize,
        target: String,
        grades: String,
        first_line: usize,
    },
    #[error("{file}:{line}: the plan has no grades; add at least one, e.g. [grades.regular]")]
    NoGrades { file: String, line: usize },
    #[error(
        "{file}:{line}: effective_from must be an RFC 3339 time with a UTC offset, \
         such as \"2025-11-01T00:00:00+08:00\""
    )]
    InvalidEffectiveFrom { file: String, line: usize },
    #[error(
        "{file}:{line}: `version` is assigned by fenrun when the plan is applied; \
         remove it from the file"
    )]
    VersionInFile { file: String, line: usize },
    #[error("{file}:{line}: {what} must not be empty")]
    Empty {
        file: String,
        line: usize,
        what: &'static str,
    },
    #[error(
        "{file}:{line}: `{key}` is a condition on the number of people; rates, \
         grades and bonuses may only depend on sales amounts, never on head count \
         (Chinese law treats pay by head count as pyramid selling)"
    )]
    CountsPeople {
        file: String,
        line: usize,
        key: String,
    },
    #[error(
        "{file}:{line}: amount {found} is not an amount of yuan; write amounts as \
         strings in quotes with at most two decimals, such as \"500.00\""
    )]
    InvalidAmount {
        file: String,
        line: usize,
        found: String,
    },
    #[error("{file}:{line}: {what} must be {expected}; found {found}")]
    OutOfRange {
        file: String,
        line: usize,
        what: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error(
        "{file}:{line}: the first tier step must start from \"0.00\", so every \
         sale has a tier; found \"{found}\""
    )]
    TiersDoNotStartAtZero {
        file: String,
        line: usize,
        found: Money,
    },
    #[error(
        "{file}:{line}: tier step from \"{found}\" does not start above the \
         previous step's \"{previous}\"; list steps by strictly increasing `from`"
    )]
    TierStepsOutOfOrder {
        file: String,
        line: usize,
        found: Money,
        previous: Money,
    },
    #[error(
        "{file}:{line}: {what} must be an RFC 3339 time with a UTC offset, \
         such as 2026-11-11T00:00:00+08:00"
    )]
    InvalidTime {
        file: String,
        line: usize,
        what: &'static str,
    },
    #[error("{file}:{line}: campaign \"{name}\" ends at or before it starts (`to` ≤ `from`)")]
    CampaignEndsBeforeItStarts {
        file: String,
        line: usize,
        name: String,
    },
    #[error(
        "{file}:{line}: [team_bonus] has no `threshold`; a team bonus is only paid \
         once the team's settled sales reach one"
    )]
    TeamBonusWithoutThreshold { file: String, line: usize },
}

impl PlanError {
    /// The file the error is in, as given to [`Plan::parse`].
    pub fn file(&self) -> &str {
        match self {
            PlanError::Invalid { file, .. }
            | PlanError::TooManyLevels { file, .. }
            | PlanError::PaysPerRecruit { file, .. }
            | PlanError::RateOutOfRange { file, .. }
            | PlanError::RateNotAPercentage { file, .. }
            | PlanError::RateIsANumber { file, .. }
            | PlanError::UnknownGrade { file, .. }
            | PlanError::OverrideHasBothTargets { file, .. }
            | PlanError::OverrideHasNoTarget { file, .. }
            | PlanError::DuplicateOverride { file, .. }
            | PlanError::NoGrades { file, .. }
            | PlanError::InvalidEffectiveFrom { file, .. }
            | PlanError::VersionInFile { file, .. }
            | PlanError::Empty { file, .. }
            | PlanError::CountsPeople { file, .. }
            | PlanError::InvalidAmount { file, .. }
            | PlanError::OutOfRange { file, .. }
            | PlanError::TiersDoNotStartAtZero { file, .. }
            | PlanError::TierStepsOutOfOrder { file, .. }
            | PlanError::InvalidTime { file, .. }
            | PlanError::CampaignEndsBeforeItStarts { file, .. }
            | PlanError::TeamBonusWithoutThreshold { file, .. } => file,
        }
    }

    /// The 1-based line the error points at.
    pub fn line(&self) -> usize {
        match self {
            PlanError::Invalid { line, .. }
            | PlanError::TooManyLevels { line, .. }
            | PlanError::PaysPerRecruit { line, .. }
            | PlanError::RateOutOfRange { line, .. }
            | PlanError::RateNotAPercentage { line, .. }
            | PlanError::RateIsANumber { line, .. }
            | PlanError::UnknownGrade { line, .. }
            | PlanError::OverrideHasBothTargets { line, .. }
            | PlanError::OverrideHasNoTarget { line, .. }
            | PlanError::DuplicateOverride { line, .. }
            | PlanError::NoGrades { line, .. }
            | PlanError::InvalidEffectiveFrom { line, .. }
            | PlanError::VersionInFile { line, .. }
            | PlanError::Empty { line, .. }
            | PlanError::CountsPeople { line, .. }
            | PlanError::InvalidAmount { line, .. }
            | PlanError::OutOfRange { line, .. }
            | PlanError::TiersDoNotStartAtZero { line, .. }
            | PlanError::TierStepsOutOfOrder { line, .. }
            | PlanError::InvalidTime { line, .. }
            | PlanError::CampaignEndsBeforeItStarts { line, .. }
            | PlanError::TeamBonusWithoutThreshold { line, .. } => *line,
        }
    }
}

impl Plan {
    /// Parses and validates a plan. `file_name` is only used in error
    /// messages (`plans/x.toml:12: ...`).
    pub fn parse(text: &str, file_name: &str) -> Result<Plan, PlanError> {
        let source = Source {
            text,
            file: file_name,
        };
        let tree = DeTable::parse(text).map_err(|error| source.toml_error(&error))?;
        if let Some((kind, key, span)) = first_forbidden_key(tree.get_ref()) {
            let file = source.file.to_owned();
            let line = source.line(span);
            return Err(match kind {
                ForbiddenKey::PerRecruit => PlanError::PaysPerRecruit { file, line, key },
                ForbiddenKey::HeadCount => PlanError::CountsPeople { file, line, key },
            });
        }
        if let Some((key, _)) = tree.get_ref().get_key_value("version") {
            return Err(PlanError::VersionInFile {
                file: source.file.to_owned(),
                line: source.line(key.span()),
            });
        }
        let raw: RawPlan = toml::from_str(text).map_err(|error| source.toml_error(&error))?;
        raw.validate(&source)
    }

    /// The plan in force on a fresh install ([`SHIPPED_DEFAULT_TOML`]).
    pub fn shipped_default() -> Result<Plan, PlanError> {
        Plan::parse(SHIPPED_DEFAULT_TOML, SHIPPED_DEFAULT_FILE)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the plan takes effect; `None` means "when it is applied".
    pub fn effective_from(&self) -> Option<DateTime<Utc>> {
        self.effective_from
    }

    /// The grades in file order.
    pub fn grades(&self) -> &[Grade] {
        &self.grades
    }

    /// The grade with this key, if the plan has it.
    pub fn grade(&self, key: &str) -> Option<&Grade> {
        self.grades.iter().find(|grade| grade.key == key)
    }

    /// The grade used for distributors whose grade the plan does not know.
    pub fn default_grade(&self) -> &Grade {
        &self.grades[self.default_grade]
    }

    /// The grade with this key, or the default grade if the plan does not
    /// know it.
    pub fn grade_or_default(&self, key: &str) -> &Grade {
        self.grade(key).unwrap_or_else(|| self.default_grade())
    }

    /// The overrides in file order.
    pub fn overrides(&self) -> &[Override] {
        &self.overrides
    }

    pub fn excluded_skus(&self) -> &BTreeSet<String> {
        &self.excluded_skus
    }

    /// Whether this sku pays no commission at all.
    pub fn is_excluded(&self, sku: &str) -> bool {
        self.excluded_skus.contains(sku)
    }

    /// The most an order may pay in commissions, as a share of its
    /// commissionable amount.
    pub fn order_cap(&self) -> Rate {
        self.order_cap
    }

    /// Whether a distributor earns level 1 on their own purchases.
    pub fn self_purchase_pays(&self) -> bool {
        self.self_purchase_pays
    }

    /// The TOML text the plan was parsed from, for the store to keep.
    pub fn source_text(&self) -> &str {
        &self.source_text
    }

    /// The `[tiers]` steps ordered by `from`, the first from 0.00; empty
    /// when the plan has none.
    pub fn tiers(&self) -> &[TierStep] {
        &self.tiers
    }

    /// The tier step for a month's level-1 sales of `month_sales`: the last
    /// step whose `from` it reaches. `None` when the plan has no tiers.
    pub fn tier_for(&self, month_sales: Money) -> Option<&TierStep> {
        self.tiers
            .iter()
            .rev()
            .find(|step| month_sales >= step.from)
    }

    /// The `[[campaigns]]` in file order.
    pub fn campaigns(&self) -> &[Campaign] {
        &self.campaigns
    }

    /// The most one distributor may earn per local day, all levels.
    pub fn daily_cap(&self) -> Option<Money> {
        self.daily_cap
    }

    pub fn risk(&self) -> Option<&RiskRules> {
        self.risk.as_ref()
    }

    /// What it takes to be upgraded to `grade`; `None` for a grade with no
    /// `[grades.<g>.upgrade]` or one the plan does not know.
    pub fn upgrade(&self, grade: &str) -> Option<&UpgradeRule> {
        self.grade(grade).and_then(|grade| grade.upgrade.as_ref())
    }

    pub fn clearing(&self) -> Option<&ClearingRule> {
        self.clearing.as_ref()
    }

    pub fn team_bonus(&self) -> Option<&TeamBonus> {
        self.team_bonus.as_ref()
    }

    /// Whether the plan uses any rule beyond grade rates, overrides,
    /// exclusions and the order cap: tiers, campaigns, a daily cap, risk
    /// holds, grade upgrades, clearing or a team bonus (even one switched
    /// off).
    pub fn uses_v2_rules(&self) -> bool {
        !self.tiers.is_empty()
            || !self.campaigns.is_empty()
            || self.daily_cap.is_some()
            || self.risk.is_some()
            || self.grades.iter().any(|grade| grade.upgrade.is_some())
            || self.clearing.is_some()
            || self.team_bonus.is_some()
    }

    /// The rate a distributor of `grade` earns at `level` (1..=3) on an item.
    ///
    /// The most specific rule wins: an override for the sku and this grade,
    /// then one for the sku and all grades, then for the category and this
    /// grade, then for the category and all grades, then the grade's own
    /// rates. A grade the plan does not know is read as the default grade.
    /// A level past the end of the chosen list, or outside 1..=3, pays 0%.
    /// Exclusion is not considered here; see [`Plan::is_excluded`].
    pub fn rate(&self, grade: &str, sku: &str, category: &str, level: u8) -> Rate {
        self.rate_with_source(grade, sku, category, level).0
    }

    /// [`Plan::rate`] and which rule gave it, for the line's explanation and
    /// for tiers, which replace only a rate that comes from the grade.
    pub fn rate_with_source(
        &self,
        grade: &str,
        sku: &str,
        category: &str,
        level: u8,
    ) -> (Rate, RateSource) {
        let grade = self.grade_or_default(grade);
        let specificity = |rule: &Override| -> Option<u8> {
            let target = match &rule.target {
                OverrideTarget::Sku(rule_sku) if rule_sku == sku => 2,
                OverrideTarget::Category(rule_category) if rule_category == category => 0,
                _ => return None,
            };
            match &rule.grade {
                Some(rule_grade) if *rule_grade == grade.key => Some(target + 1),
                Some(_) => None,
                None => Some(target),
            }
        };
        // Duplicate (target, grade) pairs are refused at parse time, so the
        // most specific match is unique.
        self.overrides
            .iter()
            .filter_map(|rule| specificity(rule).map(|rank| (rank, rule)))
            .max_by_key(|(rank, _)| *rank)
            .map_or_else(
                || (grade.rate(level), RateSource::Grade),
                |(_, rule)| {
                    let source = match rule.target {
                        OverrideTarget::Sku(_) => RateSource::SkuOverride,
                        OverrideTarget::Category(_) => RateSource::CategoryOverride,
                    };
                    (rule.rate(level), source)
                },
            )
    }
}

impl Grade {
    /// The key the shop uses for this grade (`regular`, `gold`, ...).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The name people see (普通, 金牌, ...); the key when the file gives none.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// Rates for levels 1, 2, 3; a shorter list pays nothing deeper.
    pub fn levels(&self) -> &[Rate] {
        &self.levels
    }

    /// The rate at `level` (1..=3); 0% past the end of the list.
    pub fn rate(&self, level: u8) -> Rate {
        level_rate(&self.levels, level)
    }
}

impl TierStep {
    /// The month's level-1 sales from which this step applies.
    pub fn from(&self) -> Money {
        self.from
    }

    /// The level-1 rate this step pays instead of the grade's.
    pub fn level1(&self) -> Rate {
        self.level1
    }
}

impl Campaign {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first instant the campaign applies to (inclusive).
    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    /// The first instant it no longer applies to (exclusive).
    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }

    /// Greater than 0, at most 10.
    pub fn multiplier(&self) -> Decimal {
        self.multiplier
    }

    /// `None`: every category.
    pub fn categories(&self) -> Option<&BTreeSet<String>> {
        self.categories.as_ref()
    }

    /// Whether an item of `category` in an order placed at `placed_at` is
    /// multiplied by this campaign.
    pub fn applies(&self, placed_at: DateTime<Utc>, category: &str) -> bool {
        (self.from..self.to).contains(&placed_at)
            && self
                .categories
                .as_ref()
                .is_none_or(|categories| categories.contains(category))
    }
}

impl RiskRules {
    pub fn same_buyer_orders_per_day(&self) -> u32 {
        self.same_buyer_orders_per_day
    }

    pub fn extra_hold_days(&self) -> u32 {
        self.extra_hold_days
    }
}

impl UpgradeRule {
    /// Settled level-1 sales, lifetime, net of refunds.
    pub fn own_sales(&self) -> Money {
        self.own_sales
    }

    /// Settled sales of the team within the three levels, if a condition.
    pub fn team_sales(&self) -> Option<Money> {
        self.team_sales
    }

    /// `true`: any condition suffices; `false`: all must hold.
    pub fn any(&self) -> bool {
        self.any
    }
}

impl ClearingRule {
    pub fn inactive_days(&self) -> u32 {
        self.inactive_days
    }
}

impl TeamBonus {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn threshold(&self) -> Money {
        self.threshold
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }
}

impl Override {
    pub fn target(&self) -> &OverrideTarget {
        &self.target
    }

    /// The grade this override is limited to; `None` for all grades.
    pub fn grade(&self) -> Option<&str> {
        self.grade.as_deref()
    }

    pub fn levels(&self) -> &[Rate] {
        &self.levels
    }

    /// The rate at `level` (1..=3); 0% past the end of the list.
    pub fn rate(&self, level: u8) -> Rate {
        level_rate(&self.levels, level)
    }
}

impl fmt::Display for OverrideTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverrideTarget::Category(category) => write!(f, "category \"{category}\""),
            OverrideTarget::Sku(sku) => write!(f, "sku \"{sku}\""),
        }
    }
}

fn level_rate(levels: &[Rate], level: u8) -> Rate {
    usize::from(level)
        .checked_sub(1)
        .and_then(|index| levels.get(index))
        .copied()
        .unwrap_or(Rate::ZERO)
}

/// The text being parsed and its name, to turn byte spans into `file:line`.
struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    /// The 1-based line of the first byte of `span`.
    fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|byte| **byte == b'\n')
            .count()
            + 1
    }

    fn toml_error(&self, error: &toml::de::Error) -> PlanError {
        PlanError::Invalid {
            file: self.file.to_owned(),
            line: error.span().map_or(1, |span| self.line(span)),
            message: error.message().to_owned(),
        }
    }
}

/// Why a key is refused before any other check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ForbiddenKey {
    /// Contains a [`PER_RECRUIT_KEY_FRAGMENTS`] fragment.
    PerRecruit,
    /// Contains a [`HEAD_COUNT_KEY_FRAGMENTS`] fragment (and no per-recruit one).
    HeadCount,
}

/// The first key (by position in the file) anywhere in the document whose
/// name contains a [`PER_RECRUIT_KEY_FRAGMENTS`] or
/// [`HEAD_COUNT_KEY_FRAGMENTS`] fragment, and which list it matched.
fn first_forbidden_key(table: &DeTable<'_>) -> Option<(ForbiddenKey, String, Range<usize>)> {
    let mut found: Option<(ForbiddenKey, String, Range<usize>)> = None;
    let mut consider = |key: &str, span: Range<usize>| {
        let lower = key.to_lowercase();
        let matches = |fragments: &[&str]| fragments.iter().any(|f| lower.contains(f));
        let kind = if matches(PER_RECRUIT_KEY_FRAGMENTS) {
            ForbiddenKey::PerRecruit
        } else if matches(HEAD_COUNT_KEY_FRAGMENTS) {
            ForbiddenKey::HeadCount
        } else {
            return;
        };
        let is_earlier = found
            .as_ref()
            .is_none_or(|(_, _, earlier)| span.start < earlier.start);
        if is_earlier {
            found = Some((kind, key.to_owned(), span));
        }
    };
    visit_keys(table, &mut consider);
    found
}

/// Calls `visit` with every key in the document, in tables, inline tables and
/// arrays of tables at any depth. The depth is bounded by the TOML parser's
/// own nesting limit.
fn visit_keys(table: &DeTable<'_>, visit: &mut impl FnMut(&str, Range<usize>)) {
    for (key, value) in table {
        visit(key.get_ref(), key.span());
        visit_value_keys(value.get_ref(), visit);
    }
}

fn visit_value_keys(value: &DeValue<'_>, visit: &mut impl FnMut(&str, Range<usize>)) {
    match value {
        DeValue::Table(table) => visit_keys(table, visit),
        DeValue::Array(array) => {
            for element in array.iter() {
                visit_value_keys(element.get_ref(), visit);
            }
        }
        DeValue::String(_)
        | DeValue::Integer(_)
        | DeValue::Float(_)
        | DeValue::Boolean(_)
        | DeValue::Datetime(_) => {}
    }
}

// ---- the file as written, before validation ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: Spanned<String>,
    #[serde(default)]
    effective_from: Option<Spanned<toml::Value>>,
    grades: Spanned<BTreeMap<String, Spanned<RawGrade>>>,
    default_grade: Spanned<String>,
    #[serde(default)]
    overrides: Vec<Spanned<RawOverride>>,
    #[serde(default)]
    excluded_skus: Vec<Spanned<String>>,
    #[serde(default)]
    order_cap: Option<Spanned<RawRate>>,
    #[serde(default)]
    self_purchase_pays: bool,
    #[serde(default)]
    tiers: Option<Spanned<RawTiers>>,
    #[serde(default)]
    campaigns: Vec<Spanned<RawCampaign>>,
    #[serde(default)]
    daily_cap: Option<Spanned<RawAmount>>,
    #[serde(default)]
    risk: Option<RawRisk>,
    #[serde(default)]
    clearing: Option<RawClearing>,
    #[serde(default)]
    team_bonus: Option<Spanned<RawTeamBonus>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrade {
    #[serde(default)]
    display_name: Option<Spanned<String>>,
    levels: Spanned<Vec<Spanned<RawRate>>>,
    #[serde(default)]
    upgrade: Option<RawUpgrade>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTiers {
    steps: Spanned<Vec<Spanned<RawTierStep>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTierStep {
    from: Spanned<RawAmount>,
    level1: Spanned<RawRate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    name: Spanned<String>,
    from: Spanned<toml::Value>,
    to: Spanned<toml::Value>,
    multiplier: Spanned<RawRate>,
    #[serde(default)]
    categories: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRisk {
    same_buyer_orders_per_day: Spanned<i64>,
    extra_hold_days: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpgrade {
    own_sales: Spanned<RawAmount>,
    #[serde(default)]
    team_sales: Option<Spanned<RawAmount>>,
    #[serde(default)]
    any: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClearing {
    inactive_days: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeamBonus {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    threshold: Option<Spanned<RawAmount>>,
    rate: Spanned<RawRate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    #[serde(default)]
    category: Option<Spanned<String>>,
    #[serde(default)]
    sku: Option<Spanned<String>>,
    #[serde(default)]
    grade: Option<Spanned<String>>,
    levels: Spanned<Vec<Spanned<RawRate>>>,
}

/// An amount (or a campaign multiplier) as written has the same shape as a
/// rate: a string to parse, or a bare number kept only to quote back.
type RawAmount = RawRate;

/// A rate as written: a string to parse, or a bare number kept only as text
/// to quote back in the error (never used as a rate).
enum RawRate {
    Text(String),
    Number(String),
}

impl<'de> Deserialize<'de> for RawRate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RawRate, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage string such as \"10%\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawRate, E> {
                Ok(RawRate::Text(text.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<RawRate, E> {
                Ok(RawRate::Number(number.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<RawRate, E> {
                Ok(RawRate::Number(number.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<RawRate, E> {
                Ok(RawRate::Number(number.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl RawPlan {
    /// The plan this file describes, or the first thing wrong with it,
    /// section by section in the order a reader meets them.
    fn validate(self, source: &Source<'_>) -> Result<Plan, PlanError> {
        let name = non_empty(self.name, "name", source)?;
        let effective_from = self
            .effective_from
            .map(|value| parse_effective_from(&value, source))
            .transpose()?;
        let grades = parse_grades(self.grades, source)?;
        let default_grade = position_of_grade(self.default_grade, &grades, source)?;
        let order_cap = match self.order_cap {
            Some(rate) => parse_rate(&rate, source)?,
            None => default_order_cap(),
        };
        let excluded_skus = self
            .excluded_skus
            .into_iter()
            .map(|sku| non_empty(sku, "an excluded sku", source))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let overrides = parse_overrides(self.overrides, &grades, source)?;
        let tiers = match self.tiers {
            Some(tiers) => parse_tiers(tiers.into_inner().steps, source)?,
            None => Vec::new(),
        };
        let campaigns = self
            .campaigns
            .into_iter()
            .map(|campaign| parse_campaign(campaign, source))
            .collect::<Result<Vec<_>, _>>()?;
        let daily_cap = self
            .daily_cap
            .map(|cap| parse_positive_amount(&cap, "daily_cap", source))
            .transpose()?;
        let risk = self
            .risk
            .map(|risk| {
                Ok::<_, PlanError>(RiskRules {
                    same_buyer_orders_per_day: parse_count(
                        &risk.same_buyer_orders_per_day,
                        1,
                        "same_buyer_orders_per_day",
                        source,
                    )?,
                    extra_hold_days: parse_count(
                        &risk.extra_hold_days,
                        0,
                        "extra_hold_days",
                        source,
                    )?,
                })
            })
            .transpose()?;
        let clearing = self
            .clearing
            .map(|clearing| {
                parse_count(&clearing.inactive_days, 1, "inactive_days", source)
                    .map(|inactive_days| ClearingRule { inactive_days })
            })
            .transpose()?;
        let team_bonus = self
            .team_bonus
            .map(|bonus| parse_team_bonus(bonus, source))
            .transpose()?;
        Ok(Plan {
            name,
            effective_from,
            grades,
            default_grade,
            overrides,
            excluded_skus,
            order_cap,
            self_purchase_pays: self.self_purchase_pays,
            tiers,
            campaigns,
            daily_cap,
            risk,
            clearing,
            team_bonus,
            source_text: source.text.to_owned(),
        })
    }
}

/// The grades in the order the file lists them (a TOML table has no order
/// of its own, so the spans give it).
fn parse_grades(
    raw_grades: Spanned<BTreeMap<String, Spanned<RawGrade>>>,
    source: &Source<'_>,
) -> Result<Vec<Grade>, PlanError> {
    let grades_span = raw_grades.span();
    let mut raw_grades: Vec<(String, Spanned<RawGrade>)> =
        raw_grades.into_inner().into_iter().collect();
    if raw_grades.is_empty() {
        return Err(PlanError::NoGrades {
            file: source.file.to_owned(),
            line: source.line(grades_span),
        });
    }
    raw_grades.sort_by_key(|(_, grade)| grade.span().start);
    raw_grades
        .into_iter()
        .map(|(key, raw)| parse_grade(key, raw, source))
        .collect()
}

fn parse_grade(
    key: String,
    raw: Spanned<RawGrade>,
    source: &Source<'_>,
) -> Result<Grade, PlanError> {
    if key.trim().is_empty() {
        return Err(PlanError::Empty {
            file: source.file.to_owned(),
            line: source.line(raw.span()),
            what: "a grade's key",
        });
    }
    let raw = raw.into_inner();
    let display_name = match raw.display_name {
        Some(display_name) => non_empty(display_name, "display_name", source)?,
        None => key.clone(),
    };
    let levels = parse_levels(raw.levels, source)?;
    let upgrade = raw
        .upgrade
        .map(|upgrade| parse_upgrade(upgrade, source))
        .transpose()?;
    Ok(Grade {
        key,
        display_name,
        levels,
        upgrade,
    })
}

/// Where `grade` sits among the plan's grades; an unknown grade is refused
/// with the list of known ones.
fn position_of_grade(
    grade: Spanned<String>,
    grades: &[Grade],
    source: &Source<'_>,
) -> Result<usize, PlanError> {
    let line = source.line(grade.span());
    let grade = grade.into_inner();
    grades
        .iter()
        .position(|known| known.key == grade)
        .ok_or_else(|| PlanError::UnknownGrade {
            file: source.file.to_owned(),
            line,
            grade,
            known: grades
                .iter()
                .map(|grade| format!("\"{}\"", grade.key))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The overrides, each naming exactly one target, a known grade if any, and
/// no (target, grade) pair twice.
fn parse_overrides(
    raw_overrides: Vec<Spanned<RawOverride>>,
    grades: &[Grade],
    source: &Source<'_>,
) -> Result<Vec<Override>, PlanError> {
    let mut overrides = Vec::with_capacity(raw_overrides.len());
    let mut first_lines: BTreeMap<(OverrideTarget, Option<String>), usize> = BTreeMap::new();
    for raw in raw_overrides {
        let override_line = source.line(raw.span());
        let raw = raw.into_inner();
        let target = parse_override_target(raw.category, raw.sku, override_line, source)?;
        let grade = match raw.grade {
            None => None,
            Some(grade) => {
                let position = position_of_grade(grade, grades, source)?;
                Some(grades[position].key.clone())
            }
        };
        let levels = parse_levels(raw.levels, source)?;
        let key = (target.clone(), grade.clone());
        if let Some(first_line) = first_lines.get(&key) {
            return Err(PlanError::DuplicateOverride {
                file: source.file.to_owned(),
                line: override_line,
                target: target.to_string(),
                grades: grade.map_or_else(
                    || "all grades".to_owned(),
                    |grade| format!("grade \"{grade}\""),
                ),
                first_line: *first_line,
            });
        }
        first_lines.insert(key, override_line);
        overrides.push(Override {
            target,
            grade,
            levels,
        });
    }
    Ok(overrides)
}

fn parse_override_target(
    category: Option<Spanned<String>>,
    sku: Option<Spanned<String>>,
    override_line: usize,
    source: &Source<'_>,
) -> Result<OverrideTarget, PlanError> {
    match (category, sku) {
        (Some(category), None) => Ok(OverrideTarget::Category(non_empty(
            category, "category", source,
        )?)),
        (None, Some(sku)) => Ok(OverrideTarget::Sku(non_empty(sku, "sku", source)?)),
        (Some(category), Some(sku)) => {
            let later = category.span().start.max(sku.span().start);
            Err(PlanError::OverrideHasBothTargets {
                file: source.file.to_owned(),
                line: source.line(later..later),
            })
        }
        (None, None) => Err(PlanError::OverrideHasNoTarget {
            file: source.file.to_owned(),
            line: override_line,
        }),
    }
}

fn non_empty(
    value: Spanned<String>,
    what: &'static str,
    source: &Source<'_>,
) -> Result<String, PlanError> {
    if value.get_ref().trim().is_empty() {
        return Err(PlanError::Empty {
            file: source.file.to_owned(),
            line: source.line(value.span()),
            what,
        });
    }
    Ok(value.into_inner())
}

fn parse_levels(
    levels: Spanned<Vec<Spanned<RawRate>>>,
    source: &Source<'_>,
) -> Result<Vec<Rate>, PlanError> {
    let levels = levels.into_inner();
    if let Some(first_too_deep) = levels.get(MAX_LEVELS) {
        return Err(PlanError::TooManyLevels {
            file: source.file.to_owned(),
            line: source.line(first_too_deep.span()),
            found: levels.len(),
        });
    }
    levels.iter().map(|rate| parse_rate(rate, source)).collect()
}

fn parse_rate(rate: &Spanned<RawRate>, source: &Source<'_>) -> Result<Rate, PlanError> {
    let file = source.file.to_owned();
    let line = source.line(rate.span());
    match rate.get_ref() {
        RawRate::Number(found) => Err(PlanError::RateIsANumber {
            file,
            line,
            found: found.clone(),
        }),
        RawRate::Text(text) => Rate::parse_percent(text).map_err(|error| match error {
            RateError::OutOfRange => PlanError::RateOutOfRange {
                file,
                line,
                text: text.clone(),
            },
            RateError::NotAPercentage => PlanError::RateNotAPercentage {
                file,
                line,
                text: text.clone(),
            },
        }),
    }
}

/// Accepts an RFC 3339 string or a TOML offset date-time; a local time with
/// no offset is refused, since it would be ambiguous across time zones.
fn parse_effective_from(
    value: &Spanned<toml::Value>,
    source: &Source<'_>,
) -> Result<DateTime<Utc>, PlanError> {
    time_with_offset(value.get_ref()).ok_or_else(|| PlanError::InvalidEffectiveFrom {
        file: source.file.to_owned(),
        line: source.line(value.span()),
    })
}

/// An RFC 3339 string or a TOML offset date-time; `None` for anything else,
/// a local time with no offset included.
fn time_with_offset(value: &toml::Value) -> Option<DateTime<Utc>> {
    let text = match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Datetime(datetime) => datetime.to_string(),
        _ => return None,
    };
    DateTime::parse_from_rfc3339(&text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// An amount of yuan written as a string (`"500.00"`); the sign is kept so a
/// negative one is refused by its caller's range, not as unreadable.
fn parse_amount(raw: &Spanned<RawAmount>, source: &Source<'_>) -> Result<Money, PlanError> {
    let invalid = |found: String| PlanError::InvalidAmount {
        file: source.file.to_owned(),
        line: source.line(raw.span()),
        found,
    };
    match raw.get_ref() {
        RawAmount::Number(found) => Err(invalid(found.clone())),
        RawAmount::Text(text) => {
            Money::parse_signed(text.trim()).map_err(|_| invalid(format!("\"{text}\"")))
        }
    }
}

/// An amount more than 0.00 (caps and thresholds).
fn parse_positive_amount(
    raw: &Spanned<RawAmount>,
    what: &'static str,
    source: &Source<'_>,
) -> Result<Money, PlanError> {
    parse_amount_within(
        raw,
        what,
        |amount| amount > Money::ZERO,
        "more than 0.00",
        source,
    )
}

/// An amount of 0.00 or more (sales figures).
fn parse_non_negative_amount(
    raw: &Spanned<RawAmount>,
    what: &'static str,
    source: &Source<'_>,
) -> Result<Money, PlanError> {
    parse_amount_within(
        raw,
        what,
        |amount| !amount.is_negative(),
        "0.00 or more",
        source,
    )
}

fn parse_amount_within(
    raw: &Spanned<RawAmount>,
    what: &'static str,
    allowed: fn(Money) -> bool,
    expected: &'static str,
    source: &Source<'_>,
) -> Result<Money, PlanError> {
    let amount = parse_amount(raw, source)?;
    if !allowed(amount) {
        return Err(PlanError::OutOfRange {
            file: source.file.to_owned(),
            line: source.line(raw.span()),
            what,
            expected,
            found: amount.to_string(),
        });
    }
    Ok(amount)
}

/// A whole number of days or orders, at least `min`.
fn parse_count(
    raw: &Spanned<i64>,
    min: u32,
    what: &'static str,
    source: &Source<'_>,
) -> Result<u32, PlanError> {
    u32::try_from(*raw.get_ref())
        .ok()
        .filter(|count| *count >= min)
        .ok_or_else(|| PlanError::OutOfRange {
            file: source.file.to_owned(),
            line: source.line(raw.span()),
            what,
            expected: if min == 0 {
                "a whole number, 0 or more"
            } else {
                "a whole number, 1 or more"
            },
            found: raw.get_ref().to_string(),
        })
}

/// The tier steps: at least one, the first from 0.00, `from` strictly
/// increasing, so exactly one step applies to any month's sales.
fn parse_tiers(
    raw_steps: Spanned<Vec<Spanned<RawTierStep>>>,
    source: &Source<'_>,
) -> Result<Vec<TierStep>, PlanError> {
    let steps_line = source.line(raw_steps.span());
    let raw_steps = raw_steps.into_inner();
    if raw_steps.is_empty() {
        return Err(PlanError::Empty {
            file: source.file.to_owned(),
            line: steps_line,
            what: "[tiers] steps",
        });
    }
    let mut steps: Vec<TierStep> = Vec::with_capacity(raw_steps.len());
    for raw in &raw_steps {
        let raw = raw.get_ref();
        let from = parse_non_negative_amount(&raw.from, "a tier step's `from`", source)?;
        let line = source.line(raw.from.span());
        match steps.last() {
            None if from != Money::ZERO => {
                return Err(PlanError::TiersDoNotStartAtZero {
                    file: source.file.to_owned(),
                    line,
                    found: from,
                });
            }
            Some(previous) if from <= previous.from => {
                return Err(PlanError::TierStepsOutOfOrder {
                    file: source.file.to_owned(),
                    line,
                    found: from,
                    previous: previous.from,
                });
            }
            _ => {}
        }
        let level1 = parse_rate(&raw.level1, source)?;
        steps.push(TierStep { from, level1 });
    }
    Ok(steps)
}

fn parse_campaign(raw: Spanned<RawCampaign>, source: &Source<'_>) -> Result<Campaign, PlanError> {
    let raw = raw.into_inner();
    let name = non_empty(raw.name, "a campaign's name", source)?;
    let time = |value: &Spanned<toml::Value>, what: &'static str| {
        time_with_offset(value.get_ref()).ok_or_else(|| PlanError::InvalidTime {
            file: source.file.to_owned(),
            line: source.line(value.span()),
            what,
        })
    };
    let from = time(&raw.from, "a campaign's `from`")?;
    let to = time(&raw.to, "a campaign's `to`")?;
    if to <= from {
        return Err(PlanError::CampaignEndsBeforeItStarts {
            file: source.file.to_owned(),
            line: source.line(raw.to.span()),
            name,
        });
    }
    let multiplier = parse_multiplier(&raw.multiplier, source)?;
    let categories = match raw.categories {
        None => None,
        Some(categories) => {
            if categories.get_ref().is_empty() {
                return Err(PlanError::Empty {
                    file: source.file.to_owned(),
                    line: source.line(categories.span()),
                    what: "a campaign's categories (leave the key out for all categories)",
                });
            }
            let categories = categories
                .into_inner()
                .into_iter()
                .map(|category| non_empty(category, "a campaign's category", source))
                .collect::<Result<BTreeSet<_>, _>>()?;
            Some(categories)
        }
    };
    Ok(Campaign {
        name,
        from,
        to,
        multiplier,
        categories,
    })
}

/// A decimal string greater than 0 and at most [`MAX_CAMPAIGN_MULTIPLIER`].
fn parse_multiplier(raw: &Spanned<RawRate>, source: &Source<'_>) -> Result<Decimal, PlanError> {
    let (found, parsed) = match raw.get_ref() {
        RawRate::Number(found) => (found.clone(), None),
        RawRate::Text(text) => (
            format!("\"{text}\""),
            Decimal::from_str_exact(text.trim()).ok(),
        ),
    };
    parsed
        .filter(|multiplier| *multiplier > Decimal::ZERO && *multiplier <= MAX_CAMPAIGN_MULTIPLIER)
        .map(|multiplier| multiplier.normalize())
        .ok_or_else(|| PlanError::OutOfRange {
            file: source.file.to_owned(),
            line: source.line(raw.span()),
            what: "a campaign's multiplier",
            expected: "a decimal string above 0 and at most 10, such as \"2\" or \"1.5\"",
            found,
        })
}

fn parse_upgrade(raw: RawUpgrade, source: &Source<'_>) -> Result<UpgradeRule, PlanError> {
    Ok(UpgradeRule {
        own_sales: parse_non_negative_amount(&raw.own_sales, "own_sales", source)?,
        team_sales: raw
            .team_sales
            .map(|sales| parse_non_negative_amount(&sales, "team_sales", source))
            .transpose()?,
        any: raw.any,
    })
}

fn parse_team_bonus(
    raw: Spanned<RawTeamBonus>,
    source: &Source<'_>,
) -> Result<TeamBonus, PlanError> {
    let line = source.line(raw.span());
    let raw = raw.into_inner();
    let threshold = raw
        .threshold
        .ok_or_else(|| PlanError::TeamBonusWithoutThreshold {
            file: source.file.to_owned(),
            line,
        })?;
    Ok(TeamBonus {
        enabled: raw.enabled,
        threshold: parse_positive_amount(&threshold, "threshold", source)?,
        rate: parse_rate(&raw.rate, source)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "plans/x.toml";

    fn rate(text: &str) -> Rate {
        Rate::parse_percent(text).unwrap()
    }

    fn refusal(text: &str) -> PlanError {
        Plan::parse(text, FILE).expect_err("the plan should be refused")
    }

    /// A small valid plan; tests append or replace lines to break it.
    const BASE: &str = r#"name = "test"
default_grade = "regular"

[grades.regular]
display_name = "普通"
levels = ["10%", "5%", "2%"]

[grades.gold]
display_name = "金牌"
levels = ["12%", "6%", "3%"]
"#;

    #[test]
    fn the_shipped_default_plan_parses_with_the_documented_rates() {
        let plan = Plan::parse(
            include_str!("../../workflows/plans/default.toml"),
            SHIPPED_DEFAULT_FILE,
        )
        .unwrap();
        assert_eq!(plan, Plan::shipped_default().unwrap());
        assert_eq!(plan.name(), "default");
        assert_eq!(plan.effective_from(), None);
        let grades: Vec<(&str, &str, Vec<String>)> = plan
            .grades()
            .iter()
            .map(|grade| {
                let levels = grade.levels().iter().map(Rate::to_string).collect();
                (grade.key(), grade.display_name(), levels)
            })
            .collect();
        let expected = |levels: [&str; 3]| levels.map(str::to_owned).to_vec();
        assert_eq!(
            grades,
            vec![
                ("regular", "普通", expected(["10%", "5%", "2%"])),
                ("gold", "金牌", expected(["12%", "6%", "3%"])),
                ("partner", "合伙人", expected(["15%", "8%", "3%"])),
            ]
        );
        assert_eq!(plan.default_grade().key(), "regular");
        assert_eq!(plan.order_cap(), rate("30%"));
        assert!(!plan.self_purchase_pays());
        assert!(plan.excluded_skus().is_empty());
        assert!(plan.overrides().is_empty());
        assert_eq!(plan.source_text(), SHIPPED_DEFAULT_TOML);
    }

    #[test]
    fn the_commented_example_override_in_the_default_plan_is_itself_valid() {
        // Uncomment the example as the file tells an admin to: the lines
        // from `# [[overrides]]` on lose their leading "# ".
        let example_start = SHIPPED_DEFAULT_TOML.find("# [[overrides]]").unwrap();
        let (head, example) = SHIPPED_DEFAULT_TOML.split_at(example_start);
        let example: String = example
            .lines()
            .map(|line| format!("{}\n", line.strip_prefix("# ").unwrap_or(line)))
            .collect();
        let uncommented = format!("{head}{example}");
        let plan = Plan::parse(&uncommented, SHIPPED_DEFAULT_FILE).unwrap();
        assert_eq!(plan.overrides().len(), 1);
        assert_eq!(plan.rate("gold", "any", "groceries", 1), rate("3%"));
        assert_eq!(plan.rate("gold", "any", "groceries", 2), rate("1%"));
        assert_eq!(plan.rate("gold", "any", "groceries", 3), Rate::ZERO);
        assert_eq!(plan.rate("partner", "any", "groceries", 1), rate("15%"));
    }

    #[test]
    fn optional_keys_take_their_documented_defaults() {
        let plan = Plan::parse(BASE, FILE).unwrap();
        assert_eq!(plan.order_cap(), rate("30%"));
        assert!(!plan.self_purchase_pays());
        assert_eq!(plan.effective_from(), None);
        assert_eq!(plan.grades()[0].key(), "regular", "grades keep file order");
    }

    #[test]
    fn all_keys_are_read_when_present() {
        let text = format!(
            "{BASE}\n[grades.partner]\nlevels = [\"15%\"]\n\n\
             [[overrides]]\nsku = \"S1\"\ngrade = \"gold\"\nlevels = [\"1%\"]\n"
        )
        .replace(
            "name = \"test\"\n",
            "name = \"test\"\neffective_from = \"2025-11-01T00:00:00+08:00\"\n\
             order_cap = \"25%\"\nself_purchase_pays = true\nexcluded_skus = [\"GIFT\"]\n",
        );
        let plan = Plan::parse(&text, FILE).unwrap();
        assert_eq!(
            plan.effective_from().unwrap().to_rfc3339(),
            "2025-10-31T16:00:00+00:00"
        );
        assert_eq!(plan.order_cap(), rate("25%"));
        assert!(plan.self_purchase_pays());
        assert!(plan.is_excluded("GIFT"));
        assert!(!plan.is_excluded("S1"));
        let partner = plan.grade("partner").unwrap();
        assert_eq!(partner.display_name(), "partner", "defaults to the key");
        assert_eq!(partner.rate(1), rate("15%"));
        assert_eq!(
            partner.rate(2),
            Rate::ZERO,
            "a short list pays nothing deeper"
        );
        let rule = &plan.overrides()[0];
        assert_eq!(rule.target(), &OverrideTarget::Sku("S1".to_owned()));
        assert_eq!(rule.grade(), Some("gold"));
    }

    #[test]
    fn effective_from_accepts_a_toml_offset_datetime_but_not_a_local_one() {
        let with_offset = BASE.replace(
            "name = \"test\"\n",
            "name = \"test\"\neffective_from = 2025-11-01T00:00:00Z\n",
        );
        let plan = Plan::parse(&with_offset, FILE).unwrap();
        assert_eq!(
            plan.effective_from().unwrap().to_rfc3339(),
            "2025-11-01T00:00:00+00:00"
        );
        let local = BASE.replace(
            "name = \"test\"\n",
            "name = \"test\"\neffective_from = \"2025-11-01T00:00:00\"\n",
        );
        let error = refusal(&local);
        assert!(matches!(error, PlanError::InvalidEffectiveFrom { .. }));
        assert!(error.to_string().starts_with("plans/x.toml:2: "), "{error}");
    }

    #[test]
    fn a_fourth_level_is_refused_as_pyramid_selling_with_its_line() {
        let text = BASE.replace(
            "levels = [\"12%\", \"6%\", \"3%\"]",
            "levels = [\"12%\", \"6%\", \"3%\", \"1%\"]",
        );
        let error = refusal(&text);
        assert_eq!(
            error.to_string(),
            "plans/x.toml:10: at most 3 commission levels are allowed \
             (more is pyramid selling under Chinese law); this list has 4"
        );
        assert_eq!(error.line(), 10);
        assert_eq!(error.file(), FILE);
    }

    #[test]
    fn a_fourth_level_in_an_override_is_refused_too() {
        let text = format!(
            "{BASE}\n[[overrides]]\ncategory = \"books\"\nlevels = [\n  \"4%\",\n  \"3%\",\n  \"2%\",\n  \"1%\",\n]\n"
        );
        let error = refusal(&text);
        assert!(matches!(error, PlanError::TooManyLevels { found: 4, .. }));
        // Points at the fourth rate itself.
        assert!(
            error.to_string().starts_with("plans/x.toml:18: "),
            "{error}"
        );
    }

    #[test]
    fn a_rate_above_one_hundred_percent_is_refused_with_its_line() {
        let text = BASE.replace("\"12%\"", "\"101%\"");
        assert_eq!(
            refusal(&text).to_string(),
            "plans/x.toml:10: rate \"101%\" is outside 0%–100%"
        );
    }

    #[test]
    fn a_negative_rate_is_refused_with_its_line() {
        let text = BASE.replace("\"5%\"", "\"-1%\"");
        assert_eq!(
            refusal(&text).to_string(),
            "plans/x.toml:6: rate \"-1%\" is outside 0%–100%"
        );
    }

    #[test]
    fn a_float_rate_is_refused_with_a_hint_to_write_a_percentage_string() {
        let text = BASE.replace("\"10%\"", "0.1");
        assert_eq!(
            refusal(&text).to_string(),
            "plans/x.toml:6: rate 0.1 is a bare number; write rates as percentage \
             strings in quotes, such as \"10%\""
        );
    }

    #[test]
    fn an_integer_rate_and_a_string_without_percent_are_refused_too() {
        let integer = BASE.replace(
            "default_grade = \"regular\"\n",
            "default_grade = \"regular\"\norder_cap = 30\n",
        );
        let error = refusal(&integer);
        assert!(
            matches!(error, PlanError::RateIsANumber { line: 3, .. }),
            "{error}"
        );
        let no_percent = BASE.replace("\"2%\"", "\"2\"");
        let error = refusal(&no_percent);
        assert!(error.to_string().contains("\"10%\""), "{error}");
        assert!(matches!(
            error,
            PlanError::RateNotAPercentage { line: 6, .. }
        ));
    }

    #[test]
    fn a_per_recruit_key_is_refused_with_the_reason_and_its_line() {
        let text = BASE.replace(
            "[grades.gold]\n",
            "[grades.gold]\nper_recruit_bonus = \"5.00\"\n",
        );
        assert_eq!(
            refusal(&text).to_string(),
            "plans/x.toml:9: `per_recruit_bonus` would pay per person recruited; pay may \
             only be computed from sales amounts, never from the number of people recruited \
             (Chinese law treats that as pyramid selling)"
        );
    }

    #[test]
    fn every_per_recruit_spelling_is_caught_anywhere_in_the_file() {
        for key in [
            "SignUp_Reward",
            "invite_bonus",
            "pay_per_referral",
            "per_head",
            "headcount_bonus",
            "recruits",
        ] {
            let top = format!("{key} = \"1.00\"\n{BASE}");
            let error = refusal(&top);
            assert!(
                matches!(&error, PlanError::PaysPerRecruit { line: 1, key: found, .. } if found == key),
                "{key}: {error}"
            );
            let nested = format!(
                "{BASE}\n[[overrides]]\nsku = \"A\"\nlevels = []\nbonus = {{ {key} = 1 }}\n"
            );
            assert!(
                matches!(refusal(&nested), PlanError::PaysPerRecruit { line: 15, .. }),
                "{key}"
            );
        }
    }

    #[test]
    fn other_unknown_keys_are_refused_with_their_line() {
        let text = BASE.replace("[grades.gold]\n", "[grades.gold]\nbonus = \"5%\"\n");
        let error = refusal(&text);
        assert!(
            matches!(error, PlanError::Invalid { line: 9, .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("unknown field `bonus`"),
            "{error}"
        );
    }

    #[test]
    fn a_version_key_is_refused_because_the_store_assigns_versions() {
        let error = refusal(&format!("version = 3\n{BASE}"));
        assert!(
            matches!(error, PlanError::VersionInFile { line: 1, .. }),
            "{error}"
        );
    }

    #[test]
    fn syntax_errors_carry_the_line_of_the_mistake() {
        let error = refusal(&BASE.replace("levels = [\"12%\"", "levels = [\"12%\" \"1%\""));
        assert!(
            matches!(error, PlanError::Invalid { line: 10, .. }),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_default_grade_is_refused_with_its_line() {
        let error =
            refusal(&BASE.replace("default_grade = \"regular\"", "default_grade = \"vip\""));
        assert_eq!(
            error.to_string(),
            "plans/x.toml:2: unknown grade \"vip\"; this plan's grades are \"regular\", \"gold\""
        );
    }

    #[test]
    fn an_override_for_an_unknown_grade_is_refused_with_its_line() {
        let text = format!(
            "{BASE}\n[[overrides]]\ncategory = \"books\"\ngrade = \"vip\"\nlevels = [\"1%\"]\n"
        );
        let error = refusal(&text);
        assert!(
            matches!(error, PlanError::UnknownGrade { line: 14, .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with("plans/x.toml:14: unknown grade \"vip\"")
        );
    }

    #[test]
    fn an_override_with_both_category_and_sku_is_refused_with_its_line() {
        let text = format!(
            "{BASE}\n[[overrides]]\ncategory = \"books\"\nsku = \"B1\"\nlevels = [\"1%\"]\n"
        );
        assert_eq!(
            refusal(&text).to_string(),
            "plans/x.toml:14: an override names both `category` and `sku`; give exactly one"
        );
    }

    #[test]
    fn an_override_with_neither_category_nor_sku_is_refused() {
        let text = format!("{BASE}\n[[overrides]]\ngrade = \"gold\"\nlevels = [\"1%\"]\n");
        let error = refusal(&text);
        assert!(
            matches!(error, PlanError::OverrideHasNoTarget { .. }),
            "{error}"
        );
        assert_eq!(error.line(), 12, "points at the [[overrides]] header");
    }

    #[test]
    fn duplicate_overrides_for_the_same_target_and_grade_are_refused() {
        let one = "[[overrides]]\nsku = \"B1\"\nlevels = [\"1%\"]\n";
        let error = refusal(&format!("{BASE}\n{one}\n{one}"));
        assert!(
            matches!(
                error,
                PlanError::DuplicateOverride {
                    line: 16,
                    first_line: 12,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains("sku \"B1\" and all grades"),
            "{error}"
        );

        // The same sku for one grade and for all grades is not a duplicate,
        // nor is a category with the same name as a sku.
        let gold = "[[overrides]]\nsku = \"B1\"\ngrade = \"gold\"\nlevels = [\"2%\"]\n";
        let category = "[[overrides]]\ncategory = \"B1\"\nlevels = [\"3%\"]\n";
        assert!(Plan::parse(&format!("{BASE}\n{one}\n{gold}\n{category}"), FILE).is_ok());
    }

    #[test]
    fn an_empty_grades_table_is_refused() {
        let text = "name = \"test\"\ndefault_grade = \"regular\"\n[grades]\n";
        let error = refusal(text);
        assert!(matches!(error, PlanError::NoGrades { .. }), "{error}");
        assert!(error.to_string().starts_with("plans/x.toml:3: "), "{error}");
    }

    #[test]
    fn overrides_resolve_from_most_to_least_specific() {
        let text = format!(
            "{BASE}
[[overrides]]
category = \"books\"
levels = [\"4%\", \"3%\"]

[[overrides]]
category = \"books\"
grade = \"gold\"
levels = [\"7%\"]

[[overrides]]
sku = \"B1\"
levels = [\"1%\", \"1%\", \"1%\"]

[[overrides]]
sku = \"B1\"
grade = \"gold\"
levels = [\"9%\"]
"
        );
        let plan = Plan::parse(&text, FILE).unwrap();
        // sku + grade beats everything
        assert_eq!(plan.rate("gold", "B1", "books", 1), rate("9%"));
        assert_eq!(plan.rate("gold", "B1", "books", 2), Rate::ZERO);
        // sku for all grades beats category + grade
        assert_eq!(plan.rate("regular", "B1", "books", 2), rate("1%"));
        // category + grade beats category for all grades
        assert_eq!(plan.rate("gold", "B2", "books", 1), rate("7%"));
        assert_eq!(plan.rate("regular", "B2", "books", 1), rate("4%"));
        // no override: the grade's own rate
        assert_eq!(plan.rate("gold", "X", "toys", 1), rate("12%"));
        // an unknown grade reads as the default grade
        assert_eq!(plan.rate("vip", "X", "toys", 2), rate("5%"));
        assert_eq!(plan.rate("vip", "B2", "books", 1), rate("4%"));
        // levels outside 1..=3 pay nothing
        assert_eq!(plan.rate("gold", "X", "toys", 0), Rate::ZERO);
        assert_eq!(plan.rate("gold", "X", "toys", 4), Rate::ZERO);
    }
    /// Every v2 table at once, as the issue writes them; `daily_cap` is a
    /// top-level key, so [`v2_text`] puts it before the first header.
    const V2: &str = r#"
[tiers]
steps = [ { from = "0.00", level1 = "10%" }, { from = "10000.00", level1 = "15%" }, { from = "30000.00", level1 = "20%" } ]

[[campaigns]]
name = "双11"
from = 2026-11-11T00:00:00+08:00
to   = 2026-11-12T00:00:00+08:00
multiplier = "2"
categories = ["beauty"]

[risk]
same_buyer_orders_per_day = 5
extra_hold_days = 7

[grades.gold.upgrade]
own_sales = "50000.00"
team_sales = "200000.00"
any = true

[clearing]
inactive_days = 90

[team_bonus]
enabled = false
threshold = "100000.00"
rate = "1%"
"#;

    fn v2_text() -> String {
        format!("daily_cap = \"500.00\"\n{BASE}{V2}")
    }

    fn money(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    #[test]
    fn every_v2_section_is_read_through_its_accessor() {
        let plan = Plan::parse(&v2_text(), FILE).unwrap();
        assert!(plan.uses_v2_rules());
        let steps: Vec<(Money, Rate)> = plan
            .tiers()
            .iter()
            .map(|step| (step.from(), step.level1()))
            .collect();
        assert_eq!(
            steps,
            vec![
                (money("0.00"), rate("10%")),
                (money("10000.00"), rate("15%")),
                (money("30000.00"), rate("20%")),
            ]
        );
        assert_eq!(
            plan.tier_for(money("9999.99")).unwrap().level1(),
            rate("10%")
        );
        assert_eq!(
            plan.tier_for(money("10000.00")).unwrap().level1(),
            rate("15%")
        );
        let campaign = &plan.campaigns()[0];
        assert_eq!(campaign.name(), "双11");
        assert_eq!(campaign.from().to_rfc3339(), "2026-11-10T16:00:00+00:00");
        assert_eq!(campaign.to().to_rfc3339(), "2026-11-11T16:00:00+00:00");
        assert_eq!(campaign.multiplier(), Decimal::TWO);
        assert!(campaign.applies(campaign.from(), "beauty"));
        assert!(!campaign.applies(campaign.to(), "beauty"), "[from, to)");
        assert!(!campaign.applies(campaign.from(), "toys"));
        assert_eq!(plan.daily_cap(), Some(money("500.00")));
        let risk = plan.risk().unwrap();
        assert_eq!(
            (risk.same_buyer_orders_per_day(), risk.extra_hold_days()),
            (5, 7)
        );
        let upgrade = plan.upgrade("gold").unwrap();
        assert_eq!(upgrade.own_sales(), money("50000.00"));
        assert_eq!(upgrade.team_sales(), Some(money("200000.00")));
        assert!(upgrade.any());
        assert_eq!(plan.upgrade("regular"), None);
        assert_eq!(plan.clearing().unwrap().inactive_days(), 90);
        let bonus = plan.team_bonus().unwrap();
        assert!(!bonus.enabled());
        assert_eq!(bonus.threshold(), money("100000.00"));
        assert_eq!(bonus.rate(), rate("1%"));
    }

    #[test]
    fn a_v1_plan_uses_no_v2_rules_and_each_section_alone_makes_it_v2() {
        assert!(!Plan::parse(BASE, FILE).unwrap().uses_v2_rules());
        assert!(!Plan::shipped_default().unwrap().uses_v2_rules());
        let upgrade = BASE.replace(
            "[grades.gold]\n",
            "[grades.gold.upgrade]\nown_sales = \"1.00\"\n\n[grades.gold]\n",
        );
        for text in [
            format!("daily_cap = \"1.00\"\n{BASE}"),
            format!("{BASE}\n[tiers]\nsteps = [{{ from = \"0.00\", level1 = \"1%\" }}]\n"),
            format!(
                "{BASE}\n[[campaigns]]\nname = \"c\"\nfrom = 2026-01-01T00:00:00Z\n\
                 to = 2026-01-02T00:00:00Z\nmultiplier = \"1.5\"\n"
            ),
            format!("{BASE}\n[risk]\nsame_buyer_orders_per_day = 1\nextra_hold_days = 0\n"),
            format!("{BASE}\n[clearing]\ninactive_days = 1\n"),
            format!("{BASE}\n[team_bonus]\nthreshold = \"1.00\"\nrate = \"1%\"\n"),
            upgrade,
        ] {
            let plan = Plan::parse(&text, FILE).unwrap_or_else(|error| panic!("{error}\n{text}"));
            assert!(plan.uses_v2_rules(), "{text}");
        }
    }

    /// The 1-based line of the first occurrence of `needle` in `text`.
    fn line_of(text: &str, needle: &str) -> usize {
        text[..text.find(needle).unwrap()].matches('\n').count() + 1
    }

    #[test]
    fn a_condition_on_the_number_of_people_is_refused_anywhere_with_its_line() {
        let text = v2_text();
        let upgrade_line = line_of(&text, "any = true");
        for key in [
            "invitees",
            "team_size",
            "members",
            "headcount",
            "recruits",
            "direct_referrals",
        ] {
            let error = refusal(&text.replace("any = true", &format!("{key} = 30")));
            assert!(
                matches!(
                    &error,
                    PlanError::CountsPeople { line, key: found, .. }
                        | PlanError::PaysPerRecruit { line, key: found, .. }
                        if found == key && *line == upgrade_line
                ),
                "{key}: {error}"
            );
        }
        let error = refusal(&text.replace("any = true", "team_size = 30"));
        assert_eq!(
            error.to_string(),
            format!(
                "plans/x.toml:{upgrade_line}: `team_size` is a condition on the number of \
                 people; rates, grades and bonuses may only depend on sales amounts, never \
                 on head count (Chinese law treats pay by head count as pyramid selling)"
            )
        );
        let bonus_line = line_of(&text, "enabled = false");
        let in_bonus = text.replace("enabled = false", "min_members = 3");
        assert_eq!(refusal(&in_bonus).line(), bonus_line);
        assert!(matches!(refusal(&in_bonus), PlanError::CountsPeople { .. }));
    }

    #[test]
    fn tier_steps_must_start_at_zero_and_strictly_increase() {
        let steps = |list: &str| format!("{BASE}\n[tiers]\nsteps = [\n{list}\n]\n");
        let error = refusal(&steps("{ from = \"100.00\", level1 = \"10%\" },"));
        assert_eq!(
            error.to_string(),
            "plans/x.toml:14: the first tier step must start from \"0.00\", so every \
             sale has a tier; found \"100.00\""
        );
        let overlapping = steps(
            "{ from = \"0.00\", level1 = \"10%\" },\n{ from = \"500.00\", level1 = \"12%\" },\n\
             { from = \"500.00\", level1 = \"15%\" },",
        );
        assert!(matches!(
            refusal(&overlapping),
            PlanError::TierStepsOutOfOrder { line: 16, .. }
        ));
        let unordered = steps(
            "{ from = \"0.00\", level1 = \"10%\" },\n{ from = \"500.00\", level1 = \"12%\" },\n\
             { from = \"200.00\", level1 = \"15%\" },",
        );
        assert_eq!(
            refusal(&unordered).to_string(),
            "plans/x.toml:16: tier step from \"200.00\" does not start above the previous \
             step's \"500.00\"; list steps by strictly increasing `from`"
        );
        assert!(matches!(
            refusal(&steps("")),
            PlanError::Empty { line: 13, .. }
        ));
        type Expected = fn(&PlanError) -> bool;
        let one_bad_step: [(&str, Expected); 4] = [
            ("{ from = 0, level1 = \"10%\" },", |error| {
                matches!(error, PlanError::InvalidAmount { line: 14, .. })
            }),
            ("{ from = \"-1.00\", level1 = \"10%\" },", |error| {
                matches!(error, PlanError::OutOfRange { line: 14, .. })
            }),
            ("{ from = \"0.00\", level1 = \"110%\" },", |error| {
                matches!(error, PlanError::RateOutOfRange { line: 14, .. })
            }),
            (
                "{ from = \"0.00\", level1 = \"10%\", level2 = \"5%\" },",
                |error| matches!(error, PlanError::Invalid { line: 14, .. }),
            ),
        ];
        for (step, expected) in one_bad_step {
            let error = refusal(&steps(step));
            assert!(expected(&error), "{step}: {error}");
        }
    }

    #[test]
    fn a_campaign_must_end_after_it_starts_and_multiply_by_more_than_0_up_to_10() {
        let campaign = |from: &str, to: &str, multiplier: &str| {
            format!(
                "{BASE}\n[[campaigns]]\nname = \"c\"\nfrom = {from}\nto = {to}\nmultiplier = {multiplier}\n"
            )
        };
        let (day, next) = ("2026-11-11T00:00:00+08:00", "2026-11-12T00:00:00+08:00");
        assert!(Plan::parse(&campaign(day, next, "\"10\""), FILE).is_ok());
        let error = refusal(&campaign(day, day, "\"2\""));
        assert_eq!(
            error.to_string(),
            "plans/x.toml:15: campaign \"c\" ends at or before it starts (`to` ≤ `from`)"
        );
        assert!(matches!(
            refusal(&campaign(next, day, "\"2\"")),
            PlanError::CampaignEndsBeforeItStarts { line: 15, .. }
        ));
        for multiplier in ["\"0\"", "\"-1\"", "\"10.01\"", "\"two\"", "2"] {
            let error = refusal(&campaign(day, next, multiplier));
            assert!(
                matches!(
                    error,
                    PlanError::OutOfRange {
                        line: 16,
                        what: "a campaign's multiplier",
                        ..
                    }
                ),
                "{multiplier}: {error}"
            );
        }
        let local = refusal(&campaign("2026-11-11T00:00:00", next, "\"2\""));
        assert!(
            matches!(local, PlanError::InvalidTime { line: 14, .. }),
            "{local}"
        );
        let no_categories = campaign(day, next, "\"2\"") + "categories = []\n";
        assert!(matches!(
            refusal(&no_categories),
            PlanError::Empty { line: 17, .. }
        ));
        let typo = campaign(day, next, "\"2\"") + "multiplyer = \"3\"\n";
        assert!(matches!(
            refusal(&typo),
            PlanError::Invalid { line: 17, .. }
        ));
    }

    #[test]
    fn a_daily_cap_of_zero_or_less_is_refused_with_its_line() {
        for cap in ["\"0.00\"", "\"-5.00\""] {
            let error = refusal(&format!("daily_cap = {cap}\n{BASE}"));
            assert!(
                matches!(
                    error,
                    PlanError::OutOfRange {
                        line: 1,
                        what: "daily_cap",
                        ..
                    }
                ),
                "{error}"
            );
        }
        assert_eq!(
            refusal(&format!("daily_cap = \"0\"\n{BASE}")).to_string(),
            "plans/x.toml:1: daily_cap must be more than 0.00; found 0.00"
        );
        assert!(matches!(
            refusal(&format!("daily_cap = 500\n{BASE}")),
            PlanError::InvalidAmount { line: 1, .. }
        ));
    }

    #[test]
    fn a_team_bonus_without_a_threshold_is_refused_with_its_line() {
        let text = format!("{BASE}\n[team_bonus]\nenabled = true\nrate = \"1%\"\n");
        assert_eq!(
            refusal(&text).to_string(),
            "plans/x.toml:12: [team_bonus] has no `threshold`; a team bonus is only paid \
             once the team's settled sales reach one"
        );
        let zero = format!("{BASE}\n[team_bonus]\nthreshold = \"0.00\"\nrate = \"1%\"\n");
        assert!(matches!(
            refusal(&zero),
            PlanError::OutOfRange { line: 13, .. }
        ));
    }

    #[test]
    fn risk_and_clearing_counts_are_whole_numbers_in_range() {
        let risk = |limit: &str| {
            format!("{BASE}\n[risk]\nsame_buyer_orders_per_day = {limit}\nextra_hold_days = 7\n")
        };
        assert!(matches!(
            refusal(&risk("0")),
            PlanError::OutOfRange { line: 13, .. }
        ));
        assert!(matches!(
            refusal(&risk("\"5\"")),
            PlanError::Invalid { line: 13, .. }
        ));
        let clearing = format!("{BASE}\n[clearing]\ninactive_days = -1\n");
        assert!(matches!(
            refusal(&clearing),
            PlanError::OutOfRange { line: 13, .. }
        ));
        let unknown = format!("{BASE}\n[clearing]\ninactive_days = 90\ngrace_days = 3\n");
        assert!(matches!(
            refusal(&unknown),
            PlanError::Invalid { line: 14, .. }
        ));
    }

    #[test]
    fn the_commented_v2_examples_in_the_default_plan_are_themselves_valid() {
        // From the line after the opening marker to the closing marker.
        let marker = SHIPPED_DEFAULT_TOML.find("# ---- Rules beyond").unwrap();
        let start = marker + SHIPPED_DEFAULT_TOML[marker..].find('\n').unwrap() + 1;
        let end = SHIPPED_DEFAULT_TOML.find("# ---- end of the v2").unwrap();
        let (head, rest) = SHIPPED_DEFAULT_TOML.split_at(start);
        let (block, tail) = rest.split_at(end - start);
        let block: String = block
            .lines()
            .map(|line| format!("{}\n", line.strip_prefix("# ").unwrap_or(line)))
            .collect();
        let head = head.replace("# daily_cap = ", "daily_cap = ");
        let plan = Plan::parse(&format!("{head}{block}{tail}"), SHIPPED_DEFAULT_FILE).unwrap();
        assert!(plan.uses_v2_rules());
        assert_eq!(plan.daily_cap(), Some(money("500.00")));
        assert_eq!(plan.tiers().len(), 3);
        assert_eq!(plan.campaigns()[0].name(), "双11");
        assert_eq!(plan.risk().unwrap().extra_hold_days(), 7);
        assert_eq!(plan.upgrade("gold").unwrap().own_sales(), money("50000.00"));
        assert_eq!(plan.clearing().unwrap().inactive_days(), 90);
        assert!(!plan.team_bonus().unwrap().enabled());
        assert_eq!(
            plan.rate("gold", "any", "toys", 1),
            rate("12%"),
            "grades unchanged"
        );
    }
}
