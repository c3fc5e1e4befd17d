-- Times become integers: microseconds since the Unix epoch, UTC (see
-- src/store/time.rs). As text they were compared as text, and a year past
-- 9999 ('+10000-…') sorted before 2026: a far-future confirmed_at released
-- its hold at once. PostgreSQL already keeps timestamptz (its file of this
-- version changes nothing).
--
-- Each column is converted in place: add an integer column, fill it from the
-- text, drop the text column, give the new one the old name. (Rebuilding the
-- tables instead would have to drop parents that foreign keys point at.)
-- The `default 0` is only there because SQLite adds a NOT NULL column with
-- some default; every insert names every time column.
--
-- The text was written by sqlx as RFC 3339 in UTC ('…T10:00:00+00:00',
-- with 0, 3, 6 or 9 fraction digits) or, for the seeded platform accounts,
-- '1970-01-01T00:00:00Z'. A value SQLite cannot read (a year past 9999, the
-- very bug this fixes) leaves NULL and fails the migration on NOT NULL
-- instead of guessing: such a row needs a person.
--
-- Indexes on the converted columns and the append-only update triggers are
-- dropped for the conversion and made again as they were.

drop index commission_plans_effective;
drop index orders_due;
drop index payout_accounts_distributor;
drop index withdrawals_distributor_requested;
drop index withdrawals_open;
drop trigger ledger_transfers_no_update;
drop trigger ledger_postings_no_update;
drop trigger certificates_no_update;
drop trigger audit_log_no_update;

-- ledger_accounts
alter table ledger_accounts add column created_at_us integer not null default 0;
update ledger_accounts set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table ledger_accounts drop column created_at;
alter table ledger_accounts rename column created_at_us to created_at;

-- ledger_transfers
alter table ledger_transfers add column created_at_us integer not null default 0;
update ledger_transfers set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table ledger_transfers drop column created_at;
alter table ledger_transfers rename column created_at_us to created_at;

-- ledger_postings
alter table ledger_postings add column created_at_us integer not null default 0;
update ledger_postings set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table ledger_postings drop column created_at;
alter table ledger_postings rename column created_at_us to created_at;

-- distributors
alter table distributors add column created_at_us integer not null default 0;
update distributors set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table distributors drop column created_at;
alter table distributors rename column created_at_us to created_at;

