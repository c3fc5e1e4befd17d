//! Crash safety: the real binary, fed 2,000 orders and about 100 refunds by
//! 16 concurrent clients, is SIGKILLed at random moments — while it ingests,
//! while it refunds, while it releases — and restarted each time. A client
//! that lost its answer re-sends the same body, as a shop would. In the end
//! every order is settled exactly once and the books balance, checked against
//! amounts this test computes on its own, in integer fen.
//!
//! ```text
//! migrate, tokens, tree ─► 16 clients: order ─► its refunds ─► next order …
//!                              ▲ SIGKILL + restart at 6 random points of the feed
//! advance the clock ─► SIGKILL mid-release ─► restart (twice) ─► advance again
//! ─► check every order, every line, every balance ─► stop ─► ledger verify
//! ```
//!
//! The run's seed is printed (shown when the test fails); set
//! `FENRUN_CRASH_SEED` to replay the same orders, refunds and kill points
//! (the timing around each kill still varies).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(orders_fed_through_sigkills_settle_exactly_once_and_the_books_balance);

/// Orders fed to the server.
const ORDERS: usize = 2_000;
/// Orders that get one or two refunds inside the hold.
const REFUNDED_ORDERS: usize = 100;
/// Distributors in the referral tree.
const DISTRIBUTORS: usize = 30;
/// Requests in flight at once.
const CLIENTS: usize = 16;
/// SIGKILLs while orders and refunds are being fed (the issue asks for "several").
const KILLS_WHILE_FEEDING: usize = 6;
/// SIGKILLs while the clock advance releases the holds.
const KILLS_WHILE_RELEASING: usize = 2;
/// The longest delay between the feed crossing a kill point and the kill.
const KILL_JITTER_MS: u64 = 40;
/// The longest delay between sending the clock advance and killing the server.
const RELEASE_KILL_DELAY_MS: u64 = 400;
/// How long one start may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client keeps re-sending one request across crashes.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Ports tried per start, should another process take the probed one first.
const PORT_TRIES: usize = 3;
/// How long one HTTP exchange may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause before a request is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How long the whole feed may take before the killer gives up waiting for it.
const FEED_DEADLINE: Duration = Duration::from_secs(120);
/// The page size of the commission listing (its maximum).
const PAGE: usize = 500;
/// Days the clock is moved at least, so every T+3 hold is due.
const MIN_ADVANCE_DAYS: i64 = 10;

/// The default plan's grades: key and level-1..3 rates in percent.
const GRADES: [(&str, [i64; 3]); 3] = [
    ("regular", [10, 5, 2]),
    ("gold", [12, 6, 3]),
    ("partner", [15, 8, 3]),
];

