-- Month close (issue 14): the team bonus (团队奖) paid at month close, a
-- statement per distributor and month, and each month's close itself, so a
-- re-run skips what is done and a crash mid-way resumes where it stopped.
-- Months are local to the settlement time zone ('YYYY-MM'); amounts are fen.

-- One row per month whose close started. finished_at stays null until every
-- distributor with activity has its statement; the counts grow batch by
-- batch, in the batches' own transactions.
create table month_closes (
    month text primary key,
    started_at integer not null,
    finished_at integer,
    -- The plan in force at the month's last instant (whose [team_bonus] applies).
    plan_version integer not null references commission_plans (version),
    statements integer not null default 0,
    bonuses integer not null default 0,
    bonus_fen integer not null default 0,
    created_at integer not null,
    constraint month_closes_month check (month glob '[0-9][0-9][0-9][0-9]-[0-1][0-9]')
) strict;

-- A team bonus paid: the explanation (the figures and rule it came from)
-- beside the ledger transfer `team_bonus:{distributor_id}:{month}` that paid
-- it. Written in the same transaction as the transfer and the statement.
create table team_bonuses (
    distributor_id text not null references distributors (id),
    month text not null,
    own_sales_fen integer not null,
    team_sales_fen integer not null,
    threshold_fen integer not null,
    rate text not null,                 -- exact decimal fraction, e.g. '0.01'
    amount_fen integer not null,
    plan_version integer not null references commission_plans (version),
    transfer_id integer not null references ledger_transfers (id),
    created_at integer not null,
    primary key (distributor_id, month),
    constraint team_bonuses_amount check (amount_fen > 0),
    constraint team_bonuses_threshold check (team_sales_fen >= threshold_fen)
) strict;

-- A distributor's month: what was earned, released, clawed back, paid as
-- team bonus and withdrawn in it, the settled sales behind it, and the
-- balances when the statement was written (at close, after the bonus).
create table monthly_statements (
    distributor_id text not null references distributors (id),
    month text not null,
    earned_fen integer not null,        -- pending created by lines of orders confirmed in the month
    released_fen integer not null,
    clawed_back_fen integer not null,
    team_bonus_fen integer not null,
    withdrawn_fen integer not null,
    own_sales_fen integer not null,     -- settled: released orders, net of refunds, by release_at
    team_sales_fen integer not null,    -- own + where the distributor is level 2 or 3
    pending_fen integer not null,
    available_fen integer not null,
    withdrawing_fen integer not null,
    created_at integer not null,
    constraint monthly_statements_identity unique (distributor_id, month)
) strict;

-- Settled sales are counted by release_at among released orders; the
-- existing orders_due index covers holding orders only.
create index orders_released_at on orders (release_at) where state = 'released';
-- A month's ledger movements are found by their time.
create index ledger_transfers_created on ledger_transfers (created_at);

-- The team bonus is an expense of its own, beside commission expense, so
-- the books show what the bonus cost.
insert into ledger_accounts (id, owner_distributor_id, kind, tracks_balance, may_go_negative, created_at) values
    ('platform:team_bonus_expense', null, 'team_bonus_expense', 0, 1, 0);
