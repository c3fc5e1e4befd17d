-- Outgoing webhooks (issue 16): the shop's endpoints, the events written in
-- the transaction of the change they describe (an outbox), and one delivery
-- per event and subscribed endpoint, retried durably. Times are
-- microseconds since the epoch (src/store/time.rs).

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
    secret blob not null,
    previous_secret blob,
    previous_secret_until integer,
    state text not null,
    disabled_reason text,
    disabled_at integer,
    -- The first failure since the last success: how long it has been failing.
    failing_since integer,
    last_success_at integer,
    last_failure_at integer,
    created_at integer not null,
    updated_at integer not null,
    deleted_at integer,
    constraint webhook_endpoints_state check (state in ('enabled', 'disabled'))
) strict;

-- An event, once: its id is the `webhook-id` every attempt and every
-- endpoint sees; `body` is the exact JSON sent. Written only when some
-- enabled endpoint subscribes to its type.
create table webhook_events (
    id text primary key,
    type text not null,
    -- The withdrawal, order, certificate or distributor it is about.
    subject text not null,
    occurred_at integer not null,
    body text not null,
    created_at integer not null
) strict;

create index webhook_events_subject on webhook_events (subject);

-- An event on its way to one endpoint. 'pending' with `next_attempt_at`
-- is the queue; a worker claims it by setting `lease_until` (a killed
-- worker's claim lapses and another sends it again, with the same id);
-- 'delivered' and 'failed' are final until ops replays it.
create table webhook_deliveries (
    id integer primary key,
    event_id text not null references webhook_events (id),
    endpoint_id text not null references webhook_endpoints (id),
    state text not null,
    attempts integer not null default 0,
    next_attempt_at integer,
    lease_until integer,
    last_attempt_at integer,
    last_status integer,
    last_error text,
    last_response text,
    delivered_at integer,
    created_at integer not null,
    updated_at integer not null,
    constraint webhook_deliveries_once unique (event_id, endpoint_id),
    constraint webhook_deliveries_state check (state in ('pending', 'delivered', 'failed'))
) strict;

create index webhook_deliveries_due on webhook_deliveries (next_attempt_at, id)
    where state = 'pending';
create index webhook_deliveries_endpoint on webhook_deliveries (endpoint_id, state, id);
