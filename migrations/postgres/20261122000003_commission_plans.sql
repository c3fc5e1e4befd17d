-- Commission plans, versioned. An order is computed with the plan whose
-- effective_from is the latest at or before its confirmed_at; the plan text is
-- kept verbatim so any past computation can be explained and repeated.
create table commission_plans (
    version bigint generated always as identity primary key,
    name text not null,
    effective_from timestamptz not null,
    source_toml text not null,
    source_sha256 text not null,
    applied_by text not null,          -- 'install' for the shipped default, else the token id
    created_at timestamptz not null
);

create index commission_plans_effective on commission_plans (effective_from, version);