-- commission_plans
alter table commission_plans add column effective_from_us integer not null default 0;
update commission_plans set effective_from_us =
        unixepoch(effective_from) * 1000000
        + case when instr(effective_from, '.') = 0 then 0 else cast(substr(replace(replace(substr(effective_from, instr(effective_from, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table commission_plans drop column effective_from;
alter table commission_plans rename column effective_from_us to effective_from;
alter table commission_plans add column created_at_us integer not null default 0;
update commission_plans set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table commission_plans drop column created_at;
alter table commission_plans rename column created_at_us to created_at;

-- api_tokens
alter table api_tokens add column created_at_us integer not null default 0;
update api_tokens set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table api_tokens drop column created_at;
alter table api_tokens rename column created_at_us to created_at;
alter table api_tokens add column revoked_at_us integer;
update api_tokens set revoked_at_us = case when revoked_at is null then null else
        unixepoch(revoked_at) * 1000000
        + case when instr(revoked_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(revoked_at, instr(revoked_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end end;
alter table api_tokens drop column revoked_at;
alter table api_tokens rename column revoked_at_us to revoked_at;

-- orders
alter table orders add column placed_at_us integer not null default 0;
update orders set placed_at_us =
        unixepoch(placed_at) * 1000000
        + case when instr(placed_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(placed_at, instr(placed_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table orders drop column placed_at;
alter table orders rename column placed_at_us to placed_at;
alter table orders add column confirmed_at_us integer not null default 0;
update orders set confirmed_at_us =
        unixepoch(confirmed_at) * 1000000
        + case when instr(confirmed_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(confirmed_at, instr(confirmed_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table orders drop column confirmed_at;
alter table orders rename column confirmed_at_us to confirmed_at;
alter table orders add column release_at_us integer not null default 0;
update orders set release_at_us =
        unixepoch(release_at) * 1000000
        + case when instr(release_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(release_at, instr(release_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table orders drop column release_at;
alter table orders rename column release_at_us to release_at;
alter table orders add column created_at_us integer not null default 0;
update orders set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table orders drop column created_at;
alter table orders rename column created_at_us to created_at;
alter table orders add column updated_at_us integer not null default 0;
update orders set updated_at_us =
        unixepoch(updated_at) * 1000000
        + case when instr(updated_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(updated_at, instr(updated_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table orders drop column updated_at;
alter table orders rename column updated_at_us to updated_at;

-- order_items
alter table order_items add column created_at_us integer not null default 0;
update order_items set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table order_items drop column created_at;
alter table order_items rename column created_at_us to created_at;

-- commission_lines
alter table commission_lines add column created_at_us integer not null default 0;
update commission_lines set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table commission_lines drop column created_at;
alter table commission_lines rename column created_at_us to created_at;
alter table commission_lines add column updated_at_us integer not null default 0;
update commission_lines set updated_at_us =
        unixepoch(updated_at) * 1000000
        + case when instr(updated_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(updated_at, instr(updated_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table commission_lines drop column updated_at;
alter table commission_lines rename column updated_at_us to updated_at;

-- order_refunds
alter table order_refunds add column created_at_us integer not null default 0;
update order_refunds set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table order_refunds drop column created_at;
alter table order_refunds rename column created_at_us to created_at;

-- order_events
alter table order_events add column at_us integer not null default 0;
update order_events set at_us =
        unixepoch(at) * 1000000
        + case when instr(at, '.') = 0 then 0 else cast(substr(replace(replace(substr(at, instr(at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table order_events drop column at;
alter table order_events rename column at_us to at;
alter table order_events add column created_at_us integer not null default 0;
update order_events set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table order_events drop column created_at;
alter table order_events rename column created_at_us to created_at;

-- distributor_identities
alter table distributor_identities add column created_at_us integer not null default 0;
update distributor_identities set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table distributor_identities drop column created_at;
alter table distributor_identities rename column created_at_us to created_at;
alter table distributor_identities add column updated_at_us integer not null default 0;
update distributor_identities set updated_at_us =
        unixepoch(updated_at) * 1000000
        + case when instr(updated_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(updated_at, instr(updated_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table distributor_identities drop column updated_at;
alter table distributor_identities rename column updated_at_us to updated_at;

-- payout_accounts
alter table payout_accounts add column created_at_us integer not null default 0;
update payout_accounts set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table payout_accounts drop column created_at;
alter table payout_accounts rename column created_at_us to created_at;

-- withdrawals
alter table withdrawals add column requested_at_us integer not null default 0;
update withdrawals set requested_at_us =
        unixepoch(requested_at) * 1000000
        + case when instr(requested_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(requested_at, instr(requested_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table withdrawals drop column requested_at;
alter table withdrawals rename column requested_at_us to requested_at;
alter table withdrawals add column updated_at_us integer not null default 0;
update withdrawals set updated_at_us =
        unixepoch(updated_at) * 1000000
        + case when instr(updated_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(updated_at, instr(updated_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table withdrawals drop column updated_at;
alter table withdrawals rename column updated_at_us to updated_at;
alter table withdrawals add column finished_at_us integer;
update withdrawals set finished_at_us = case when finished_at is null then null else
        unixepoch(finished_at) * 1000000
        + case when instr(finished_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(finished_at, instr(finished_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end end;
alter table withdrawals drop column finished_at;
alter table withdrawals rename column finished_at_us to finished_at;
alter table withdrawals add column polled_at_us integer;
update withdrawals set polled_at_us = case when polled_at is null then null else
        unixepoch(polled_at) * 1000000
        + case when instr(polled_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(polled_at, instr(polled_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end end;
alter table withdrawals drop column polled_at;
alter table withdrawals rename column polled_at_us to polled_at;

-- withdrawal_events
alter table withdrawal_events add column at_us integer not null default 0;
update withdrawal_events set at_us =
        unixepoch(at) * 1000000
        + case when instr(at, '.') = 0 then 0 else cast(substr(replace(replace(substr(at, instr(at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table withdrawal_events drop column at;
alter table withdrawal_events rename column at_us to at;
alter table withdrawal_events add column created_at_us integer not null default 0;
update withdrawal_events set created_at_us =
        unixepoch(created_at) * 1000000
        + case when instr(created_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(created_at, instr(created_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table withdrawal_events drop column created_at;
alter table withdrawal_events rename column created_at_us to created_at;

-- certificates
alter table certificates add column issued_at_us integer not null default 0;
update certificates set issued_at_us =
        unixepoch(issued_at) * 1000000
        + case when instr(issued_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(issued_at, instr(issued_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table certificates drop column issued_at;
alter table certificates rename column issued_at_us to issued_at;

-- certificate_keys
alter table certificate_keys add column first_used_at_us integer not null default 0;
update certificate_keys set first_used_at_us =
        unixepoch(first_used_at) * 1000000
        + case when instr(first_used_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(first_used_at, instr(first_used_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table certificate_keys drop column first_used_at;
alter table certificate_keys rename column first_used_at_us to first_used_at;

-- prepared_declarations
alter table prepared_declarations add column prepared_at_us integer not null default 0;
update prepared_declarations set prepared_at_us =
        unixepoch(prepared_at) * 1000000
        + case when instr(prepared_at, '.') = 0 then 0 else cast(substr(replace(replace(substr(prepared_at, instr(prepared_at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table prepared_declarations drop column prepared_at;
alter table prepared_declarations rename column prepared_at_us to prepared_at;

-- audit_log
alter table audit_log add column at_us integer not null default 0;
update audit_log set at_us =
        unixepoch(at) * 1000000
        + case when instr(at, '.') = 0 then 0 else cast(substr(replace(replace(substr(at, instr(at, '.') + 1), '+00:00', ''), 'Z', '') || '000000', 1, 6) as integer) end;
alter table audit_log drop column at;
alter table audit_log rename column at_us to at;

create index commission_plans_effective on commission_plans (effective_from, version);
create index orders_due on orders (release_at) where state = 'holding';
create index payout_accounts_distributor on payout_accounts (distributor_id, created_at);
create index withdrawals_distributor_requested on withdrawals (distributor_id, requested_at);
create index withdrawals_open on withdrawals (state, polled_at)
    where state in ('approved', 'transferring', 'awaiting_payee_confirmation');

create trigger ledger_transfers_no_update before update on ledger_transfers
begin select raise(abort, 'ledger_transfers is append-only'); end;
create trigger ledger_postings_no_update before update on ledger_postings
begin select raise(abort, 'ledger_postings is append-only'); end;
create trigger certificates_no_update before update on certificates
begin select raise(abort, 'certificates are immutable'); end;
create trigger audit_log_no_update before update on audit_log
begin select raise(abort, 'audit_log is append-only'); end;
