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
//! Rounding happens once per line, on the line's summed base
//! ([`Money::times_rounded`]), never per item, so a distributor's line can be
//! recomputed from the `base` and `rate` it shows.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::ids::{BuyerId, DistributorId};
use crate::domain::money::{Money, Rate};
use crate::domain::plan::{MAX_LEVELS, Plan};

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
    /// get no line, and the levels below them are not moved up.
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
    /// Whether the order cap reduced this line.
    pub capped: bool,
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
pub fn compute(
    plan: &Plan,
    order: &Order,
    chain: &[Beneficiary],
) -> Result<Vec<CommissionLine>, CommissionError> {
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

    let mut lines = Vec::new();
    for (level, beneficiary) in (1u8..).zip(chain) {
        let unpaid_self_purchase = level == 1 && is_self_purchase && !plan.self_purchase_pays();
        if !beneficiary.earns || unpaid_self_purchase {
            continue;
        }
        let mut base_by_rate: BTreeMap<Rate, Money> = BTreeMap::new();
        for item in &paid_items {
            let rate = plan.rate(&beneficiary.grade, &item.sku, &item.category, level);
            if rate == Rate::ZERO {
                continue;
            }
            let base = base_by_rate.entry(rate).or_insert(Money::ZERO);
            *base = base
                .checked_add(item.amount)
                .ok_or(CommissionError::Overflow)?;
        }
        for (rate, base) in base_by_rate.into_iter().rev() {
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
        }
    }

    let cap = commissionable
        .times_rounded(plan.order_cap())
        .map_err(|_| CommissionError::Overflow)?;
    apply_order_cap(&mut lines, cap)?;
    lines.retain(|line| !line.amount.is_zero());
    Ok(lines)
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
fn apply_order_cap(lines: &mut [CommissionLine], cap: Money) -> Result<(), CommissionError> {
    let total = Money::checked_sum(lines.iter().map(|line| line.amount))
        .ok_or(CommissionError::Overflow)?;
    let mut excess = total
        .checked_sub(cap)
        .ok_or(CommissionError::Overflow)?
        .max(Money::ZERO);
    if excess.is_zero() {
        return Ok(());
    }

    let mut trim_order: Vec<usize> = (0..lines.len()).collect();
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
        line.amount = line
            .amount
            .checked_sub(trim)
            .ok_or(CommissionError::Overflow)?;
        line.capped = true;
        excess = excess.checked_sub(trim).ok_or(CommissionError::Overflow)?;
    }
    // The cap is never negative (amounts and rates are not), so the lines
    // always hold enough to absorb the excess.
    assert!(excess.is_zero(), "order cap excess left after trimming");
    Ok(())
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
}
