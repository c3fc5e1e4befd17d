//! The daily grade review's rules (SPEC §2.2, issue 14): which grade a
//! distributor is upgraded to (晋级) on their settled sales, and when an
//! inactive distributor is cleared (清退). Pure: the figures and `now` come
//! in, a decision goes out; the engine (`engine::grade_review`) reads the
//! figures and writes the decision.
//!
//! **Rank.** Grades rank in the order the plan file lists them: a grade
//! listed later ranks higher (the shipped plan lists 普通, 金牌, 合伙人). The
//! rates do not decide it: an override or a tier can make a lower grade pay
//! more on some items, and an admin reads the file top to bottom. A
//! distributor whose grade the plan does not know ranks as the plan's
//! default grade (which is what they are paid as).
//!
//! **Upgrade only.** A distributor moves to the highest-ranked grade above
//! their own whose `[grades.<g>.upgrade]` conditions hold; never down, and
//! never by a head count (the plan parser refuses such conditions).
//!
//! **Clearing.** With `[clearing] inactive_days = N`, an active distributor
//! is cleared once N whole days (of 24 hours) have passed since the latest
//! of: their last settled sale's release, their creation, their last
//! reinstatement. Measured in elapsed time, so a review that runs late (or
//! twice) decides the same.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::domain::money::Money;
use crate::domain::plan::{ClearingRule, Plan, UpgradeRule};

/// What the review knows about one distributor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewFacts {
    pub grade: String,
    pub active: bool,
    /// Own settled sales, lifetime: released orders they sold, net of refunds.
    pub own_sales: Money,
    /// The team's settled sales: own, plus the orders of sellers they
    /// referred (level 2) and of those sellers' referrals (level 3).
    pub team_sales: Money,
    pub created_at: DateTime<Utc>,
    /// Release time of their latest settled sale (a released order with
    /// something left after refunds).
    pub last_sale_at: Option<DateTime<Utc>>,
    pub last_reinstated_at: Option<DateTime<Utc>>,
}

/// The grade an upgrade moves a distributor to, and the figures it rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upgrade {
    pub from: String,
    pub to: String,
    pub own_sales: Money,
    pub team_sales: Money,
    /// The conditions of `to`, as the plan states them.
    pub required_own_sales: Money,
    pub required_team_sales: Option<Money>,
    /// `true`: any condition sufficed; `false`: all had to hold.
    pub any: bool,
}

/// Why a distributor is cleared, with the figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Clearing {
    pub inactive_days: u32,
    /// The latest of last sale, creation and reinstatement.
    pub inactive_since: DateTime<Utc>,
    /// Which of the three `inactive_since` is: `last_settled_sale`,
    /// `created` or `reinstated`.
    pub measured_from: &'static str,
    pub last_sale_at: Option<DateTime<Utc>>,
    pub own_sales: Money,
}

/// What the review decides for one distributor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Upgrade(Upgrade),
    Clear(Clearing),
}

/// Whether `rule` holds for these sales.
pub fn qualifies(rule: &UpgradeRule, own_sales: Money, team_sales: Money) -> bool {
    let own = own_sales >= rule.own_sales();
    match rule.team_sales() {
        None => own,
        Some(required) => {
            let team = team_sales >= required;
            if rule.any() { own || team } else { own && team }
        }
    }
}

/// The rank of `grade` under `plan` (see the module docs).
pub fn rank(plan: &Plan, grade: &str) -> usize {
    let key = plan.grade_or_default(grade).key();
    plan.grades()
        .iter()
        .position(|candidate| candidate.key() == key)
        .unwrap_or(0)
}

