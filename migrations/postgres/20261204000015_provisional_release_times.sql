-- Provisional release times (issue 13): a hold whose release day was
-- counted over a year the business calendar knows only from the statutory
-- holidays (the year's State Council notice not applied yet) says so, in
-- the order's answer, its timeline and on the ops console, because the
-- notice may still move it by its bridging days. Existing orders were
-- planned over covered years, hence false.
alter table orders add column release_at_provisional boolean not null default false;
