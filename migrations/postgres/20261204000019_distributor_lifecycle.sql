-- Distributor lifecycle (issue 14): the daily grade review's upgrades
-- (晋级) and clearing (清退), ops' reinstatement, and ops voiding an order's
-- commission.

-- A distributor's timeline: each upgrade, clearing and reinstatement, why,
-- and the figures it was decided on (JSON), shown by
-- GET /v1/distributors/{id}. Append-only like the audit log; `at` is the
-- workflow clock's time (simulated in the demo and tests).
create table distributor_events (
    id bigint generated always as identity primary key,
    distributor_id text not null references distributors (id),
    kind text not null,
    detail text not null,
    figures text,
    actor text not null,
    at timestamptz not null,
    created_at timestamptz not null,
    constraint distributor_events_kind check (kind in ('upgraded', 'cleared', 'reinstated'))
);

create index distributor_events_distributor on distributor_events (distributor_id, kind, at);

create function distributor_events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'distributor_events is append-only';
end;
$$;
create trigger distributor_events_no_change before update or delete on distributor_events
    for each row execute function distributor_events_append_only();

-- The review reads each distributor's settled sales (released orders, net
-- of refunds) and latest settled sale: by seller among released orders...
create index orders_released_by_seller on orders (distributor_id, release_at) where state = 'released';
-- ...and the team's, through the sellers two levels down (the referrer
-- index of migration 2 covers the level below).
create index distributors_upline_2 on distributors (upline_2);

-- Voiding an order's commission (ops, with a reason): when, why and how
-- much was reversed or clawed back, so a second void answers the same and
-- a later refund knows to move no commission. Columns rather than a new
-- line state: the lines end at amount 0 and 'cancelled'.
alter table orders add column commission_voided_at timestamptz;
alter table orders add column void_reason text;
alter table orders add column void_reversed_fen bigint;
