-- Certificate corrections and look-up by file (SPEC §2.6): a withdrawal keeps
-- its original certificate and may gain corrections, each naming the one it
-- replaces (at most one correction per certificate, so the chain is a line);
-- the PDF's SHA-256 lets a verifier holding only the PDF find its manifest.
-- SQLite cannot drop a table constraint, so the table is rebuilt (dropping a
-- table fires no delete trigger; the rows are copied unchanged).
drop trigger certificates_no_update;
drop trigger certificates_no_delete;

create table certificates_v2 (
    number text primary key,
    withdrawal_id text not null references withdrawals (id),
    distributor_id text not null references distributors (id),
    tax_month text not null,
    key_id text not null,
    gross_fen integer not null,
    tax_fen integer not null,
    net_fen integer not null,
    pdf blob not null,
    manifest text not null,
    replaces text references certificates (number),
    issued_at text not null,
    pdf_sha256 text,
    reason text
) strict;

insert into certificates_v2 (number, withdrawal_id, distributor_id, tax_month, key_id, gross_fen, tax_fen,
    net_fen, pdf, manifest, replaces, issued_at)
select number, withdrawal_id, distributor_id, tax_month, key_id, gross_fen, tax_fen,
    net_fen, pdf, manifest, replaces, issued_at from certificates;

drop table certificates;
alter table certificates_v2 rename to certificates;

create index certificates_month on certificates (tax_month, distributor_id);
create unique index certificates_original on certificates (withdrawal_id) where replaces is null;
create unique index certificates_one_correction on certificates (replaces);
create unique index certificates_pdf on certificates (pdf_sha256);
create index certificates_withdrawal on certificates (withdrawal_id);

create trigger certificates_no_update before update on certificates
begin select raise(abort, 'certificates are immutable'); end;
create trigger certificates_no_delete before delete on certificates
begin select raise(abort, 'certificates are immutable'); end;

-- Declarations prepared by the monthly schedule: what was handed to the
-- accountant, and when; later payouts dated in a prepared month show as a
-- difference on the /tax page.
create table prepared_declarations (
    tax_month text primary key,
    method text not null,
    prepared_at text not null,
    distributors integer not null,
    payouts integer not null,
    gross_fen integer not null,
    tax_fen integer not null,
    net_fen integer not null,
    ledger_tax_fen integer not null,
    csv blob not null,
    xlsx blob not null
) strict;
