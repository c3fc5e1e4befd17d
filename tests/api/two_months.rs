//! Ten thousand orders over two simulated months with every commission rule
//! on (issue 14): tiers, campaigns, the order and daily caps, risk holds,
//! the daily grade review (upgrades and clearing), refunds inside and after
//! the hold, and the month close with team bonuses. The test keeps its own
//! model of the shop — every line, release, grade, clearing and bonus
//! worked out here from the plan's numbers in integer fen — and holds
//! fenrun to it order by order, day by day and, at the end, balance by
//! balance, with `ledger verify` clean.
//!
//! Deterministic: the workers are off, the simulated clock moves only when
//! the test moves it (which releases what is due), the review runs when the
//! test runs it, and the orders come one at a time from a seeded generator.
//!
//! ```text
//! 2027-01-01 10:00 (Shanghai) plan + 42 distributors
//!   each day: clock → 10:00 (releases) → [1st: close last month, twice]
//!             → grade review → late refunds → the day's orders (+ refunds)
//!   2027-03-01: close February → balances, refunded orders, ledger verify
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use fenrun::engine::grade_review::GradeReview;
use fenrun::service::audit::Actor;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(ten_thousand_orders_over_two_months_pay_what_the_model_computes);

const ORDERS: usize = 10_000;
const SEED: u64 = 0x5eed_2027;

const PLAN: &str = r#"
name = "two-months"
default_grade = "regular"
order_cap = "35%"
daily_cap = "300.00"

[tiers]
steps = [ { from = "0.00", level1 = "10%" }, { from = "5000.00", level1 = "12%" }, { from = "15000.00", level1 = "15%" } ]

[[campaigns]]
name = "beauty-week"
from = 2027-01-11T00:00:00+08:00
to = 2027-01-15T00:00:00+08:00
multiplier = "2"
categories = ["beauty"]

[[campaigns]]
name = "spring"
from = 2027-02-03T00:00:00+08:00
to = 2027-02-10T00:00:00+08:00
multiplier = "1.5"

[[campaigns]]
name = "spring-beauty"
from = 2027-02-05T00:00:00+08:00
to = 2027-02-07T00:00:00+08:00
multiplier = "3"
categories = ["beauty"]

[risk]
same_buyer_orders_per_day = 4
extra_hold_days = 5

[clearing]
inactive_days = 20

[team_bonus]
enabled = true
threshold = "100000.00"
rate = "1%"

[grades.regular]
display_name = "普通"
levels = ["10%", "5%", "2%"]

[grades.gold]
display_name = "金牌"
levels = ["14%", "7%", "3%"]

[grades.gold.upgrade]
own_sales = "60000.00"
team_sales = "150000.00"
any = true
"#;

// The plan's numbers, as the model uses them (rates in basis points).
const TIER_STEPS: [(i64, i64); 3] = [(0, 1000), (500_000, 1200), (1_500_000, 1500)];
const REGULAR_BP: [i64; 3] = [1000, 500, 200];
const GOLD_BP: [i64; 3] = [1400, 700, 300];
const ORDER_CAP_BP: i64 = 3500;
const DAILY_CAP_FEN: i64 = 30_000;
const SAME_BUYER_LIMIT: usize = 4;
const INACTIVE_DAYS: i64 = 20;
const GOLD_OWN_FEN: i64 = 6_000_000;
const GOLD_TEAM_FEN: i64 = 15_000_000;
const BONUS_THRESHOLD_FEN: i64 = 10_000_000;
const BONUS_RATE_BP: i64 = 100;

/// (name, from, to, multiplier as numerator/denominator, beauty only).
struct Campaign {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    multiplier: (i64, i64),
    beauty_only: bool,
}

fn campaigns() -> Vec<Campaign> {
    let at = |month, day| local(NaiveDate::from_ymd_opt(2027, month, day).unwrap(), 0);
    vec![
        Campaign {
            from: at(1, 11),
            to: at(1, 15),
            multiplier: (2, 1),
            beauty_only: true,
        },
        Campaign {
            from: at(2, 3),
            to: at(2, 10),
            multiplier: (3, 2),
            beauty_only: false,
        },
        Campaign {
            from: at(2, 5),
            to: at(2, 7),
            multiplier: (3, 1),
            beauty_only: true,
        },
    ]
}

fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap()
}

/// `day` at `hour`:00 in Shanghai.
fn local(day: NaiveDate, hour: u32) -> DateTime<Utc> {
    shanghai()
        .from_local_datetime(&day.and_hms_opt(hour, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn month_key(day: NaiveDate) -> String {
    format!("{:04}-{:02}", day.year(), day.month())
}

/// `fen × bp / 10000`, half-up to the fen (amounts here are never negative).
fn times_bp(fen: i64, bp: i64) -> i64 {
    (fen * bp + 5_000) / 10_000
}

fn fen_of(text: &str) -> i64 {
    let (yuan, fen) = text.split_once('.').expect("a money string");
    yuan.parse::<i64>().unwrap() * 100 + fen.parse::<i64>().unwrap()
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// SplitMix64: a small seeded generator, so a failure replays exactly.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent`%.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Person {
    id: String,
    /// Referrer (level 2 of this person's sales), and theirs (level 3).
    upline: Vec<usize>,
    gold: bool,
    cleared: bool,
    created_at: DateTime<Utc>,
    /// Does not sell at all (`None`), or sells up to this day.
    sells_until: Option<NaiveDate>,
    bonus_fen: i64,
}

struct Sold {
    id: String,
    seller: usize,
    /// The chain at ingest: (person, gold then) for levels 1..=3.
    chain: Vec<(usize, bool)>,
    cleared: BTreeSet<usize>,
    beauty: bool,
    placed_at: DateTime<Utc>,
    day: NaiveDate,
    amount_fen: i64,
    refunded_fen: i64,
    refunds: u32,
    month_before_fen: i64,
    earned_before: BTreeMap<usize, i64>,
    /// Current commission by beneficiary (cleared ones are not in it).
    lines: BTreeMap<usize, i64>,
    release_at: DateTime<Utc>,
    released: bool,
    cancelled: bool,
}

/// The shop as the test understands it.
struct Model {
    people: Vec<Person>,
    orders: Vec<Sold>,
    /// Level-1 commissionable sales per (seller, month), net of refunds.
    month_sales: BTreeMap<(usize, String), i64>,
    /// Commission earned per (beneficiary, local day), all levels.
    earned: BTreeMap<(usize, NaiveDate), i64>,
    buyer_orders: BTreeMap<(String, NaiveDate), usize>,
    campaigns: Vec<Campaign>,
}

impl Model {
    fn tier_bp(month_sales: i64) -> i64 {
        TIER_STEPS
            .iter()
            .rev()
            .find(|(from, _)| month_sales >= *from)
            .map(|(_, bp)| *bp)
            .unwrap()
    }

    fn multiplier(&self, placed_at: DateTime<Utc>, beauty: bool) -> (i64, i64) {
        self.campaigns
            .iter()
            .filter(|c| c.from <= placed_at && placed_at < c.to && (beauty || !c.beauty_only))
            .map(|c| c.multiplier)
            // Compared as fractions: a/b > c/d ⇔ a·d > c·b.
            .max_by(|a, b| (a.0 * b.1).cmp(&(b.0 * a.1)))
            .unwrap_or((1, 1))
    }

    /// The lines of `order` on `net_fen` commissionable, with the context
    /// it was ingested in: rate → tier → campaign → order cap → daily cap.
    fn lines(&self, order: &Sold, net_fen: i64) -> BTreeMap<usize, i64> {
        let tier = Self::tier_bp(order.month_before_fen + net_fen);
        let (num, den) = self.multiplier(order.placed_at, order.beauty);
        let mut amounts: Vec<(usize, i64)> = Vec::new();
        for (level, (who, gold)) in order.chain.iter().enumerate() {
            if order.cleared.contains(who) {
                continue;
            }
            let grade = if *gold { GOLD_BP } else { REGULAR_BP };
            let base = if level == 0 { tier } else { grade[level] };
            let rate = (base * num / den).min(10_000);
            amounts.push((*who, times_bp(net_fen, rate)));
        }
        // Order cap: the deepest level gives way first.
        let cap = times_bp(net_fen, ORDER_CAP_BP);
        let mut excess = amounts.iter().map(|(_, fen)| fen).sum::<i64>() - cap;
        for (_, fen) in amounts.iter_mut().rev() {
            if excess <= 0 {
                break;
            }
            let cut = excess.min(*fen);
            *fen -= cut;
            excess -= cut;
        }
        // Daily cap: what the day had left for each beneficiary at ingest.
        amounts
            .into_iter()
            .map(|(who, fen)| {
                let before = order.earned_before.get(&who).copied().unwrap_or(0);
                (who, fen.min((DAILY_CAP_FEN - before).max(0)))
            })
            .filter(|(_, fen)| *fen > 0)
            .collect()
    }

    /// Lifetime settled own sales and the release of the latest one.
    fn own_settled(&self, who: usize) -> (i64, Option<DateTime<Utc>>) {
        let mut sales = 0;
        let mut last = None;
        for order in self.orders.iter().filter(|o| o.seller == who && o.released) {
            let net = order.amount_fen - order.refunded_fen;
            sales += net;
            if net > 0 {
                last = last.max(Some(order.release_at));
            }
        }
        (sales, last)
    }

    /// The review at `now`: who is cleared and who is upgraded.
    fn review(&mut self, now: DateTime<Utc>) -> (usize, usize) {
        let own: Vec<(i64, Option<DateTime<Utc>>)> = (0..self.people.len())
            .map(|who| self.own_settled(who))
            .collect();
        let mut team: Vec<i64> = own.iter().map(|(sales, _)| *sales).collect();
        for (who, person) in self.people.iter().enumerate() {
            for &up in &person.upline {
                team[up] += own[who].0;
            }
        }
        let (mut upgraded, mut cleared) = (0, 0);
        for (who, person) in self.people.iter_mut().enumerate() {
            if person.cleared {
                continue;
            }
            let since = own[who]
                .1
                .map_or(person.created_at, |last| last.max(person.created_at));
            if now >= since + Duration::days(INACTIVE_DAYS) {
                person.cleared = true;
                cleared += 1;
            } else if !person.gold && (own[who].0 >= GOLD_OWN_FEN || team[who] >= GOLD_TEAM_FEN) {
                person.gold = true;
                upgraded += 1;
            }
        }
        (upgraded, cleared)
    }

    /// Releases what is due at `now`; how many.
    fn release(&mut self, now: DateTime<Utc>) -> usize {
        let mut released = 0;
        for order in &mut self.orders {
            if !order.released && !order.cancelled && order.release_at <= now {
                order.released = true;
                released += 1;
            }
        }
        released
    }

    /// The month close at `now` of the month `[start, end)`: each active
    /// leader's team settled sales, and the bonus of those at the threshold.
    fn close(&mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> (usize, i64, usize) {
        let mut team: BTreeMap<usize, i64> = BTreeMap::new();
        for order in &self.orders {
            if order.released && start <= order.release_at && order.release_at < end {
                let net = order.amount_fen - order.refunded_fen;
                *team.entry(order.seller).or_default() += net;
                for &up in &self.people[order.seller].upline {
                    *team.entry(up).or_default() += net;
                }
            }
        }
        let (mut count, mut total, mut withheld) = (0, 0, 0);
        for (who, sales) in team {
            let person = &mut self.people[who];
            if sales >= BONUS_THRESHOLD_FEN && person.cleared {
                // A cleared leader earns nothing new, a team bonus included.
                withheld += 1;
            } else if sales >= BONUS_THRESHOLD_FEN {
                let bonus = times_bp(sales, BONUS_RATE_BP);
                person.bonus_fen += bonus;
                count += 1;
                total += bonus;
            }
        }
        (count, total, withheld)
    }

    /// Applies a refund of `fen` to order `index` as fenrun must: the lines
    /// recomputed on the net amount with the ingest context, the totals of
    /// the order's own month and day moved.
    fn refund(&mut self, index: usize, fen: i64) {
        let order = &self.orders[index];
        let net = order.amount_fen - order.refunded_fen - fen;
        let fresh = self.lines(order, net);
        let old = order.lines.clone();
        let (seller, day) = (order.seller, order.day);
        *self
            .month_sales
            .get_mut(&(seller, month_key(day)))
            .expect("the order's month") -= fen;
        for who in old.keys().chain(fresh.keys()).collect::<BTreeSet<_>>() {
            let delta = fresh.get(who).copied().unwrap_or(0) - old.get(who).copied().unwrap_or(0);
            *self.earned.entry((*who, day)).or_default() += delta;
        }
        let order = &mut self.orders[index];
        order.refunded_fen += fen;
        order.refunds += 1;
        order.lines = fresh;
        if net == 0 && !order.released {
            order.cancelled = true;
        }
    }
}

/// The simulated clock moved to `at` (forward, at least a second); the
/// number of orders it released.
async fn advance_to(app: &TestApp, now: &mut DateTime<Utc>, at: DateTime<Utc>) -> usize {
    let seconds = (at - *now).num_seconds().max(1);
    let response = app
        .post_json(
            "/v1/admin/clock/advance",
            &app.admin,
            &json!({ "seconds": seconds }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    *now = view["now"].as_str().unwrap().parse().unwrap();
    view["released"].as_u64().unwrap() as usize
}

async fn refund(app: &TestApp, order: &Sold, fen: i64) {
    let response = app
        .post_json(
            &format!("/v1/orders/{}/refunds", order.id),
            &app.ingest,
            &json!({"refund_id": format!("{}-r{}", order.id, order.refunds), "amount": yuan(fen)}),
        )
        .await;
    assert_eq!(
        response.status(),
        200,
        "refund of {}: {}",
        order.id,
        response.text().await.unwrap()
    );
}

/// fenrun's lines of an order answer: beneficiary → amount, cleared zero
/// lines apart.
fn answered_lines(answer: &Value) -> (BTreeMap<String, i64>, BTreeSet<String>) {
    let mut paid = BTreeMap::new();
    let mut cleared = BTreeSet::new();
    for line in answer["commissions"].as_array().unwrap() {
        let who = line["beneficiary_id"].as_str().unwrap().to_owned();
        let fen = fen_of(line["amount"].as_str().unwrap());
        if fen == 0 {
            cleared.insert(who);
        } else {
            *paid.entry(who).or_default() += fen;
        }
    }
    (paid, cleared)
}

fn named(model: &Model, lines: &BTreeMap<usize, i64>) -> BTreeMap<String, i64> {
    lines
        .iter()
        .map(|(who, fen)| (model.people[*who].id.clone(), *fen))
        .collect()
}

/// r0..r3 each refer three c's, each c two g's; s0 refers s0k and never
/// sells (cleared after 20 days, while s0k's sales would earn it a team
/// bonus); c00 stops selling on January 24 (cleared 20 days after its last
/// release); c10 sells 15% of all orders and s0k about 17%.
fn shop_tree() -> Vec<(String, Option<String>, Option<NaiveDate>)> {
    let always = Some(NaiveDate::from_ymd_opt(2027, 12, 31).unwrap());
    let mut tree = Vec::new();
    for r in 0..4 {
        tree.push((format!("r{r}"), None, always));
        for c in 0..3 {
            let quits = (r, c) == (0, 0);
            let until = if quits {
                NaiveDate::from_ymd_opt(2027, 1, 24)
            } else {
                always
            };
            tree.push((format!("c{r}{c}"), Some(format!("r{r}")), until));
            for g in 0..2 {
                tree.push((format!("g{r}{c}{g}"), Some(format!("c{r}{c}")), always));
            }
        }
    }
    tree.push(("s0".to_owned(), None, None));
    tree.push(("s0k".to_owned(), Some("s0".to_owned()), always));
    tree
}

const STAR: &str = "c10";
const SECOND_STAR: &str = "s0k";

async fn ten_thousand_orders_over_two_months_pay_what_the_model_computes(backend: Backend) {
    let started = std::time::Instant::now();
    let app = spawn_app_with(backend, |settings| {
        settings.simulated_clock = true;
        settings.run_workers = false;
    })
    .await;
    let first_day = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
    let last_day = NaiveDate::from_ymd_opt(2027, 2, 28).unwrap();
    let days = (last_day - first_day).num_days() as usize + 1;

    let mut now = Utc::now();
    let ignored = advance_to(&app, &mut now, local(first_day, 10)).await;
    assert_eq!(ignored, 0);
    let applied = app
        .post_json("/v1/admin/plans", &app.admin, &json!({ "toml": PLAN }))
        .await;
    assert_eq!(applied.status(), 201, "{}", applied.text().await.unwrap());

    let mut model = Model {
        people: Vec::new(),
        orders: Vec::new(),
        month_sales: BTreeMap::new(),
        earned: BTreeMap::new(),
        buyer_orders: BTreeMap::new(),
        campaigns: campaigns(),
    };
    let mut index_of: BTreeMap<String, usize> = BTreeMap::new();
    for (id, referrer, sells_until) in shop_tree() {
        let created = app.create_distributor(&id, referrer.as_deref(), None).await;
        let mut upline = Vec::new();
        if let Some(referrer) = &referrer {
            let parent = index_of[referrer];
            upline.push(parent);
            upline.extend(model.people[parent].upline.first().copied());
        }
        index_of.insert(id.clone(), model.people.len());
        model.people.push(Person {
            id,
            upline,
            gold: false,
            cleared: false,
            created_at: created["created_at"].as_str().unwrap().parse().unwrap(),
            sells_until,
            bonus_fen: 0,
        });
    }
    let star = index_of[STAR];
    let second_star = index_of[SECOND_STAR];

    let mut dice = Dice(SEED);
    let (mut upgrades, mut clearings, mut bonuses, mut flagged, mut capped_days) = (0, 0, 0, 0, 0);
    let mut bonuses_withheld = 0;
    let mut refunds_in_hold = 0;
    let mut refunds_after_release = 0;
    let mut closes: Vec<(String, usize, i64)> = Vec::new();
    let reviewer = GradeReview::new(Arc::clone(&app.store));
    for day_number in 0..=days {
        let day = first_day + Duration::days(day_number as i64);
        let released = advance_to(&app, &mut now, local(day, 10)).await;
        assert_eq!(released, model.release(now), "releases on {day}");

        if day.day() == 1 && day != first_day {
            let month = day - Duration::days(1);
            let key = month_key(month);
            let start = local(month.with_day(1).unwrap(), 0);
            let (count, total, withheld) = model.close(start, local(day, 0));
            bonuses_withheld += withheld;
            for attempt in 0..2 {
                let response = app
                    .post_json(&format!("/v1/ops/month-close/{key}"), &app.ops, &json!({}))
                    .await;
                let body = response.text().await.unwrap();
                let view: Value = serde_json::from_str(&body).expect(&body);
                assert_eq!(view["ran"], attempt == 0, "{body}");
                assert_eq!(view["team_bonuses"], count, "{key}: {body}");
                assert_eq!(view["team_bonus_total"], yuan(total), "{key}: {body}");
            }
            bonuses += count;
            closes.push((key, count, total));
        }
        if day_number == days {
            break;
        }

        let report = reviewer
            .run(now, &Actor::system("grade_review"))
            .await
            .expect("grade review");
        let (upgraded, cleared) = model.review(now);
        assert_eq!(
            (report.upgraded, report.cleared),
            (upgraded, cleared),
            "review on {day}"
        );
        upgrades += upgraded;
        clearings += cleared;

        // Late refunds: orders of a week ago, most of them released by now.
        let week_ago = day - Duration::days(7);
        let candidates: Vec<usize> = (0..model.orders.len())
            .filter(|&i| model.orders[i].day == week_ago && !model.orders[i].cancelled)
            .collect();
        for index in candidates {
            let left = model.orders[index].amount_fen - model.orders[index].refunded_fen;
            if left == 0 || !dice.chance(5) {
                continue;
            }
            let fen = if dice.chance(20) {
                left
            } else {
                1 + dice.below(left as u64) as i64
            };
            refund(&app, &model.orders[index], fen).await;
            if model.orders[index].released {
                refunds_after_release += 1;
            } else {
                refunds_in_hold += 1;
            }
            model.refund(index, fen);
        }

        // The day's orders, all confirmed at the same second.
        // Orders confirmed at 10:00:01 come due at that second of their
        // release day, so this second releases too.
        let next_second = now + Duration::seconds(1);
        let released = advance_to(&app, &mut now, next_second).await;
        assert_eq!(
            released,
            model.release(now),
            "releases on {day} at 10:00:01"
        );
        let confirmed_at = now;
        let count = ORDERS * (day_number + 1) / days - ORDERS * day_number / days;
        let sellers: Vec<usize> = (0..model.people.len())
            .filter(|&who| {
                who != star
                    && who != second_star
                    && model.people[who]
                        .sells_until
                        .is_some_and(|until| day <= until)
            })
            .collect();
        for _ in 0..count {
            let seller = if dice.chance(15) {
                star
            } else if dice.chance(20) {
                second_star
            } else {
                sellers[dice.below(sellers.len() as u64) as usize]
            };
            let buyer = format!("buyer-{}", dice.below(60));
            let beauty = dice.chance(30);
            let amount_fen = 2_000 + dice.below(38_001) as i64;
            let id = format!("o{:05}", model.orders.len());
            let placed_at = confirmed_at - Duration::hours(1);

            let mut chain = vec![(seller, model.people[seller].gold)];
            chain.extend(
                model.people[seller]
                    .upline
                    .iter()
                    .map(|&up| (up, model.people[up].gold)),
            );
            let month = (seller, month_key(day));
            let order = Sold {
                id: id.clone(),
                seller,
                cleared: chain
                    .iter()
                    .map(|(who, _)| *who)
                    .filter(|&who| model.people[who].cleared)
                    .collect(),
                earned_before: chain
                    .iter()
                    .map(|(who, _)| (*who, model.earned.get(&(*who, day)).copied().unwrap_or(0)))
                    .collect(),
                chain,
                beauty,
                placed_at,
                day,
                amount_fen,
                refunded_fen: 0,
                refunds: 0,
                month_before_fen: model.month_sales.get(&month).copied().unwrap_or(0),
                lines: BTreeMap::new(),
                release_at: confirmed_at,
                released: false,
                cancelled: false,
            };
            let lines = model.lines(&order, amount_fen);
            let buyer_count = {
                let seen = model.buyer_orders.entry((buyer.clone(), day)).or_default();
                *seen += 1;
                *seen
            };

            let body = json!({
                "order_id": id,
                "distributor_id": model.people[seller].id,
                "buyer_id": buyer,
                "placed_at": placed_at.to_rfc3339(),
                "confirmed_at": confirmed_at.to_rfc3339(),
                "items": [{
                    "sku": if beauty { "LIPSTICK" } else { "RICE" },
                    "category": if beauty { "beauty" } else { "food" },
                    "amount": yuan(amount_fen),
                }],
            });
            let response = app.post_json("/v1/orders", &app.ingest, &body).await;
            assert_eq!(response.status(), 202, "{body}");
            let answer: Value = response.json().await.unwrap();

            let (paid, zero) = answered_lines(&answer);
            assert_eq!(paid, named(&model, &lines), "order {id}: {answer}");
            let expected_zero: BTreeSet<String> = order
                .cleared
                .iter()
                .map(|&who| model.people[who].id.clone())
                .collect();
            assert_eq!(zero, expected_zero, "cleared lines of {id}: {answer}");
            let is_flagged = !answer["risk_flags"].as_array().unwrap().is_empty();
            assert_eq!(
                is_flagged,
                buyer_count > SAME_BUYER_LIMIT,
                "risk of {id}: {answer}"
            );
            flagged += usize::from(is_flagged);

            *model.month_sales.entry(month).or_default() += amount_fen;
            for (&who, &fen) in &lines {
                let earned = model.earned.entry((who, day)).or_default();
                let before = *earned;
                *earned += fen;
                if before < DAILY_CAP_FEN && *earned == DAILY_CAP_FEN {
                    capped_days += 1;
                }
            }
            let release_at: DateTime<Utc> = answer["release_at"].as_str().unwrap().parse().unwrap();
            assert!(release_at > confirmed_at, "{answer}");
            model.orders.push(Sold {
                lines,
                release_at,
                ..order
            });

            // Some refunds at once, inside the hold; a few give it all back.
            if dice.chance(7) {
                let index = model.orders.len() - 1;
                let fen = if dice.chance(15) {
                    amount_fen
                } else {
                    1 + dice.below(amount_fen as u64) as i64
                };
                refund(&app, &model.orders[index], fen).await;
                refunds_in_hold += 1;
                model.refund(index, fen);
            }
        }
    }
    assert_eq!(model.orders.len(), ORDERS);

    // Every balance: pending is the commission of orders still held,
    // available that of released orders plus the team bonuses.
    for (who, person) in model.people.iter().enumerate() {
        let mut pending = 0;
        let mut available = person.bonus_fen;
        for order in &model.orders {
            let fen = order.lines.get(&who).copied().unwrap_or(0);
            if order.released {
                available += fen;
            } else {
                pending += fen;
            }
        }
        let balance: Value = app
            .get(&format!("/v1/distributors/{}/balance", person.id), &app.ops)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            balance["pending"],
            yuan(pending),
            "{}: {balance}",
            person.id
        );
        assert_eq!(
            balance["available"],
            yuan(available),
            "{}: {balance}",
            person.id
        );
        assert_eq!(balance["debt"], "0.00", "{}: {balance}", person.id);

        let profile: Value = app
            .get(&format!("/v1/distributors/{}", person.id), &app.ops)
            .await
            .json()
            .await
            .unwrap();
        let grade = if person.gold { "gold" } else { "regular" };
        assert_eq!(profile["grade"], grade, "{profile}");
        let status = if person.cleared { "cleared" } else { "active" };
        assert_eq!(profile["status"], status, "{profile}");
    }
    // Each refunded order's lines as they stand after its refunds.
    for order in model.orders.iter().filter(|order| order.refunds > 0) {
        let answer: Value = app
            .get(&format!("/v1/orders/{}", order.id), &app.ops)
            .await
            .json()
            .await
            .unwrap();
        let (paid, _) = answered_lines(&answer);
        assert_eq!(
            paid,
            named(&model, &order.lines),
            "refunded order {}: {answer}",
            order.id
        );
        let state = match (order.cancelled, order.released) {
            (true, _) => "cancelled",
            (false, true) => "released",
            (false, false) => "holding",
        };
        assert_eq!(answer["state"], state, "{answer}");
    }
    let report = app.store.verify_ledger().await.unwrap();
    assert!(report.is_clean(), "{report:?}");

    // The run must have exercised every rule, or it proves little.
    let paying = model
        .orders
        .iter()
        .filter(|order| order.lines.values().sum::<i64>() > 0)
        .count();
    println!(
        "{backend:?}: {} orders, {paying} paying; {flagged} flagged; {refunds_in_hold} refunds in the hold, \
         {refunds_after_release} after release; {upgrades} upgrades, {clearings} clearings; \
         {capped_days} capped days; closes {closes:?}, {bonuses_withheld} bonuses withheld from cleared leaders; {:.1} s (seed {SEED:#x})",
        model.orders.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(flagged > 0 && refunds_in_hold > 0 && refunds_after_release > 0);
    assert!(upgrades >= 2, "upgrades: {upgrades}");
    assert_eq!(clearings, 2, "s0 and c00 are the inactive ones");
    assert!(capped_days > 0 && bonuses >= 2);
    assert!(
        bonuses_withheld >= 1,
        "s0's team bonus must have been withheld"
    );
    assert!(model.people[star].gold);
}
