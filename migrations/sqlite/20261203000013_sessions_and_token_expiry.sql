-- Sessions of the HTML pages, and an optional end to an API token's life.
-- Times are integers: microseconds since the Unix epoch, UTC (src/store/time.rs).

-- When a token stops working by itself; null = until revoked. An expired
-- token is kept (like a revoked one) so the audit log's actor stays known.
alter table api_tokens add column expires_at integer;

-- A signed-in browser. The cookie holds a random session id; only its
-- SHA-256 is stored (it is 256 random bits, so a fast hash is enough and a
-- stolen table opens nothing). A session is worth no more than the token
-- that signed in: it dies with it (revoked, expired or deleted).
create table web_sessions (
    session_sha256 text primary key,
    token_id text not null references api_tokens (id) on delete cascade,
    created_at integer not null,
    -- The idle timeout counts from here; moved on by each page request.
    last_seen_at integer not null,
    -- The absolute end, whatever the activity.
    expires_at integer not null,
    constraint web_sessions_expiry check (expires_at > created_at)
) strict;

-- Revoking a token ends its sessions: found by token.
create index web_sessions_token on web_sessions (token_id);
