-- Withdrawals (SPEC §2.4): one row per request, the truth about where it
-- stands; the apalis job of its transfer step is only a trigger. Money is
-- integer fen; the tax figures of the withholding are kept as the engine
-- computed them (JSON) for the certificate and the monthly declaration.
create table withdrawals (
    id text primary key,                       -- 'wd' + 30 hex digits
    distributor_id text not null references distributors (id),
    payout_account_id text not null references payout_accounts (id),
    channel text not null,
    speed text not null,
    state text not null,
    gross_fen bigint not null check (gross_fen > 0),
    tax_fen bigint not null check (tax_fen >= 0),
    fee_fen bigint not null check (fee_fen >= 0),
    net_fen bigint not null check (net_fen > 0),
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
    transfer_attempts bigint not null default 0,
    requested_at timestamptz not null,         -- the workflow clock's time
    updated_at timestamptz not null,
    finished_at timestamptz,
    -- When the poller last asked the gateway about it.
    polled_at timestamptz,
    constraint withdrawals_out_bill_no unique (out_bill_no),
    constraint withdrawals_idempotency unique (distributor_id, idempotency_key),
    constraint withdrawals_amounts check (gross_fen = tax_fen + fee_fen + net_fen),
    constraint withdrawals_state check (state in ('reviewing', 'approved', 'transferring',
        'awaiting_payee_confirmation', 'paid', 'rejected', 'cancelled', 'failed')),
    constraint withdrawals_speed check (speed in ('standard', 'express'))
);

create index withdrawals_distributor_month on withdrawals (distributor_id, tax_month);
create index withdrawals_distributor_requested on withdrawals (distributor_id, requested_at);
create index withdrawals_open on withdrawals (state, polled_at)
    where state in ('approved', 'transferring', 'awaiting_payee_confirmation');

create table withdrawal_events (
    id bigint generated always as identity primary key,
    withdrawal_id text not null references withdrawals (id),
    step text not null,
    outcome text not null,
    attempt bigint not null,
    detail text,
    at timestamptz not null,
    created_at timestamptz not null
);

create index withdrawal_events_withdrawal on withdrawal_events (withdrawal_id, id);
