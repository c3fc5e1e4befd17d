-- Sign-in links to a distributor's mobile page (/me), made for the shop's
-- app by POST /v1/distributors/{id}/portal-links.
-- Times are integers: microseconds since the Unix epoch, UTC (src/store/time.rs).

-- A link's secret is 256 random bits in its URL; only its SHA-256 is kept
-- (a fast hash is enough for that much randomness, and a stolen table opens
-- nothing). Opening it sets used_at in one guarded update (where used_at is
-- null and expires_at is still ahead), so of two opens at once exactly one
-- wins. Used and expired rows stay, so the page can say which it was.
create table portal_links (
    link_sha256 text primary key,
    distributor_id text not null references distributors (id),
    -- The ingest token that asked for it (an id, never a secret).
    created_by text not null,
    created_at integer not null,
    expires_at integer not null,
    used_at integer,
    constraint portal_links_expiry check (expires_at > created_at)
) strict;

-- Links of one distributor, newest first (support, clean-up).
create index portal_links_distributor on portal_links (distributor_id, created_at);
