-- Commission rules v2 (issue 14): what the tier, daily cap and risk rules
-- read at ingest, and the explanation kept with every line.
--
-- rule_trail: the line's explanation as JSON (rate source, tier, campaign,
-- each cap's trim); null on lines written before v2, whose rate is the
-- plan's rate as shown.
alter table commission_lines add column rule_trail text;

-- What the v2 rules saw when the order was ingested (JSON: placed_at, the
-- month's level-1 sales before it, each beneficiary's earnings that day,
-- who was cleared), so a refund recomputes with exactly the same inputs;
-- null when the order's plan has no v2 rules and nobody was cleared.
alter table orders add column commission_context text;
-- Risk flags (comma-separated: same_buyer_over_limit, self_purchase) and
-- the business days they add to the hold; a calendar re-plan keeps them.
alter table orders add column risk_flags text;
alter table orders add column extra_hold_days bigint not null default 0
    constraint orders_extra_hold_days check (extra_hold_days >= 0);
create index orders_flagged on orders (confirmed_at) where risk_flags is not null;

-- Running totals kept in the ingest and refund transactions (not computed
-- by scanning orders, so ingest costs the same on day 1 and day 1000).
-- period is local to the settlement time zone: 'YYYY-MM' rows carry the
-- distributor's level-1 commissionable sales confirmed in that month, net
-- of refunds (the tier's measure); 'YYYY-MM-DD' rows carry the commission
-- the distributor earned, all levels, on orders confirmed that day (the
-- daily cap's measure).
create table commission_totals (
    distributor_id text not null references distributors (id),
    period text not null,
    level1_sales_fen bigint not null default 0,
    earned_fen bigint not null default 0,
    primary key (distributor_id, period)
);

-- Orders per buyer per local day of confirmation (the risk rule's measure).
create table buyer_day_orders (
    buyer_id text not null,
    day text not null,
    orders bigint not null,
    primary key (buyer_id, day)
);
