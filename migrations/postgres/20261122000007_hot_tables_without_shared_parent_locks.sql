-- Foreign keys on PostgreSQL are per-row triggers that look up the parent
-- row and take a key-share lock on it. On the hottest inserts the parents are
-- shared by every concurrent transaction (the one commission plan in force,
-- the distributors at the top of the tree, the platform accounts), so each
-- batch piles share locks onto the same rows (multixacts) and the ingest and
-- release benchmarks spent most of their time there. The code only writes
-- these rows with parents it has just read or written in the same
-- transaction, the journal is append-only, and `fenrun ledger verify` reports
-- any posting whose account or transfer does not exist.
alter table ledger_postings drop constraint if exists ledger_postings_transfer_id_fkey;
alter table ledger_postings drop constraint if exists ledger_postings_account_id_fkey;
alter table commission_lines drop constraint if exists commission_lines_plan_version_fkey;
alter table commission_lines drop constraint if exists commission_lines_beneficiary_id_fkey;
alter table orders drop constraint if exists orders_plan_version_fkey;
alter table orders drop constraint if exists orders_distributor_id_fkey;
