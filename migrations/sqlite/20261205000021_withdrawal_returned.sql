-- no-transaction
-- A bank payout can bounce (退票) after success: the withdrawal then ends
-- `returned`. SQLite cannot alter a CHECK constraint, so the table is
-- rebuilt by the documented procedure (sqlite.org/lang_altertable.html,
-- "Making Other Kinds Of Table Schema Changes"): foreign keys off for the
-- rebuild, checked before commit, on again after. Hence no transaction of
-- sqlx's around it: `PRAGMA foreign_keys` is a no-op inside one.
PRAGMA foreign_keys = OFF;

BEGIN;

create table withdrawals_rebuilt (
    id text primary key,                       -- 'wd' + 30 hex digits
    distributor_id text not null references distributors (id),
    payout_account_id text not null references payout_accounts (id),
    channel text not null,
    speed text not null,
    state text not null,
    gross_fen integer not null check (gross_fen > 0),
    tax_fen integer not null check (tax_fen >= 0),
    fee_fen integer not null check (fee_fen >= 0),
    net_fen integer not null check (net_fen > 0),
    tax_method text not null,
    tax_month text not null,                   -- 'YYYY-MM' in Asia/Shanghai
    local_day text not null,                   -- 'YYYY-MM-DD' of the request, for the daily limit
    withholding text not null,                 -- JSON of the engine's Withholding
    risk_flags text not null,                  -- JSON array, empty when auto-approved
    -- The gateway's idempotency key, derived from the id; never changes.
    out_bill_no text not null,
    gateway_bill_no text,
    package_info text,
    failure_reason text,
    review_note text,
    reviewed_by text,
    idempotency_key text not null,
    request_sha256 text not null,
    transfer_attempts integer not null default 0,
    requested_at integer not null default 0,
    updated_at integer not null default 0,
    finished_at integer,                       -- when it first became final (a bounce keeps the payment's)
    polled_at integer,
    send_after integer,                        -- see 20261205000020
    payout_cycle text,
    constraint withdrawals_out_bill_no unique (out_bill_no),
    constraint withdrawals_idempotency unique (distributor_id, idempotency_key),
    constraint withdrawals_amounts check (gross_fen = tax_fen + fee_fen + net_fen),
    constraint withdrawals_state check (state in ('reviewing', 'approved', 'transferring',
        'awaiting_payee_confirmation', 'paid', 'rejected', 'cancelled', 'failed', 'returned')),
    constraint withdrawals_speed check (speed in ('standard', 'express'))
) strict;

insert into withdrawals_rebuilt (id, distributor_id, payout_account_id, channel, speed, state,
        gross_fen, tax_fen, fee_fen, net_fen, tax_method, tax_month, local_day, withholding,
        risk_flags, out_bill_no, gateway_bill_no, package_info, failure_reason, review_note,
        reviewed_by, idempotency_key, request_sha256, transfer_attempts, requested_at,
        updated_at, finished_at, polled_at, send_after, payout_cycle)
    select id, distributor_id, payout_account_id, channel, speed, state,
        gross_fen, tax_fen, fee_fen, net_fen, tax_method, tax_month, local_day, withholding,
        risk_flags, out_bill_no, gateway_bill_no, package_info, failure_reason, review_note,
        reviewed_by, idempotency_key, request_sha256, transfer_attempts, requested_at,
        updated_at, finished_at, polled_at, send_after, payout_cycle
    from withdrawals;

drop table withdrawals;
alter table withdrawals_rebuilt rename to withdrawals;

create index withdrawals_distributor_month on withdrawals (distributor_id, tax_month);
create index withdrawals_distributor_requested on withdrawals (distributor_id, requested_at);
create index withdrawals_open on withdrawals (state, polled_at)
    where state in ('approved', 'transferring', 'awaiting_payee_confirmation');
create index withdrawals_approved_send_after on withdrawals (send_after)
    where state = 'approved';

-- When the gateway reported the bounce.
alter table withdrawals add column returned_at integer;

COMMIT;

PRAGMA foreign_keys = ON;
