-- Withholding certificates (SPEC §2.6): one per paid withdrawal, immutable.
-- The PDF and its signed manifest are stored as issued; a correction is a
-- new certificate whose `replaces` names the old number.
create table certificates (
    number text primary key,
    withdrawal_id text not null references withdrawals (id),
    distributor_id text not null references distributors (id),
    tax_month text not null,
    key_id text not null,
    gross_fen bigint not null,
    tax_fen bigint not null,
    net_fen bigint not null,
    pdf bytea not null,
    manifest text not null,
    replaces text references certificates (number),
    issued_at timestamptz not null,
    constraint certificates_withdrawal unique (withdrawal_id)
);

create index certificates_month on certificates (tax_month, distributor_id);

create function certificates_immutable() returns trigger language plpgsql as $$
begin
    raise exception 'certificates are immutable';
end;
$$;

create trigger certificates_no_update before update or delete on certificates
    for each row execute function certificates_immutable();

-- Every key certificates were ever signed with (public halves only), so a
-- certificate stays verifiable after the signing key changes.
create table certificate_keys (
    key_id text primary key,
    public_key bytea not null,
    first_used_at timestamptz not null
);
