//! Reconciliation (对账): one gateway's statement of one China day, matched
//! line by line against fenrun's payouts, and what does not agree sorted
//! into the classes payment ops act on.
//!
//! ```text
//! statement lines ─┬─ payout line ── our withdrawal by bill number? ── paid/returned here: match (amount, fee checked)
//!                  │                                                └─ not paid here / unknown: mismatch
//!                  └─ return line ── returned here: match; otherwise a mismatch
//! our payouts of the day not on the file ── held one day (the gateway's day may end after ours)
//! our payouts held from the day before, still not on a file ── missing at the channel
//! ```
//!
//! The matching is by our bill number (`out_bill_no`, derived from the
//! withdrawal id), never by amount or time. Pure: the engine loads the
//! statement and our side, this module decides, the store writes.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::UnknownName;
use crate::domain::identity::PayoutChannel;
use crate::domain::money::Money;

/// Whose statement: one file per gateway account, which may pay several
/// channels (the Alipay app pays Alipay accounts and bank cards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementSource {
    /// The WeChat Pay fund-flow bill (资金账单) of the operation account.
    Wechat,
    /// The Alipay account log (`signcustomer`).
    Alipay,
}

impl StatementSource {
    pub const ALL: [StatementSource; 2] = [StatementSource::Wechat, StatementSource::Alipay];

    pub fn as_str(self) -> &'static str {
        match self {
            StatementSource::Wechat => "wechat",
            StatementSource::Alipay => "alipay",
        }
    }

    pub fn parse(text: &str) -> Result<StatementSource, UnknownName> {
        match text {
            "wechat" => Ok(StatementSource::Wechat),
            "alipay" => Ok(StatementSource::Alipay),
            other => Err(UnknownName(format!("statement source {other:?}"))),
        }
    }

    /// The payout channels whose money moves on this statement.
    pub fn channels(self) -> &'static [PayoutChannel] {
        match self {
            StatementSource::Wechat => &[PayoutChannel::Wechat],
            StatementSource::Alipay => &[PayoutChannel::Alipay, PayoutChannel::Bank],
        }
    }

    /// The statement a channel's payouts appear on.
    pub fn of_channel(channel: PayoutChannel) -> StatementSource {
        match channel {
            PayoutChannel::Wechat => StatementSource::Wechat,
            PayoutChannel::Alipay | PayoutChannel::Bank => StatementSource::Alipay,
        }
    }
}

/// What a statement line is, for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// Money out to a payee.
    Payout,
    /// Money back for one of our bills (a bounce, 退票).
    Return,
    /// The gateway's fee for a bill.
    Fee,
    /// Anything else (a top-up, an adjustment): not ours to match.
    Other,
}

/// One line of a statement, as the engine read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelLine {
    /// Our bill number; empty when the gateway moved money we did not ask for.
    pub bill_no: String,
    /// The gateway's own number of the movement.
    pub gateway_ref: String,
    pub kind: LineKind,
    /// Positive; `kind` says the direction.
    pub amount: Money,
}

/// Where one of our withdrawals stands, as far as the money is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutState {
    /// Paid (the gateway said so).
    Paid,
    /// Paid, then bounced back (退票).
    Returned,
    /// Not paid (yet): in review, transferring, failed, cancelled….
    NotPaid,
}

/// One of our withdrawals, as reconciliation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenrunPayout {
    pub withdrawal_id: String,
    pub bill_no: String,
    pub channel: PayoutChannel,
    pub state: PayoutState,
    /// What the payee is sent: the amount a payout line must show.
    pub net: Money,
    /// China date the payout was recorded (for paid and returned ones).
    pub paid_on: Option<NaiveDate>,
    /// China date the bounce was recorded.
    pub returned_on: Option<NaiveDate>,
}

/// Which of a withdrawal's movements a statement line matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    Payout,
    Return,
}

impl MatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::Payout => "payout",
            MatchKind::Return => "return",
        }
    }

    pub fn parse(text: &str) -> Result<MatchKind, UnknownName> {
        match text {
            "payout" => Ok(MatchKind::Payout),
            "return" => Ok(MatchKind::Return),
            other => Err(UnknownName(format!("match kind {other:?}"))),
        }
    }
}

