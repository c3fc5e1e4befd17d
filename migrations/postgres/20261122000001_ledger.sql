-- The double-entry ledger (SPEC §2.3): accounts, transfers, postings.
-- Amounts are integer fen; the sum of every transfer's postings is zero.

-- One row per account. Distributor accounts keep a running balance, updated in
-- the same transaction as their postings so reads are one row; platform
-- accounts (tracks_balance = false) are derived from postings only, so no
-- single platform row becomes a lock every transaction waits on.
create table ledger_accounts (
    id text primary key,                      -- 'distributor:{id}:available', 'platform:commission_expense'
    owner_distributor_id text,                -- null for platform accounts
    kind text not null,
    tracks_balance boolean not null,
    may_go_negative boolean not null,
    balance_fen bigint not null default 0,
    created_at timestamptz not null,
    -- The database, not the application, refuses an overdraft of an account
    -- that may never be negative.
    constraint ledger_accounts_balance_floor check (may_go_negative or balance_fen >= 0)
);

create index ledger_accounts_owner on ledger_accounts (owner_distributor_id);

-- A balanced movement of money, applied exactly once per idempotency key.
-- body_sha256 lets a replay with the same key but another body be refused.
create table ledger_transfers (
    id bigint generated always as identity primary key,
    idempotency_key text not null,
    kind text not null,
    body_sha256 text not null,
    created_at timestamptz not null,
    constraint ledger_transfers_idempotency_key unique (idempotency_key)
);

create table ledger_postings (
    id bigint generated always as identity primary key,
    transfer_id bigint not null references ledger_transfers (id),
    account_id text not null references ledger_accounts (id),
    amount_fen bigint not null check (amount_fen <> 0),
    created_at timestamptz not null
);

create index ledger_postings_account on ledger_postings (account_id);
create index ledger_postings_transfer on ledger_postings (transfer_id);

-- Append-only: nothing in the journal is ever updated or deleted.
create function ledger_refuse_change() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only', tg_table_name;
end
$$;
create trigger ledger_transfers_append_only before update or delete on ledger_transfers
    for each row execute function ledger_refuse_change();
create trigger ledger_postings_append_only before update or delete on ledger_postings
    for each row execute function ledger_refuse_change();

-- The platform's own accounts. Expense and clearing accounts are naturally
-- negative from the platform's point of view, so they may go negative.
insert into ledger_accounts (id, owner_distributor_id, kind, tracks_balance, may_go_negative, created_at) values
    ('platform:commission_expense', null, 'commission_expense', false, true, '1970-01-01T00:00:00Z'),
    ('platform:tax_payable', null, 'tax_payable', false, true, '1970-01-01T00:00:00Z'),
    ('platform:fee_income', null, 'fee_income', false, true, '1970-01-01T00:00:00Z'),
    ('platform:clearing:wechat', null, 'gateway_clearing', false, true, '1970-01-01T00:00:00Z'),
    ('platform:clearing:alipay', null, 'gateway_clearing', false, true, '1970-01-01T00:00:00Z'),
    ('platform:clearing:bank', null, 'gateway_clearing', false, true, '1970-01-01T00:00:00Z');
