-- The order-settlement workflow's state (SPEC §2.1). These tables, not the
-- job queue, say where each order is; apalis jobs only trigger the steps.

create table orders (
    order_id text primary key,
    distributor_id text not null references distributors (id),
    buyer_id text not null,
    placed_at timestamptz not null,
    confirmed_at timestamptz not null,
    total_fen bigint not null,
    refunded_fen bigint not null default 0,
    -- The plan version in force at confirmed_at, pinned for the order's life.
    -- The beneficiary chain as it stood at confirmation (ids, grades, whether
    -- each earned), JSON: a refund recomputes with exactly this chain.
    chain text not null,
    plan_version bigint not null references commission_plans (version),
    state text not null,
    -- 00:00 local of the Nth business day after the local date of confirmed_at.
    release_at timestamptz not null,
    request_sha256 text not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint orders_state check (state in ('holding', 'released', 'cancelled')),
    constraint orders_refund_within_total check (refunded_fen >= 0 and refunded_fen <= total_fen)
);

-- The release step's work list: only holding orders, by due time.
create index orders_due on orders (release_at) where state = 'holding';

create table order_items (
    order_id text not null references orders (order_id),
    line_no integer not null,
    sku text not null,
    category text not null,
    amount_fen bigint not null,
    refunded_fen bigint not null default 0,
    created_at timestamptz not null,
    primary key (order_id, line_no),
    constraint order_items_amount check (amount_fen >= 0),
    constraint order_items_refund_within_amount check (refunded_fen >= 0 and refunded_fen <= amount_fen)
);

-- One line per (order, level, rate): who earns what, and from which rule.
-- amount_fen is the current amount (after any refund recomputation).
create table commission_lines (
    id bigint generated always as identity primary key,
    order_id text not null references orders (order_id),
    beneficiary_id text not null references distributors (id),
    level integer not null,
    rate text not null,                -- exact decimal fraction, e.g. '0.1'
    base_fen bigint not null,
    amount_fen bigint not null,
    plan_version bigint not null references commission_plans (version),
    campaign text,
    state text not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint commission_lines_identity unique (order_id, level, rate),
    constraint commission_lines_level check (level between 1 and 3),
    constraint commission_lines_amount check (amount_fen >= 0),
    constraint commission_lines_state check (state in ('pending', 'released', 'cancelled'))
);

create index commission_lines_beneficiary on commission_lines (beneficiary_id, id);

create table order_refunds (
    order_id text not null references orders (order_id),
    refund_id text not null,
    sku text,
    amount_fen bigint not null,
    -- Inside the hold the commission is recomputed; after it, clawed back.
    phase text not null,
    request_sha256 text not null,
    created_at timestamptz not null,
    primary key (order_id, refund_id),
    constraint order_refunds_amount check (amount_fen > 0),
    constraint order_refunds_phase check (phase in ('hold', 'after_release'))
);

-- The timeline shown by GET /v1/orders/{id}: every step, when, how, which attempt.
create table order_events (
    id bigint generated always as identity primary key,
    order_id text not null references orders (order_id),
    step text not null,
    outcome text not null,
    attempt integer not null,
    detail text,
    at timestamptz not null,           -- the workflow clock's time
    created_at timestamptz not null    -- the wall clock's time
);

create index order_events_order on order_events (order_id, id);