/// Why a line or a payout does not agree. Stable names: they are the API's
/// and the metrics' words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchClass {
    /// We paid; no statement showed it by the day after.
    MissingAtChannel,
    /// The statement pays (or returns) a bill number we never sent.
    MissingAtFenrun,
    /// The statement pays a withdrawal fenrun does not hold as paid.
    PaidAtChannelNotAtFenrun,
    /// The statement returns a payout fenrun holds as paid.
    ReturnedAtChannelNotAtFenrun,
    /// Fenrun recorded a bounce no statement showed by the day after.
    ReturnedAtFenrunNotAtChannel,
    /// The statement's amount is larger than what we sent.
    AmountLargerAtChannel,
    /// The statement's amount is smaller than what we sent.
    AmountSmallerAtChannel,
    /// The gateway's fee for the bill is not the one the settings expect.
    FeeDiffers,
    /// More than one payout line for one bill number.
    PaidTwiceAtChannel,
}

impl MismatchClass {
    pub const ALL: [MismatchClass; 9] = [
        MismatchClass::MissingAtChannel,
        MismatchClass::MissingAtFenrun,
        MismatchClass::PaidAtChannelNotAtFenrun,
        MismatchClass::ReturnedAtChannelNotAtFenrun,
        MismatchClass::ReturnedAtFenrunNotAtChannel,
        MismatchClass::AmountLargerAtChannel,
        MismatchClass::AmountSmallerAtChannel,
        MismatchClass::FeeDiffers,
        MismatchClass::PaidTwiceAtChannel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MismatchClass::MissingAtChannel => "missing_at_channel",
            MismatchClass::MissingAtFenrun => "missing_at_fenrun",
            MismatchClass::PaidAtChannelNotAtFenrun => "paid_at_channel_not_at_fenrun",
            MismatchClass::ReturnedAtChannelNotAtFenrun => "returned_at_channel_not_at_fenrun",
            MismatchClass::ReturnedAtFenrunNotAtChannel => "returned_at_fenrun_not_at_channel",
            MismatchClass::AmountLargerAtChannel => "amount_larger_at_channel",
            MismatchClass::AmountSmallerAtChannel => "amount_smaller_at_channel",
            MismatchClass::FeeDiffers => "fee_differs",
            MismatchClass::PaidTwiceAtChannel => "paid_twice_at_channel",
        }
    }

    pub fn parse(text: &str) -> Result<MismatchClass, UnknownName> {
        MismatchClass::ALL
            .into_iter()
            .find(|class| class.as_str() == text)
            .ok_or_else(|| UnknownName(format!("mismatch class {text:?}")))
    }

    /// What payment ops should look at first, in one sentence.
    pub fn advice(self) -> &'static str {
        match self {
            MismatchClass::MissingAtChannel => {
                "ask the gateway about the bill: query it, or check the next day's statement"
            }
            MismatchClass::MissingAtFenrun => {
                "money moved that fenrun never asked for: find who sent it at the gateway's console"
            }
            MismatchClass::PaidAtChannelNotAtFenrun => {
                "the gateway paid a withdrawal fenrun does not hold as paid: check its timeline before any retry"
            }
            MismatchClass::ReturnedAtChannelNotAtFenrun => {
                "the gateway returned the payout: fenrun has not seen the bounce (退票) notification"
            }
            MismatchClass::ReturnedAtFenrunNotAtChannel => {
                "fenrun recorded a bounce the statement does not show: confirm it with the gateway"
            }
            MismatchClass::AmountLargerAtChannel | MismatchClass::AmountSmallerAtChannel => {
                "the amounts differ: compare the withdrawal's net with the gateway's bill"
            }
            MismatchClass::FeeDiffers => {
                "the gateway's fee is not the one in workflows/reconciliation.toml [fees]"
            }
            MismatchClass::PaidTwiceAtChannel => {
                "the gateway paid one bill twice: claim the second payment back"
            }
        }
    }
}

