-- Withholding certificates (SPEC §2.6): one per paid withdrawal, immutable.
-- The PDF and its signed manifest are stored as issued; a correction is a
-- new certificate whose `replaces` names the old number.
create table certificates (
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
    constraint certificates_withdrawal unique (withdrawal_id)
) strict;

create index certificates_month on certificates (tax_month, distributor_id);

create trigger certificates_no_update before update on certificates
begin select raise(abort, 'certificates are immutable'); end;
create trigger certificates_no_delete before delete on certificates
begin select raise(abort, 'certificates are immutable'); end;

-- Every key certificates were ever signed with (public halves only), so a
-- certificate stays verifiable after the signing key changes.
create table certificate_keys (
    key_id text primary key,
    public_key blob not null,
    first_used_at text not null
) strict;
