-- Settlement cycles (issue 15 item 4): a standard withdrawal waits for its
-- cycle's cut-off; an express one goes at once.

-- When the transfer may start, decided at the request from the cycle of
-- workflows/withdrawal.toml (microseconds since the epoch, UTC, like every
-- time since 20261203000012): the next cut-off for a standard withdrawal,
-- the request time for an express one. The transfer job is pushed to run
-- then (or at once when approval comes later). Null for withdrawals recorded
-- before cycles existed: they were sent at once.
alter table withdrawals add column send_after integer;

-- The cycle it was scheduled under, as the distributor is told it
-- ("daily 15:00 Asia/Shanghai", "express"): kept so a later change of the
-- workflow file does not rewrite what an earlier answer promised.
alter table withdrawals add column payout_cycle text;

-- The poller and the clock's advance look for approved withdrawals whose
-- cut-off has passed; only approved rows are ever asked for.
create index withdrawals_approved_send_after on withdrawals (send_after)
    where state = 'approved';
