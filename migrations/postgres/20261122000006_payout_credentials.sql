-- Payout credentials (SPEC §2.5): who a distributor legally is, and where
-- their money goes. Every credential column holds a vault `SealedValue`
-- (AES-256-GCM envelope, see src/vault.rs), never plaintext, so a dump of
-- this database reveals no credential. The masked columns are what the API,
-- logs and the ops console show; they are written once, from the parsed
-- value, so reading a profile never needs the master key.

-- One identity per distributor: the distributor id is the key, so a second
-- PUT replaces the first (the person corrected a typo) instead of piling up.
create table distributor_identities (
    distributor_id text primary key references distributors (id),
    -- Sealed with AAD (distributor_identities, real_name, distributor_id).
    real_name bytea not null,
    -- Sealed with AAD (distributor_identities, id_number, distributor_id).
    id_number bytea not null,
    -- The master key both values are wrapped under, copied out of the sealed
    -- bytes so `fenrun keys rotate` finds stale rows with an index, not by
    -- decoding every row. Both columns are always resealed together.
    key_id text not null,
    masked_name text not null,          -- '张**'
    masked_id_number text not null,     -- '110***********1234'
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint distributor_identities_real_name_sealed check (octet_length(real_name) > 0),
    constraint distributor_identities_id_number_sealed check (octet_length(id_number) > 0)
);

-- Finds the rows `keys rotate` still has to reseal.
create index distributor_identities_key_id on distributor_identities (key_id);

-- Where a distributor's withdrawals may be paid. An account is never edited:
-- a new one is added, so a withdrawal in flight keeps pointing at the account
-- it was requested for.
create table payout_accounts (
    -- 'pa_' + 32 random hex digits, made by the application before the insert
    -- because the id is part of the AAD the account is sealed with.
    id text primary key,
    distributor_id text not null references distributors (id),
    channel text not null,
    -- The openid, the Alipay logon id or the card number, sealed with AAD
    -- (payout_accounts, account, id).
    account bytea not null,
    key_id text not null,
    masked text not null,               -- 'oUpF***Ddw4', '138****5678', '6222 **** **** 1234'
    -- The bank card holder's name, masked ('张**'), when one was given. The
    -- full name is the distributor's identity, sealed above.
    account_name_masked text,
    bank_name text,                     -- '招商银行': not a credential
    created_at timestamptz not null,
    constraint payout_accounts_channel check (channel in ('wechat', 'alipay', 'bank')),
    constraint payout_accounts_account_sealed check (octet_length(account) > 0),
    -- Only a bank account has a bank.
    constraint payout_accounts_bank_name check ((channel = 'bank') = (bank_name is not null))
);

-- A distributor's accounts, listed in creation order.
create index payout_accounts_distributor on payout_accounts (distributor_id, created_at);
-- Finds the rows `keys rotate` still has to reseal.
create index payout_accounts_key_id on payout_accounts (key_id);