/// One disagreement, keyed by `(bill_no, class)` within its day and source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Our bill number, or `ref:` and the gateway's number when the line
    /// carries none.
    pub bill_no: String,
    pub class: MismatchClass,
    pub withdrawal_id: Option<String>,
    pub channel: Option<PayoutChannel>,
    /// The statement's figure (payout, return or fee, as the class says).
    pub at_channel: Option<Money>,
    /// Ours.
    pub at_fenrun: Option<Money>,
}

/// A count and a sum of fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CountSum {
    pub count: u64,
    pub sum: Money,
}

impl CountSum {
    fn add(&mut self, amount: Money) {
        self.count += 1;
        self.sum = self
            .sum
            .checked_add(amount)
            .expect("a day's payouts fit in i64 fen");
    }
}

/// One channel's day, both sides: what the statement shows and what fenrun
/// recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChannelTotals {
    pub channel_payouts: CountSum,
    pub fenrun_payouts: CountSum,
    pub channel_returns: CountSum,
    pub fenrun_returns: CountSum,
    pub channel_fees: CountSum,
}

/// Everything one day's matching needs.
#[derive(Debug, Clone)]
pub struct DayInput {
    pub source: StatementSource,
    pub bill_date: NaiveDate,
    pub lines: Vec<ChannelLine>,
    /// Our payouts paid or returned on `bill_date` on the source's channels,
    /// those held from the day before, and every withdrawal a line names.
    pub payouts: Vec<FenrunPayout>,
    /// Movements held from the day before that no statement has matched yet.
    pub held_before: Vec<(String, MatchKind)>,
    /// Movements already matched on another day's statement.
    pub matched_elsewhere: HashSet<(String, MatchKind)>,
    /// The fee the gateway charges per payout, per channel; none is zero.
    pub fees: BTreeMap<PayoutChannel, Money>,
}

/// What the day's matching found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayResult {
    /// `(withdrawal_id, kind)` matched by a line of this statement.
    pub matches: Vec<(String, MatchKind)>,
    pub mismatches: Vec<Mismatch>,
    /// Our movements of the day not on this statement: given one more day.
    pub held: Vec<(String, MatchKind)>,
    pub totals: BTreeMap<PayoutChannel, ChannelTotals>,
}

/// Lines of one bill number, by kind.
#[derive(Default)]
struct BillLines {
    payouts: Vec<Money>,
    returns: Vec<Money>,
    fees: Vec<Money>,
}