async fn orders_fed_through_sigkills_settle_exactly_once_and_the_books_balance(backend: Backend) {
    let started = Instant::now();
    let seed = std::env::var("FENRUN_CRASH_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            u64::try_from(Utc::now().timestamp_nanos_opt().unwrap_or(1)).unwrap_or(1)
        });
    eprintln!("crash test on {backend:?}: FENRUN_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);

    let (db, logs) = migrated_db(backend).await;
    let admin = token(&db.url, "admin");
    let ingest = token(&db.url, "ingest");

    let tree = Tree::random(&mut rng);
    let now = Utc::now();
    let orders = Arc::new(plan_orders(&mut rng, &tree, now));
    let client = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .expect("HTTP client");
    let mut server = Server::new(&db.url, logs.path());
    let address = server.start(&client).await;
    let feed = Arc::new(Feed {
        client,
        address: RwLock::new(address),
        admin,
        ingest,
        answered: AtomicUsize::new(0),
        resent: AtomicUsize::new(0),
        clients_done: AtomicUsize::new(0),
    });
    for distributor in &tree.distributors {
        let mut body = json!({
            "id": distributor.id,
            "name": format!("name of {}", distributor.id),
            "grade": GRADES[distributor.grade].0,
        });
        if let Some(referrer) = distributor.referrer {
            body["referrer_id"] = tree.distributors[referrer].id.clone().into();
        }
        feed.send(
            Method::Post,
            "/v1/distributors",
            Some(body.to_string()),
            201,
        )
        .await;
    }

    // Feed every order (and its refunds, right after its 202) from CLIENTS
    // tasks, while this task kills and restarts the server at random points.
    let tree = Arc::new(tree);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (feed, orders, tree) = (feed.clone(), orders.clone(), tree.clone());
            tokio::spawn(async move {
                let _done = Finished(&feed.clients_done);
                for order in orders.iter().skip(client).step_by(CLIENTS) {
                    feed_order(&feed, &tree, order).await;
                }
            })
        })
        .collect();
    let mut kill_points: Vec<usize> = (0..KILLS_WHILE_FEEDING)
        .map(|_| rng.between(ORDERS as i64 / 20, ORDERS as i64 * 19 / 20) as usize)
        .collect();
    kill_points.sort_unstable();
    let feed_deadline = Instant::now() + FEED_DEADLINE;
    let mut kills = 0;
    for point in &kill_points {
        while feed.answered.load(Ordering::SeqCst) < *point
            && feed.clients_done.load(Ordering::SeqCst) < CLIENTS
        {
            assert!(
                Instant::now() < feed_deadline,
                "the feed is stuck at {} answered orders",
                feed.answered.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if feed.clients_done.load(Ordering::SeqCst) == CLIENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(KILL_JITTER_MS))).await;
        server.kill();
        kills += 1;
        let address = server.start(&feed.client).await;
        *feed.address.write().unwrap() = address;
    }
    for client in clients {
        client.await.expect("a feeding client failed");
    }
    assert_eq!(
        kills, KILLS_WHILE_FEEDING,
        "the feed ended before every kill point (seed {seed})"
    );
    let fed_at = Instant::now();

    // Release: move the clock past every hold and kill the server while it
    // releases — once at a random moment, once as soon as the first released
    // batch shows in the balance of the busiest beneficiary — restarting it
    // each time (its simulated clock starts again at the real now); then move
    // the clock once more and let it finish. Releasing is idempotent.
    let latest_release = orders
        .iter()
        .map(|order| *order.release_at.get().expect("every order was answered"))
        .max()
        .expect("orders");
    let days = ((latest_release - Utc::now()).num_days() + 2).max(MIN_ADVANCE_DAYS);
    let advance = json!({ "days": days }).to_string();
    let watched = format!("/v1/distributors/{}/balance", tree.busiest(&orders));
    let mut killed_advances = Vec::with_capacity(KILLS_WHILE_RELEASING);
    for round in 0..KILLS_WHILE_RELEASING {
        let available_before =
            feed.send(Method::Get, &watched, None, 200).await["available"].clone();
        let attempt = {
            let feed = feed.clone();
            let advance = advance.clone();
            tokio::spawn(async move {
                feed.send_once(Method::Post, "/v1/admin/clock/advance", &advance)
                    .await
            })
        };
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(RELEASE_KILL_DELAY_MS))).await;
        } else {
            // Bounded: the advance answers (or times out) in HTTP_TIMEOUT.
            while !attempt.is_finished() {
                let now = feed.send(Method::Get, &watched, None, 200).await;
                if now["available"] != available_before {
                    break;
                }
            }
        }
        server.kill();
        kills += 1;
        killed_advances.push(match attempt.await.expect("advance task") {
            Some((status, answer)) => format!("answered {status} {answer}"),
            None => "unanswered".to_owned(),
        });
        let address = server.start(&feed.client).await;
        *feed.address.write().unwrap() = address;
    }
    let moved = feed
        .send(Method::Post, "/v1/admin/clock/advance", Some(advance), 200)
        .await;
    let released_at = Instant::now();

    check_orders(&feed, &orders).await;
    check_lines(&feed, &tree, &orders).await;
    check_balances(&feed, &tree, &orders).await;
    server.kill();
    let verify = fenrun(&db.url, &["ledger", "verify", "--json"]);
    let report = text(&verify.stdout);
    assert!(
        verify.status.success(),
        "ledger verify failed: {report} {}",
        text(&verify.stderr)
    );
    let report: Value = serde_json::from_str(&report).expect("ledger verify prints JSON");
    assert_eq!(report["postings_sum_fen"], 0, "{report}");

    let cancelled = orders.iter().filter(|order| order.net_fen() == 0).count();
    eprintln!(
        "crash test on {backend:?}: {ORDERS} orders ({cancelled} cancelled by refunds), \
         {} refunds, {kills} SIGKILLs ({} starts), {} requests re-sent; \
         advances killed: {killed_advances:?}; the last one released {} \
; \
         feed {:.1}s, release {:.1}s, checks {:.1}s",
        orders
            .iter()
            .map(|order| order.refunds.len())
            .sum::<usize>(),
        server.starts,
        feed.resent.load(Ordering::SeqCst),
        moved["released"],
        (fed_at - started).as_secs_f64(),
        (released_at - fed_at).as_secs_f64(),
        released_at.elapsed().as_secs_f64(),
    );
}

