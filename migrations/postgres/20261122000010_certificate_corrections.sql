-- Certificate corrections and look-up by file (SPEC §2.6): a withdrawal keeps
-- its original certificate and may gain corrections, each naming the one it
-- replaces (at most one correction per certificate, so the chain is a line);
-- the PDF's SHA-256 lets a verifier holding only the PDF find its manifest.
alter table certificates drop constraint certificates_withdrawal;
alter table certificates add column pdf_sha256 text, add column reason text;

create unique index certificates_original on certificates (withdrawal_id) where replaces is null;
create unique index certificates_one_correction on certificates (replaces);
create unique index certificates_pdf on certificates (pdf_sha256);
create index certificates_withdrawal on certificates (withdrawal_id);

-- Declarations prepared by the monthly schedule: what was handed to the
-- accountant, and when; later payouts dated in a prepared month show as a
-- difference on the /tax page.
create table prepared_declarations (
    tax_month text primary key,
    method text not null,
    prepared_at timestamptz not null,
    distributors bigint not null,
    payouts bigint not null,
    gross_fen bigint not null,
    tax_fen bigint not null,
    net_fen bigint not null,
    ledger_tax_fen bigint not null,
    csv bytea not null,
    xlsx bytea not null
);