/// Matches one day's statement against our payouts.
pub fn reconcile_day(input: &DayInput) -> DayResult {
    let mut result = DayResult::default();
    for channel in input.source.channels() {
        result.totals.insert(*channel, ChannelTotals::default());
    }
    let by_bill: HashMap<&str, &FenrunPayout> = input
        .payouts
        .iter()
        .map(|payout| (payout.bill_no.as_str(), payout))
        .collect();
    let default_channel = input.source.channels()[0];
    let mut lines: BTreeMap<String, BillLines> = BTreeMap::new();
    for line in &input.lines {
        let key = if line.bill_no.is_empty() {
            format!("ref:{}", line.gateway_ref)
        } else {
            line.bill_no.clone()
        };
        let channel = by_bill
            .get(line.bill_no.as_str())
            .map_or(default_channel, |payout| payout.channel);
        let totals = result.totals.entry(channel).or_default();
        let bill = lines.entry(key).or_default();
        match line.kind {
            LineKind::Payout => {
                totals.channel_payouts.add(line.amount);
                bill.payouts.push(line.amount);
            }
            LineKind::Return => {
                totals.channel_returns.add(line.amount);
                bill.returns.push(line.amount);
            }
            LineKind::Fee => {
                totals.channel_fees.add(line.amount);
                bill.fees.push(line.amount);
            }
            LineKind::Other => {}
        }
    }
    for payout in &input.payouts {
        if !input.source.channels().contains(&payout.channel) {
            continue;
        }
        let totals = result.totals.entry(payout.channel).or_default();
        if payout.paid_on == Some(input.bill_date) {
            totals.fenrun_payouts.add(payout.net);
        }
        if payout.returned_on == Some(input.bill_date) {
            totals.fenrun_returns.add(payout.net);
        }
    }

    let mut matched: HashSet<(String, MatchKind)> = HashSet::new();
    for (key, bill) in &lines {
        let ours = by_bill.get(key.as_str()).copied();
        let mut mismatch = |class, at_channel: Option<Money>, at_fenrun: Option<Money>| {
            result.mismatches.push(Mismatch {
                bill_no: key.clone(),
                class,
                withdrawal_id: ours.map(|payout| payout.withdrawal_id.clone()),
                channel: ours.map(|payout| payout.channel),
                at_channel,
                at_fenrun,
            });
        };
        let sum = |amounts: &[Money]| {
            Money::checked_sum(amounts.iter().copied()).expect("a bill's lines fit in i64 fen")
        };
        if let Some(first) = bill.payouts.first() {
            if bill.payouts.len() > 1 {
                mismatch(
                    MismatchClass::PaidTwiceAtChannel,
                    Some(sum(&bill.payouts)),
                    ours.map(|payout| payout.net),
                );
            }
            match ours {
                None => mismatch(MismatchClass::MissingAtFenrun, Some(*first), None),
                Some(payout) if payout.state == PayoutState::NotPaid => mismatch(
                    MismatchClass::PaidAtChannelNotAtFenrun,
                    Some(*first),
                    Some(payout.net),
                ),
                Some(payout) => {
                    matched.insert((payout.withdrawal_id.clone(), MatchKind::Payout));
                    if *first > payout.net {
                        mismatch(
                            MismatchClass::AmountLargerAtChannel,
                            Some(*first),
                            Some(payout.net),
                        );
                    } else if *first < payout.net {
                        mismatch(
                            MismatchClass::AmountSmallerAtChannel,
                            Some(*first),
                            Some(payout.net),
                        );
                    }
                }
            }
        }
        if let Some(first) = bill.returns.first() {
            match ours {
                None => {
                    if bill.payouts.is_empty() {
                        mismatch(MismatchClass::MissingAtFenrun, Some(*first), None);
                    }
                }
                Some(payout) if payout.state == PayoutState::Returned => {
                    matched.insert((payout.withdrawal_id.clone(), MatchKind::Return));
                }
                Some(payout) => mismatch(
                    MismatchClass::ReturnedAtChannelNotAtFenrun,
                    Some(*first),
                    Some(payout.net),
                ),
            }
        }
        let expected_fee = match (ours, bill.payouts.is_empty()) {
            (Some(payout), false) => input.fees.get(&payout.channel).copied().unwrap_or_default(),
            _ => Money::default(),
        };
        let charged = sum(&bill.fees);
        if charged != expected_fee && (ours.is_some() || !bill.fees.is_empty()) {
            mismatch(MismatchClass::FeeDiffers, Some(charged), Some(expected_fee));
        }
    }

    for payout in &input.payouts {
        for (kind, on) in [
            (MatchKind::Payout, payout.paid_on),
            (MatchKind::Return, payout.returned_on),
        ] {
            let key = (payout.withdrawal_id.clone(), kind);
            if on != Some(input.bill_date)
                || matched.contains(&key)
                || input.matched_elsewhere.contains(&key)
            {
                continue;
            }
            result.held.push(key);
        }
    }
    for (withdrawal_id, kind) in &input.held_before {
        let key = (withdrawal_id.clone(), *kind);
        if matched.contains(&key) || input.matched_elsewhere.contains(&key) {
            continue;
        }
        let Some(payout) = input
            .payouts
            .iter()
            .find(|payout| &payout.withdrawal_id == withdrawal_id)
        else {
            continue;
        };
        result.mismatches.push(Mismatch {
            bill_no: payout.bill_no.clone(),
            class: match kind {
                MatchKind::Payout => MismatchClass::MissingAtChannel,
                MatchKind::Return => MismatchClass::ReturnedAtFenrunNotAtChannel,
            },
            withdrawal_id: Some(payout.withdrawal_id.clone()),
            channel: Some(payout.channel),
            at_channel: None,
            at_fenrun: Some(payout.net),
        });
    }
    let mut matches: Vec<_> = matched.into_iter().collect();
    matches.sort();
    result.matches = matches;
    result.held.sort();
    result
        .mismatches
        .sort_by(|a, b| (&a.bill_no, a.class).cmp(&(&b.bill_no, b.class)));
    result
}