/// Sends one order until it is answered 202, checks the commission it was
/// computed with, then sends its refunds, each until it is answered 200.
async fn feed_order(feed: &Feed, tree: &Tree, order: &PlannedOrder) {
    let answer = feed
        .send(Method::Post, "/v1/orders", Some(order.body.clone()), 202)
        .await;
    feed.answered.fetch_add(1, Ordering::SeqCst);
    assert_eq!(answer["state"], "holding", "{}: {answer}", order.id);
    let release_at: DateTime<Utc> = answer["release_at"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("{}: no release_at in {answer}", order.id));
    order
        .release_at
        .set(release_at)
        .expect("each order is fed once");
    let expected: Vec<(String, u64, String)> = tree
        .lines(order, order.total_fen())
        .iter()
        .map(|line| {
            (
                tree.distributors[line.beneficiary].id.clone(),
                u64::from(line.level),
                yuan(line.amount_fen),
            )
        })
        .collect();
    let answered: Vec<(String, u64, String)> = answer["commissions"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no commissions in {answer}", order.id))
        .iter()
        .map(|line| {
            (
                line["beneficiary_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                line["level"].as_u64().unwrap_or_default(),
                line["amount"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(answered, expected, "commission of {}", order.id);

    let path = format!("/v1/orders/{}/refunds", order.id);
    let mut refunded_fen = 0;
    for refund in &order.refunds {
        let mut body = json!({ "refund_id": refund.id, "amount": yuan(refund.amount_fen) });
        if let Some(sku) = &refund.sku {
            body["sku"] = sku.clone().into();
        }
        let after = feed
            .send(Method::Post, &path, Some(body.to_string()), 200)
            .await;
        refunded_fen += refund.amount_fen;
        assert_eq!(
            after["refunded"],
            yuan(refunded_fen),
            "{}: {after}",
            refund.id
        );
        let state = if refunded_fen == order.total_fen() {
            "cancelled"
        } else {
            "holding"
        };
        assert_eq!(after["state"], state, "{}: {after}", refund.id);
    }
}

/// 1. Every order is released, or cancelled exactly when refunded in full,
///    with its amounts, each step once in its timeline.
async fn check_orders(feed: &Arc<Feed>, orders: &Arc<Vec<PlannedOrder>>) {
    let checkers: Vec<_> = (0..CLIENTS)
        .map(|checker| {
            let (feed, orders) = (feed.clone(), orders.clone());
            tokio::spawn(async move {
                for order in orders.iter().skip(checker).step_by(CLIENTS) {
                    let view = feed
                        .send(Method::Get, &format!("/v1/orders/{}", order.id), None, 200)
                        .await;
                    let cancelled = order.net_fen() == 0;
                    let state = if cancelled { "cancelled" } else { "released" };
                    assert_eq!(view["state"], state, "{}: {view}", order.id);
                    assert_eq!(view["total"], yuan(order.total_fen()), "{}", order.id);
                    let refunded = order.total_fen() - order.net_fen();
                    assert_eq!(view["refunded"], yuan(refunded), "{}", order.id);
                    let line_state = if cancelled { "cancelled" } else { "released" };
                    let lines = view["commissions"].as_array().expect("commissions");
                    assert!(
                        lines.iter().all(|line| line["state"] == line_state),
                        "{}: {view}",
                        order.id
                    );
                    let mut steps: BTreeMap<String, usize> = BTreeMap::new();
                    for event in view["timeline"].as_array().expect("timeline") {
                        let step = event["step"].as_str().unwrap_or_default().to_owned();
                        *steps.entry(step).or_default() += 1;
                    }
                    let mut expected = BTreeMap::from([("ingest".to_owned(), 1)]);
                    if !order.refunds.is_empty() {
                        expected.insert("refund".to_owned(), order.refunds.len());
                    }
                    if !cancelled {
                        expected.insert("release".to_owned(), 1);
                    }
                    assert_eq!(steps, expected, "timeline of {}: {view}", order.id);
                }
            })
        })
        .collect();
    for checker in checkers {
        checker.await.expect("an order check failed");
    }
}

/// 2. Every distributor's commission listing, all pages: each (order, level)
///    exactly once, with the beneficiary, base, rate and amount this test
///    computes on the order's net amount.
async fn check_lines(feed: &Feed, tree: &Tree, orders: &[PlannedOrder]) {
    let mut expected: BTreeMap<(String, u8), Listed> = BTreeMap::new();
    for order in orders {
        let net = order.net_fen();
        // A cancelled order keeps its lines, each recomputed to zero on the
        // zero net, with the beneficiary and rate it was confirmed with.
        for line in tree.lines(order, if net == 0 { order.total_fen() } else { net }) {
            let amount = if net == 0 { 0 } else { line.amount_fen };
            let bases = vec![yuan(net)];
            let listed = Listed {
                beneficiary: line.beneficiary,
                rate: format!("{}%", line.rate_percent),
                bases,
                amount: yuan(amount),
                state: if net == 0 { "cancelled" } else { "released" },
            };
            assert!(
                expected
                    .insert((order.id.clone(), line.level), listed)
                    .is_none()
            );
        }
    }
    let mut found: BTreeMap<(String, u8), Value> = BTreeMap::new();
    for (index, distributor) in tree.distributors.iter().enumerate() {
        let mut before: Option<i64> = None;
        // Bounded: every page but the last is full, and there are at most
        // three lines per order.
        for _ in 0..=(3 * ORDERS / PAGE + 1) {
            let mut path = format!(
                "/v1/distributors/{}/commissions?limit={PAGE}",
                distributor.id
            );
            if let Some(before) = before {
                path.push_str(&format!("&before={before}"));
            }
            let page = feed.send(Method::Get, &path, None, 200).await;
            for line in page["items"].as_array().expect("items") {
                let order_id = line["order_id"].as_str().expect("order_id").to_owned();
                let level = u8::try_from(line["level"].as_u64().expect("level")).expect("level");
                let key = (order_id, level);
                let Some(listed) = expected.get(&key) else {
                    panic!(
                        "a line nobody expects, listed for {}: {line}",
                        distributor.id
                    );
                };
                let shown = (
                    line["rate"].as_str(),
                    line["amount"].as_str(),
                    line["state"].as_str(),
                );
                let computed = (
                    Some(listed.rate.as_str()),
                    Some(listed.amount.as_str()),
                    Some(listed.state),
                );
                assert_eq!(listed.beneficiary, index, "beneficiary of {key:?}: {line}");
                assert_eq!(shown, computed, "(rate, amount, state) of {key:?}: {line}");
                let base = line["base"].as_str().unwrap_or_default();
                assert!(
                    listed.bases.iter().any(|expected| expected == base),
                    "base of {key:?} is not the net {}: {line}",
                    listed.bases[0]
                );
                let listed_twice = found.insert(key.clone(), line.clone());
                assert!(
                    listed_twice.is_none(),
                    "{key:?} is listed twice: {line} and {}",
                    listed_twice.unwrap_or_default()
                );
            }
            before = page["next_before"].as_i64();
            if before.is_none() {
                break;
            }
        }
        assert!(before.is_none(), "{} has too many lines", distributor.id);
    }
    let missing: Vec<&(String, u8)> = expected
        .keys()
        .filter(|key| !found.contains_key(*key))
        .collect();
    assert!(
        missing.is_empty(),
        "{} lines are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// A commission line as the listing should show it.
struct Listed {
    beneficiary: usize,
    rate: String,
    /// The order's net amount: the base the line must show.
    bases: Vec<String>,
    amount: String,
    state: &'static str,
}

/// 4. Each distributor's `available` is the sum of its released lines, and
///    nothing is left pending, withdrawing or owed.
async fn check_balances(feed: &Feed, tree: &Tree, orders: &[PlannedOrder]) {
    let mut earned = vec![0_i64; tree.distributors.len()];
    for order in orders.iter().filter(|order| order.net_fen() > 0) {
        for line in tree.lines(order, order.net_fen()) {
            earned[line.beneficiary] += line.amount_fen;
        }
    }
    for (distributor, earned) in tree.distributors.iter().zip(earned) {
        let path = format!("/v1/distributors/{}/balance", distributor.id);
        let balance = feed.send(Method::Get, &path, None, 200).await;
        let found = (
            balance["available"].as_str(),
            balance["pending"].as_str(),
            balance["withdrawing"].as_str(),
            balance["debt"].as_str(),
        );
        let expected = yuan(earned);
        assert_eq!(
            found,
            (
                Some(expected.as_str()),
                Some("0.00"),
                Some("0.00"),
                Some("0.00")
            ),
            "balance of {} (available, pending, withdrawing, debt): {balance}",
            distributor.id
        );
    }
}

// ─── The model: a referral tree, orders, refunds, expected commission ───

struct TreeNode {
    id: String,
    referrer: Option<usize>,
    /// Index into [`GRADES`].
    grade: usize,
}

struct Tree {
    distributors: Vec<TreeNode>,
}

/// One commission line as this test computes it.
struct ExpectedLine {
    beneficiary: usize,
    level: u8,
    rate_percent: i64,
    amount_fen: i64,
}

impl Tree {
    /// A chain d00 → d01 → d02 → d03 (so at least four levels exist), then
    /// every further distributor under a random earlier one; mixed grades.
    fn random(rng: &mut Rng) -> Tree {
        let distributors = (0..DISTRIBUTORS)
            .map(|index| TreeNode {
                id: format!("d{index:02}"),
                referrer: match index {
                    0 => None,
                    1..=3 => Some(index - 1),
                    // A few more roots, the rest anywhere above.
                    _ if rng.below(8) == 0 => None,
                    _ => Some(rng.below(index as u64) as usize),
                },
                grade: rng.below(GRADES.len() as u64) as usize,
            })
            .collect();
        Tree { distributors }
    }

    /// The distributor with the most lines to release, whose balance moves
    /// with the first released batch.
    fn busiest(&self, orders: &[PlannedOrder]) -> &str {
        let mut lines = vec![0_usize; self.distributors.len()];
        for order in orders.iter().filter(|order| order.net_fen() > 0) {
            for line in self.lines(order, order.net_fen()) {
                lines[line.beneficiary] += 1;
            }
        }
        let busiest = (0..lines.len())
            .max_by_key(|index| lines[*index])
            .expect("distributors");
        &self.distributors[busiest].id
    }

    /// The lines of `order` when it pays on `base_fen`: the seller and up to
    /// two referrers above, each at its own grade's rate for its level,
    /// rounded half-up to the fen once per line (every item pays the same
    /// rate under the default plan, and the 30% cap is never reached: the
    /// richest chain pays 15% + 8% + 3%).
    fn lines(&self, order: &PlannedOrder, base_fen: i64) -> Vec<ExpectedLine> {
        let mut lines = Vec::new();
        let mut beneficiary = Some(order.seller);
        for level in 1..=3_u8 {
            let Some(index) = beneficiary else { break };
            let node = &self.distributors[index];
            let rate_percent = GRADES[node.grade].1[usize::from(level) - 1];
            let amount_fen = (base_fen * rate_percent + 50) / 100;
            assert!(amount_fen > 0, "the test keeps every line above zero");
            lines.push(ExpectedLine {
                beneficiary: index,
                level,
                rate_percent,
                amount_fen,
            });
            beneficiary = node.referrer;
        }
        lines
    }
}

struct PlannedRefund {
    id: String,
    amount_fen: i64,
    sku: Option<String>,
}

struct PlannedOrder {
    id: String,
    seller: usize,
    items_fen: Vec<i64>,
    refunds: Vec<PlannedRefund>,
    /// The JSON sent, byte for byte the same on every re-send.
    body: String,
    /// From the 202 answer.
    release_at: std::sync::OnceLock<DateTime<Utc>>,
}

impl PlannedOrder {
    fn total_fen(&self) -> i64 {
        self.items_fen.iter().sum()
    }

    fn net_fen(&self) -> i64 {
        self.total_fen()
            - self
                .refunds
                .iter()
                .map(|refund| refund.amount_fen)
                .sum::<i64>()
    }
}

fn sku(item: usize) -> String {
    format!("SKU-{item}")
}

/// ORDERS orders of 1–3 items of 5.00–500.00; REFUNDED_ORDERS of them get
/// refunds that leave at least 1.00 (so every line stays above zero) or
/// nothing (the order is cancelled).
fn plan_orders(rng: &mut Rng, tree: &Tree, now: DateTime<Utc>) -> Vec<PlannedOrder> {
    let mut orders: Vec<PlannedOrder> = (0..ORDERS)
        .map(|index| {
            let seller = rng.below(tree.distributors.len() as u64) as usize;
            let items_fen: Vec<i64> = (0..rng.between(1, 3))
                .map(|_| rng.between(500, 50_000))
                .collect();
            let items: Vec<Value> = items_fen
                .iter()
                .enumerate()
                .map(|(item, fen)| {
                    json!({ "sku": sku(item), "category": "general", "amount": yuan(*fen) })
                })
                .collect();
            let id = format!("order-{index}");
            let body = json!({
                "order_id": id,
                "distributor_id": tree.distributors[seller].id,
                // Never a distributor id: no self-purchase.
                "buyer_id": format!("buyer-{}", rng.below(500)),
                "placed_at": (now - chrono::Duration::days(2)).to_rfc3339(),
                "confirmed_at": now.to_rfc3339(),
                "items": items,
            })
            .to_string();
            PlannedOrder {
                id,
                seller,
                items_fen,
                refunds: Vec::new(),
                body,
                release_at: std::sync::OnceLock::new(),
            }
        })
        .collect();
    let mut refunded = 0;
    // Bounded: each round refunds one more order or hits one already refunded.
    for _ in 0..ORDERS * 10 {
        if refunded == REFUNDED_ORDERS {
            break;
        }
        let order = &mut orders[rng.below(ORDERS as u64) as usize];
        if !order.refunds.is_empty() {
            continue;
        }
        refunded += 1;
        let total = order.total_fen();
        let first_item = order.items_fen[0];
        let id = |n: usize| format!("refund-{}-{n}", order.id);
        order.refunds = match rng.below(4) {
            // In full at once: cancelled.
            0 => vec![PlannedRefund {
                id: id(1),
                amount_fen: total,
                sku: None,
            }],
            // Part, spread over the items.
            1 => vec![PlannedRefund {
                id: id(1),
                amount_fen: rng.between(1, total - 100),
                sku: None,
            }],
            // Part of one sku.
            2 => vec![PlannedRefund {
                id: id(1),
                amount_fen: rng.between(1, (first_item - 100).min(total - 100)),
                sku: Some(sku(0)),
            }],
            // Part of one sku, then the rest: cancelled.
            _ => {
                let first = rng.between(1, first_item / 2);
                vec![
                    PlannedRefund {
                        id: id(1),
                        amount_fen: first,
                        sku: Some(sku(0)),
                    },
                    PlannedRefund {
                        id: id(2),
                        amount_fen: total - first,
                        sku: None,
                    },
                ]
            }
        };
    }
    assert_eq!(refunded, REFUNDED_ORDERS);
    orders
}

/// Integer fen as the API writes amounts: "12.34", "-8.00".
fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", fen.abs() / 100, fen.abs() % 100)
}

/// A small seeded generator (xorshift64*), so a failing run can be replayed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // splitmix64 once, so neighbouring seeds start far apart (and never at 0).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..bound` (`bound` > 0).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// In `low..=high`.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        assert!(low <= high, "{low}..={high}");
        low + self.below((high - low + 1) as u64) as i64
    }
}

// ─── The clients ───

#[derive(Clone, Copy, Debug)]
enum Method {
    Get,
    Post,
}

/// What the clients share: where the server is now, and how far the feed is.
struct Feed {
    client: reqwest::Client,
    /// `http://127.0.0.1:port` of the running server; each start takes a new port.
    address: RwLock<String>,
    admin: String,
    ingest: String,
    /// Orders answered 202.
    answered: AtomicUsize,
    /// Requests sent again after a failed exchange.
    resent: AtomicUsize,
    /// Clients that have fed all of their orders, or failed.
    clients_done: AtomicUsize,
}

/// Counts a client as finished when it ends, also by a failed assertion, so
/// the killer stops waiting for a feed that will not go on.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Feed {
    /// One exchange: the status and body, or `None` when the connection
    /// failed (the server died, or is not up yet).
    async fn send_once(&self, method: Method, path: &str, body: &str) -> Option<(u16, String)> {
        let url = format!("{}{path}", self.address.read().unwrap());
        let token = if path.starts_with("/v1/orders") && matches!(method, Method::Post)
            || path == "/v1/distributors"
        {
            &self.ingest
        } else {
            &self.admin
        };
        let request = match method {
            Method::Get => self.client.get(url),
            Method::Post => self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_owned()),
        };
        let response = request.bearer_auth(token).send().await.ok()?;
        let status = response.status().as_u16();
        let body = response.text().await.ok()?;
        Some((status, body))
    }

    /// Sends until answered `expected` (re-sending the same body after a
    /// failed connection or a 503), and returns the JSON answer. Any other
    /// answer fails the test.
    async fn send(&self, method: Method, path: &str, body: Option<String>, expected: u16) -> Value {
        let body = body.unwrap_or_default();
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let mut last = None;
        // Bounded by the deadline.
        loop {
            match self.send_once(method, path, &body).await {
                Some((status, answer)) if status == expected => {
                    return serde_json::from_str(&answer)
                        .unwrap_or_else(|error| panic!("{path}: {error} in {answer}"));
                }
                Some((503, answer)) => last = Some((503, answer)),
                Some((status, answer)) => {
                    panic!("{method:?} {path} {body} answered {status}: {answer}")
                }
                None => {}
            }
            assert!(
                Instant::now() < deadline,
                "{method:?} {path} was not answered {expected} within {REQUEST_DEADLINE:?} \
                 (last: {last:?})"
            );
            self.resent.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

// ─── The server process ───

/// The `fenrun serve` process; killed (and waited for) when dropped, so a
/// failing test leaves no server behind.
pub(crate) struct Server {
    database_url: String,
    logs: PathBuf,
    child: Option<Child>,
    starts: usize,
    /// Extra environment of every start (e.g. the sandbox gateway's URL).
    env: Vec<(String, String)>,
    simulated_clock: bool,
    /// Every start listens on this port when set (callbacks keep reaching it).
    port: Option<u16>,
}

impl Server {
    pub(crate) fn new(database_url: &str, logs: &Path) -> Server {
        Server {
            database_url: database_url.to_owned(),
            logs: logs.to_path_buf(),
            child: None,
            starts: 0,
            env: Vec::new(),
            simulated_clock: true,
            port: None,
        }
    }

    /// A server on the simulated clock with `env` set at every start.
    pub(crate) fn with_env(mut self, env: Vec<(String, String)>) -> Server {
        self.env = env;
        self
    }

    /// A server on the wall clock, always on one port, with `env` set.
    pub(crate) fn with_wall_clock_on_one_port(self, env: Vec<(String, String)>) -> Server {
        let mut server = self.with_env(env).on_one_port();
        server.simulated_clock = false;
        server
    }

    /// Every start listens on the same free port, so a gateway's callbacks
    /// to the first start reach each later one.
    pub(crate) fn on_one_port(mut self) -> Server {
        self.port = Some(
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port(),
        );
        self
    }

    fn log_path(&self) -> PathBuf {
        self.logs.join(format!("serve-{}.log", self.starts))
    }

    /// Starts `fenrun serve` on a free port and waits for `/healthz`;
    /// returns the server's address. A port taken between our probe and the
    /// server's bind is tried again with another.
    pub(crate) async fn start(&mut self, client: &reqwest::Client) -> String {
        for _ in 0..PORT_TRIES {
            if let Some(address) = self.try_start(client).await {
                return address;
            }
        }
        panic!("no free port in {PORT_TRIES} tries");
    }

    /// `None` when the port was taken; fails the test on any other failure.
    async fn try_start(&mut self, client: &reqwest::Client) -> Option<String> {
        assert!(self.child.is_none(), "one server at a time");
        self.starts += 1;
        let port = self.port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port()
        });
        let listen = format!("127.0.0.1:{port}");
        let log = File::create(self.log_path()).expect("server log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_fenrun"));
        command
            .args(["--database-url", &self.database_url])
            .args(["serve", "--listen", &listen]);
        if self.simulated_clock {
            command.arg("--simulated-clock");
        }
        let child = command
            // Standard withdrawals are paid at once, as in `spawn_app`.
            .env("FENRUN_STANDARD_WITHDRAWALS_AT_ONCE", "true")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .env("FENRUN_LOG_FILTER", "warn")
            .env("FENRUN_MASTER_KEY", crate::helpers::TEST_MASTER_KEY)
            .env_remove("FENRUN_CONFIG")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("server log file"))
            .stderr(log)
            .spawn()
            .expect("start fenrun serve");
        self.child = Some(child);
        let address = format!("http://{listen}");
        let deadline = Instant::now() + START_TIMEOUT;
        // Bounded by the deadline.
        loop {
            if let Ok(response) = client.get(format!("{address}/healthz")).send().await
                && response.status() == 200
            {
                return Some(address);
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            let log = || std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if exited.is_some() && log().contains("Address already in use") && self.port.is_none() {
                self.child = None;
                return None;
            }
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "start {} did not come up (exit: {exited:?}); its log:\n{}",
                self.starts,
                log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and reap the process.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh database migrated by `fenrun migrate`, and a folder for the
/// servers' logs.
pub(crate) async fn migrated_db(backend: Backend) -> (TestDb, tempfile::TempDir) {
    let db = TestDb::new(backend).await;
    let logs = tempfile::tempdir().expect("temp dir for server logs");
    let migrate = fenrun(&db.url, &["migrate"]);
    assert!(
        migrate.status.success(),
        "migrate: {}",
        text(&migrate.stderr)
    );
    (db, logs)
}

pub(crate) fn fenrun(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fenrun"))
        .args(["--database-url", database_url])
        .args(args)
        .env("FENRUN_LOG_FILTER", "warn")
        .env_remove("FENRUN_CONFIG")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run fenrun")
}

pub(crate) fn token(database_url: &str, role: &str) -> String {
    let output = fenrun(database_url, &["token", "create", "--role", role]);
    assert!(output.status.success(), "token: {}", text(&output.stderr));
    text(&output.stdout)
        .split_whitespace()
        .last()
        .expect("the token is the last word")
        .to_owned()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
