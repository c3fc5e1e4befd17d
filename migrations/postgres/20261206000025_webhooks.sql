-- Outgoing webhooks (issue 16): the shop's endpoints, the events written in
-- the transaction of the change they describe (an outbox), and one delivery
-- per event and subscribed endpoint, retried durably.

-- An endpoint the shop registered. `events` is the subscribed types between
-- commas (',withdrawal.paid,commission.released,', or ',*,' for all), so
-- one `like` finds the subscribers of a type. The secrets are sealed by the
-- vault (src/vault); the previous one keeps signing until
-- `previous_secret_until` (a rotation's overlap).
create table webhook_endpoints (
    id text primary key,
    url text not null,
    events text not null,
    description text,
    secret bytea not null,
    previous_secret bytea,
    previous_secret_until timestamptz,
    state text not null,
    disabled_reason text,
    disabled_at timestamptz,
    -- The first failure since the last success: how long it has been failing.
    failing_since timestamptz,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    deleted_at timestamptz,
    constraint webhook_endpoints_state check (state in ('enabled', 'disabled'))
);

-- An event, once: its id is the `webhook-id` every attempt and every
-- endpoint sees; `body` is the exact JSON sent. Written only when some
-- enabled endpoint subscribes to its type.
create table webhook_events (
    id text primary key,
    type text not null,
    -- The withdrawal, order, certificate or distributor it is about.
    subject text not null,
    occurred_at timestamptz not null,
    body text not null,
    created_at timestamptz not null
);

create index webhook_events_subject on webhook_events (subject);

-- An event on its way to one endpoint. 'pending' with `next_attempt_at`
-- is the queue; a worker claims it by setting `lease_until` (a killed
-- worker's claim lapses and another sends it again, with the same id);
-- 'delivered' and 'failed' are final until ops replays it.
create table webhook_deliveries (
    id bigserial primary key,
    event_id text not null references webhook_events (id),
    endpoint_id text not null references webhook_endpoints (id),
    state text not null,
    attempts bigint not null default 0,
    next_attempt_at timestamptz,
    lease_until timestamptz,
    last_attempt_at timestamptz,
    last_status bigint,
    last_error text,
    last_response text,
    delivered_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint webhook_deliveries_once unique (event_id, endpoint_id),
    constraint webhook_deliveries_state check (state in ('pending', 'delivered', 'failed'))
);

create index webhook_deliveries_due on webhook_deliveries (next_attempt_at, id)
    where state = 'pending';
create index webhook_deliveries_endpoint on webhook_deliveries (endpoint_id, state, id);