#[cfg(test)]
mod tests {
    // Amounts in fen are written yuan_fen (`100_00` is 100.00 yuan).
    #![allow(clippy::inconsistent_digit_grouping)]

    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, 3, d).unwrap()
    }

    fn fen(fen: i64) -> Money {
        Money::from_fen(fen)
    }

    fn payout(n: u32, channel: PayoutChannel, state: PayoutState, net: i64) -> FenrunPayout {
        FenrunPayout {
            withdrawal_id: format!("wd_{n:02}"),
            bill_no: format!("wd{n:02}"),
            channel,
            state,
            net: fen(net),
            paid_on: (state != PayoutState::NotPaid).then_some(day(10)),
            returned_on: (state == PayoutState::Returned).then_some(day(10)),
        }
    }

    fn line(bill_no: &str, kind: LineKind, amount: i64) -> ChannelLine {
        ChannelLine {
            bill_no: bill_no.to_owned(),
            gateway_ref: format!("ref{bill_no}"),
            kind,
            amount: fen(amount),
        }
    }

    fn input(payouts: Vec<FenrunPayout>, lines: Vec<ChannelLine>) -> DayInput {
        DayInput {
            source: StatementSource::Alipay,
            bill_date: day(10),
            lines,
            payouts,
            held_before: Vec::new(),
            matched_elsewhere: HashSet::new(),
            fees: BTreeMap::new(),
        }
    }

    fn classes(result: &DayResult) -> Vec<(&str, MismatchClass)> {
        result
            .mismatches
            .iter()
            .map(|m| (m.bill_no.as_str(), m.class))
            .collect()
    }

    #[test]
    fn a_clean_day_matches_every_line_and_both_sides_total_the_same() {
        let ours = vec![
            payout(1, PayoutChannel::Alipay, PayoutState::Paid, 100_00),
            payout(2, PayoutChannel::Bank, PayoutState::Returned, 250_00),
        ];
        let lines = vec![
            line("wd01", LineKind::Payout, 100_00),
            line("wd02", LineKind::Payout, 250_00),
            line("wd02", LineKind::Return, 250_00),
            line("", LineKind::Other, 1_000_00),
        ];
        let result = reconcile_day(&input(ours, lines));
        assert_eq!(classes(&result), vec![]);
        assert!(result.held.is_empty());
        assert_eq!(result.matches.len(), 3);
        let bank = result.totals[&PayoutChannel::Bank];
        assert_eq!(bank.channel_payouts, bank.fenrun_payouts);
        assert_eq!(bank.channel_returns, bank.fenrun_returns);
        assert_eq!(bank.fenrun_returns.sum, fen(250_00));
        let alipay = result.totals[&PayoutChannel::Alipay];
        assert_eq!(alipay.channel_payouts.count, 1);
        assert_eq!(alipay.fenrun_payouts.sum, fen(100_00));
    }

    #[test]
    fn a_payout_missing_from_its_day_is_held_then_missing_the_day_after() {
        let ours = vec![payout(1, PayoutChannel::Alipay, PayoutState::Paid, 100_00)];
        let today = reconcile_day(&input(ours.clone(), vec![]));
        assert_eq!(classes(&today), vec![]);
        assert_eq!(today.held, vec![("wd_01".to_owned(), MatchKind::Payout)]);

        let mut next = input(ours.clone(), vec![]);
        next.bill_date = day(11);
        next.held_before = today.held.clone();
        let next_day = reconcile_day(&next);
        assert_eq!(
            classes(&next_day),
            vec![("wd01", MismatchClass::MissingAtChannel)]
        );

        // On the next day's file after all: matched, no mismatch.
        let mut late = next.clone();
        late.lines = vec![line("wd01", LineKind::Payout, 100_00)];
        let late = reconcile_day(&late);
        assert_eq!(classes(&late), vec![]);
        assert_eq!(late.matches, vec![("wd_01".to_owned(), MatchKind::Payout)]);

        // Matched by a re-run of the day after already: nothing held.
        let mut rerun = input(ours, vec![]);
        rerun
            .matched_elsewhere
            .insert(("wd_01".to_owned(), MatchKind::Payout));
        assert!(reconcile_day(&rerun).held.is_empty());
    }

    #[test]
    fn lines_fenrun_never_sent_or_never_paid_are_mismatches() {
        let ours = vec![payout(
            1,
            PayoutChannel::Alipay,
            PayoutState::NotPaid,
            100_00,
        )];
        let lines = vec![
            line("wd01", LineKind::Payout, 100_00),
            line("sbxextra0001", LineKind::Payout, 1_00),
            line("", LineKind::Payout, 5_00),
        ];
        let result = reconcile_day(&input(ours, lines));
        assert_eq!(
            classes(&result),
            vec![
                ("ref:ref", MismatchClass::MissingAtFenrun),
                ("sbxextra0001", MismatchClass::MissingAtFenrun),
                ("wd01", MismatchClass::PaidAtChannelNotAtFenrun),
            ]
        );
        assert!(result.matches.is_empty());
    }

    #[test]
    fn amounts_states_fees_and_double_payments_are_told_apart() {
        let ours = vec![
            payout(1, PayoutChannel::Alipay, PayoutState::Paid, 100_00),
            payout(2, PayoutChannel::Alipay, PayoutState::Paid, 100_00),
            payout(3, PayoutChannel::Alipay, PayoutState::Paid, 100_00),
            payout(4, PayoutChannel::Bank, PayoutState::Paid, 100_00),
            payout(5, PayoutChannel::Bank, PayoutState::Paid, 100_00),
        ];
        let lines = vec![
            line("wd01", LineKind::Payout, 101_00),
            line("wd02", LineKind::Payout, 99_99),
            line("wd03", LineKind::Payout, 100_00),
            line("wd03", LineKind::Return, 100_00),
            line("wd04", LineKind::Payout, 100_00),
            line("wd04", LineKind::Fee, 3_00),
            line("wd05", LineKind::Payout, 100_00),
            line("wd05", LineKind::Payout, 100_00),
            line("wd05", LineKind::Fee, 2_00),
            line("wd05", LineKind::Fee, 2_00),
        ];
        let mut day_input = input(ours, lines);
        day_input.fees.insert(PayoutChannel::Bank, fen(2_00));
        let result = reconcile_day(&day_input);
        assert_eq!(
            classes(&result),
            vec![
                ("wd01", MismatchClass::AmountLargerAtChannel),
                ("wd02", MismatchClass::AmountSmallerAtChannel),
                ("wd03", MismatchClass::ReturnedAtChannelNotAtFenrun),
                ("wd04", MismatchClass::FeeDiffers),
                ("wd05", MismatchClass::FeeDiffers),
                ("wd05", MismatchClass::PaidTwiceAtChannel),
            ]
        );
        let fee = &result.mismatches[3];
        assert_eq!(
            (fee.at_channel, fee.at_fenrun),
            (Some(fen(3_00)), Some(fen(2_00)))
        );
    }

    #[test]
    fn a_bounce_fenrun_recorded_but_no_statement_showed_is_found_the_day_after() {
        let ours = vec![payout(1, PayoutChannel::Bank, PayoutState::Returned, 80_00)];
        let first = reconcile_day(&input(
            ours.clone(),
            vec![line("wd01", LineKind::Payout, 80_00)],
        ));
        assert_eq!(first.held, vec![("wd_01".to_owned(), MatchKind::Return)]);
        let mut next = input(ours, vec![]);
        next.bill_date = day(11);
        next.held_before = first.held;
        next.matched_elsewhere
            .insert(("wd_01".to_owned(), MatchKind::Payout));
        assert_eq!(
            classes(&reconcile_day(&next)),
            vec![("wd01", MismatchClass::ReturnedAtFenrunNotAtChannel)]
        );
    }

    #[test]
    fn every_class_has_a_stable_name_that_parses_back() {
        for class in MismatchClass::ALL {
            assert_eq!(MismatchClass::parse(class.as_str()), Ok(class));
            assert!(!class.advice().is_empty());
        }
        for source in StatementSource::ALL {
            assert_eq!(StatementSource::parse(source.as_str()), Ok(source));
            for channel in source.channels() {
                assert_eq!(StatementSource::of_channel(*channel), source);
            }
        }
    }
}
