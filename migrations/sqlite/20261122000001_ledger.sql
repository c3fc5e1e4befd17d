-- The double-entry ledger (SPEC §2.3): accounts, transfers, postings.
-- Amounts are integer fen; the sum of every transfer's postings is zero.

-- One row per account. Distributor accounts keep a running balance, updated in
-- the same transaction as their postings so reads are one row; platform
-- accounts (tracks_balance = 0) are derived from postings only, so no single
-- platform row becomes a lock every transaction waits on.
create table ledger_accounts (
    id text primary key,                      -- 'distributor:{id}:available', 'platform:commission_expense'
    owner_distributor_id text,                -- null for platform accounts
    kind text not null,
    tracks_balance integer not null check (tracks_balance in (0, 1)),
    may_go_negative integer not null check (may_go_negative in (0, 1)),
    balance_fen integer not null default 0,
    created_at text not null,
    -- The database, not the application, refuses an overdraft of an account
    -- that may never be negative.
    constraint ledger_accounts_balance_floor check (may_go_negative = 1 or balance_fen >= 0)
) strict;

create index ledger_accounts_owner on ledger_accounts (owner_distributor_id);

-- A balanced movement of money, applied exactly once per idempotency key.
-- body_sha256 lets a replay with the same key but another body be refused.
create table ledger_transfers (
    id integer primary key,
    idempotency_key text not null,
    kind text not null,
    body_sha256 text not null,
    created_at text not null,
    constraint ledger_transfers_idempotency_key unique (idempotency_key)
) strict;

create table ledger_postings (
    id integer primary key,
    transfer_id integer not null references ledger_transfers (id),
    account_id text not null references ledger_accounts (id),
    amount_fen integer not null check (amount_fen <> 0),
    created_at text not null
) strict;

create index ledger_postings_account on ledger_postings (account_id);
create index ledger_postings_transfer on ledger_postings (transfer_id);

-- Append-only: nothing in the journal is ever updated or deleted.
create trigger ledger_transfers_no_update before update on ledger_transfers
begin select raise(abort, 'ledger_transfers is append-only'); end;
create trigger ledger_transfers_no_delete before delete on ledger_transfers
begin select raise(abort, 'ledger_transfers is append-only'); end;
create trigger ledger_postings_no_update before update on ledger_postings
begin select raise(abort, 'ledger_postings is append-only'); end;
create trigger ledger_postings_no_delete before delete on ledger_postings
begin select raise(abort, 'ledger_postings is append-only'); end;

-- The platform's own accounts. Expense and clearing accounts are naturally
-- negative from the platform's point of view, so they may go negative.
insert into ledger_accounts (id, owner_distributor_id, kind, tracks_balance, may_go_negative, created_at) values
    ('platform:commission_expense', null, 'commission_expense', 0, 1, '1970-01-01T00:00:00Z'),
    ('platform:tax_payable', null, 'tax_payable', 0, 1, '1970-01-01T00:00:00Z'),
    ('platform:fee_income', null, 'fee_income', 0, 1, '1970-01-01T00:00:00Z'),
    ('platform:clearing:wechat', null, 'gateway_clearing', 0, 1, '1970-01-01T00:00:00Z'),
    ('platform:clearing:alipay', null, 'gateway_clearing', 0, 1, '1970-01-01T00:00:00Z'),
    ('platform:clearing:bank', null, 'gateway_clearing', 0, 1, '1970-01-01T00:00:00Z');
