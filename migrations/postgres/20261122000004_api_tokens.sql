-- Bearer tokens. Only the SHA-256 of a token is stored: the tokens are 256
-- random bits, so a fast hash is enough and a stolen table grants nothing.
create table api_tokens (
    id text primary key,                 -- public handle, safe to log ('tok_…')
    token_sha256 text not null,
    role text not null,
    distributor_id text references distributors (id),
    created_at timestamptz not null,
    revoked_at timestamptz,
    constraint api_tokens_token_sha256 unique (token_sha256),
    constraint api_tokens_role check (role in ('admin', 'ingest', 'ops', 'accountant', 'distributor')),
    -- A distributor token is scoped to exactly one distributor; no other role is.
    constraint api_tokens_distributor_scope check ((role = 'distributor') = (distributor_id is not null))
);