/// The highest grade above the current one whose upgrade conditions hold,
/// if any. Cleared distributors are not upgraded (they earn nothing until
/// reinstated; the next review after reinstatement upgrades them).
pub fn upgrade(plan: &Plan, facts: &ReviewFacts) -> Option<Upgrade> {
    if !facts.active {
        return None;
    }
    let current = rank(plan, &facts.grade);
    plan.grades()
        .iter()
        .enumerate()
        .skip(current + 1)
        .rev()
        .find_map(|(_, grade)| {
            let rule = plan.upgrade(grade.key())?;
            qualifies(rule, facts.own_sales, facts.team_sales).then(|| Upgrade {
                from: facts.grade.clone(),
                to: grade.key().to_owned(),
                own_sales: facts.own_sales,
                team_sales: facts.team_sales,
                required_own_sales: rule.own_sales(),
                required_team_sales: rule.team_sales(),
                any: rule.any(),
            })
        })
}

/// Whether an active distributor is due to be cleared at `now`.
pub fn clearing(rule: &ClearingRule, facts: &ReviewFacts, now: DateTime<Utc>) -> Option<Clearing> {
    if !facts.active {
        return None;
    }
    let mut since = (facts.created_at, "created");
    for (at, what) in [
        (facts.last_sale_at, "last_settled_sale"),
        (facts.last_reinstated_at, "reinstated"),
    ] {
        if let Some(at) = at
            && at > since.0
        {
            since = (at, what);
        }
    }
    let due = since.0 + Duration::days(i64::from(rule.inactive_days()));
    (now >= due).then(|| Clearing {
        inactive_days: rule.inactive_days(),
        inactive_since: since.0,
        measured_from: since.1,
        last_sale_at: facts.last_sale_at,
        own_sales: facts.own_sales,
    })
}

