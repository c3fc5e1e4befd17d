-- A bank payout can bounce (退票) after success: the withdrawal then ends
-- `returned`.
alter table withdrawals drop constraint withdrawals_state;
alter table withdrawals add constraint withdrawals_state check (state in ('reviewing', 'approved',
    'transferring', 'awaiting_payee_confirmation', 'paid', 'rejected', 'cancelled', 'failed',
    'returned'));

-- When the gateway reported the bounce.
alter table withdrawals add column returned_at timestamptz;
