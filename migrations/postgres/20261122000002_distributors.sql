-- Distributors (分销员) and their referral tree.
-- The referrer is fixed at creation and must already exist, so the tree can
-- never contain a cycle; the upline is copied down at creation (it never
-- changes afterwards) so commission needs one row read, not three.
create table distributors (
    id text primary key,
    name text not null,
    referrer_id text references distributors (id),
    upline_2 text references distributors (id),   -- the referrer's referrer
    upline_3 text references distributors (id),   -- and theirs
    grade text not null,
    status text not null,
    -- sha-256 of the creating request, so a replay answers the same and a
    -- different body under the same id is a conflict.
    request_sha256 text not null,
    created_at timestamptz not null,
    constraint distributors_status check (status in ('active', 'cleared')),
    constraint distributors_not_own_referrer check (referrer_id is null or referrer_id <> id)
);

create index distributors_referrer on distributors (referrer_id);