/// The review's decision for one distributor under the plan in force:
/// clearing first (an inactive distributor is not upgraded on old sales),
/// else an upgrade, else nothing.
pub fn decide(plan: &Plan, facts: &ReviewFacts, now: DateTime<Utc>) -> Option<Decision> {
    if let Some(rule) = plan.clearing()
        && let Some(clearing) = clearing(rule, facts, now)
    {
        return Some(Decision::Clear(clearing));
    }
    upgrade(plan, facts).map(Decision::Upgrade)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = r#"
name = "review"
default_grade = "regular"

[grades.regular]
display_name = "普通"
levels = ["10%", "5%", "2%"]

[grades.gold]
display_name = "金牌"
levels = ["12%", "6%", "3%"]

[grades.gold.upgrade]
own_sales = "1000.00"
team_sales = "5000.00"
any = true

[grades.partner]
display_name = "合伙人"
levels = ["15%", "8%", "3%"]

[grades.partner.upgrade]
own_sales = "3000.00"
team_sales = "10000.00"
any = false

[clearing]
inactive_days = 90
"#;

    fn plan() -> Plan {
        Plan::parse(PLAN, "review.toml").unwrap()
    }

    fn money(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn facts(grade: &str, own: &str, team: &str) -> ReviewFacts {
        ReviewFacts {
            grade: grade.to_owned(),
            active: true,
            own_sales: money(own),
            team_sales: money(team),
            created_at: at("2026-01-01T00:00:00Z"),
            last_sale_at: Some(at("2026-06-01T00:00:00Z")),
            last_reinstated_at: None,
        }
    }

    fn upgraded_to(facts: &ReviewFacts) -> Option<String> {
        upgrade(&plan(), facts).map(|upgrade| upgrade.to)
    }

    #[test]
    fn grades_rank_in_file_order_and_an_unknown_grade_ranks_as_the_default() {
        let plan = plan();
        assert_eq!(rank(&plan, "regular"), 0);
        assert_eq!(rank(&plan, "gold"), 1);
        assert_eq!(rank(&plan, "partner"), 2);
        assert_eq!(rank(&plan, "retired-grade"), 0);
    }

    #[test]
    fn own_sales_alone_upgrade_when_any_condition_suffices() {
        assert_eq!(
            upgraded_to(&facts("regular", "1000.00", "1000.00")),
            Some("gold".to_owned())
        );
        assert_eq!(upgraded_to(&facts("regular", "999.99", "999.99")), None);
    }

    #[test]
    fn team_sales_alone_upgrade_when_any_condition_suffices() {
        assert_eq!(
            upgraded_to(&facts("regular", "0.00", "5000.00")),
            Some("gold".to_owned())
        );
    }

    #[test]
    fn all_conditions_must_hold_when_any_is_false() {
        // Partner needs 3000 own AND 10000 team.
        assert_eq!(
            upgraded_to(&facts("gold", "3000.00", "9999.99")),
            None,
            "team short"
        );
        assert_eq!(
            upgraded_to(&facts("gold", "2999.99", "10000.00")),
            None,
            "own short"
        );
        assert_eq!(
            upgraded_to(&facts("gold", "3000.00", "10000.00")),
            Some("partner".to_owned())
        );
    }

    #[test]
    fn the_highest_qualifying_grade_wins_skipping_those_between() {
        let decision = upgrade(&plan(), &facts("regular", "3000.00", "10000.00")).unwrap();
        assert_eq!(decision.to, "partner");
        assert_eq!(decision.from, "regular");
        assert_eq!(decision.required_own_sales, money("3000.00"));
        assert_eq!(decision.required_team_sales, Some(money("10000.00")));
        assert!(!decision.any);
    }

    #[test]
    fn never_down_and_never_sideways() {
        // A partner with no sales stays a partner; a gold meeting only gold's
        // conditions stays gold.
        assert_eq!(upgraded_to(&facts("partner", "0.00", "0.00")), None);
        assert_eq!(upgraded_to(&facts("gold", "1000.00", "5000.00")), None);
    }

    #[test]
    fn a_cleared_distributor_is_not_upgraded() {
        let mut cleared = facts("regular", "5000.00", "50000.00");
        cleared.active = false;
        assert_eq!(upgrade(&plan(), &cleared), None);
    }

    #[test]
    fn clearing_counts_from_the_latest_of_sale_creation_and_reinstatement() {
        let plan = plan();
        let rule = plan.clearing().unwrap();
        let mut idle = facts("regular", "10.00", "10.00");
        let last_sale = at("2026-06-01T00:00:00Z");
        let due = last_sale + Duration::days(90);
        assert_eq!(clearing(rule, &idle, due - Duration::seconds(1)), None);
        let cleared = clearing(rule, &idle, due).unwrap();
        assert_eq!(cleared.inactive_since, last_sale);
        assert_eq!(cleared.measured_from, "last_settled_sale");

        idle.last_reinstated_at = Some(at("2026-08-01T00:00:00Z"));
        assert_eq!(clearing(rule, &idle, due), None, "reinstated since");
        let later = clearing(rule, &idle, at("2026-10-30T00:00:00Z")).unwrap();
        assert_eq!(later.measured_from, "reinstated");

        let mut never_sold = facts("regular", "0.00", "0.00");
        never_sold.last_sale_at = None;
        let cleared = clearing(rule, &never_sold, at("2026-04-01T00:00:00Z")).unwrap();
        assert_eq!(cleared.measured_from, "created");
    }

    #[test]
    fn clearing_comes_before_an_upgrade_and_needs_a_clearing_section() {
        let idle = facts("regular", "5000.00", "5000.00");
        let late = at("2027-01-01T00:00:00Z");
        assert!(matches!(
            decide(&plan(), &idle, late),
            Some(Decision::Clear(_))
        ));
        let without = Plan::parse(
            &PLAN.replace("[clearing]\ninactive_days = 90\n", ""),
            "review.toml",
        )
        .unwrap();
        assert!(matches!(
            decide(&without, &idle, late),
            Some(Decision::Upgrade(_))
        ));
    }

    #[test]
    fn the_same_facts_give_the_same_decision() {
        let facts = facts("regular", "1500.00", "0.00");
        let now = at("2026-07-01T00:00:00Z");
        assert_eq!(decide(&plan(), &facts, now), decide(&plan(), &facts, now));
    }
}
