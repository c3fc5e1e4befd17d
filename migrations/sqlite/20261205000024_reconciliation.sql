-- Daily reconciliation (对账, issue 15 item 6): each gateway's statement of
-- a China day matched against our payouts. A run is re-runnable: its row,
-- the matches and the mismatches of a day are rewritten together in one
-- transaction, and a resolution, once given, is kept across re-runs. Times
-- are microseconds since the epoch (src/store/time.rs).

-- One row per statement source ('wechat', 'alipay') and China day
-- ('YYYY-MM-DD'). 'failed' keeps the last error and when to try again;
-- 'finished' the totals and what was held for the next day.
create table reconciliation_runs (
    source text not null,
    bill_date text not null,
    state text not null,
    attempts integer not null default 0,
    last_error text,
    next_attempt_at integer,
    lines integer not null default 0,
    matched integer not null default 0,
    -- JSON: per channel, count and sum of both sides (domain ChannelTotals).
    totals text,
    -- JSON array of [withdrawal_id, 'payout'|'return'] not on this day's
    -- file: the next day's run calls them missing if its file lacks them too.
    held text not null default '[]',
    finished_at integer,
    created_at integer not null,
    updated_at integer not null,
    primary key (source, bill_date),
    constraint reconciliation_runs_source check (source in ('wechat', 'alipay')),
    constraint reconciliation_runs_state check (state in ('finished', 'failed')),
    constraint reconciliation_runs_date check (bill_date glob '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]')
) strict;

-- Runs to try again, oldest first.
create index reconciliation_runs_due on reconciliation_runs (next_attempt_at)
    where state = 'failed';

-- A movement of ours (the payout, or its bounce) that a statement line
-- showed. Keyed by the movement, so a payout is matched once whichever day's
-- file carried it (a payout near midnight may be on the next day's).
create table reconciliation_matches (
    withdrawal_id text not null references withdrawals (id),
    kind text not null,
    source text not null,
    bill_date text not null,
    created_at integer not null,
    primary key (withdrawal_id, kind),
    constraint reconciliation_matches_kind check (kind in ('payout', 'return'))
) strict;

-- What did not agree. A re-run of the day rewrites the unresolved ones (a
-- fixed cause makes its mismatch go away) and keeps the resolved ones with
-- their audited resolution: the side taken and why.
create table reconciliation_mismatches (
    id integer primary key,
    source text not null,
    bill_date text not null,
    -- Our bill number, or 'ref:' and the gateway's number for a line with none.
    bill_no text not null,
    class text not null,
    withdrawal_id text references withdrawals (id),
    channel text,
    at_channel_fen integer,
    at_fenrun_fen integer,
    found_at integer not null,
    -- 'ledger': fenrun is right (the gateway corrects or it is explained);
    -- 'channel': the gateway is right (fenrun's books get corrected).
    resolution text,
    resolution_reason text,
    resolved_by text,
    resolved_at integer,
    created_at integer not null,
    constraint reconciliation_mismatches_identity unique (source, bill_date, bill_no, class),
    constraint reconciliation_mismatches_resolution check (
        (resolution is null) = (resolved_at is null)
        and (resolution is null) = (resolution_reason is null)
        and coalesce(resolution, 'ledger') in ('ledger', 'channel'))
) strict;

-- The unresolved ones, for the console, the metric and the alert.
create index reconciliation_mismatches_open on reconciliation_mismatches (found_at)
    where resolution is null;

-- Our payouts of a day: paid or returned ones by the time they were paid
-- (finished_at), and bounces by returned_at.
create index withdrawals_paid_at on withdrawals (finished_at)
    where state in ('paid', 'returned');
create index withdrawals_returned_at on withdrawals (returned_at)
    where state = 'returned';
