-- Audit log (SPEC §2.10): every admin and ops action — who, when, on what,
-- the state before and after. Append-only: triggers refuse UPDATE and DELETE.
create table audit_log (
    id integer primary key,
    at text not null,
    actor text not null,
    actor_role text not null,
    action text not null,
    target text not null,
    before text,
    after text
) strict;

create index audit_log_target on audit_log (target);

create trigger audit_log_no_update before update on audit_log
begin select raise(abort, 'audit_log is append-only'); end;
create trigger audit_log_no_delete before delete on audit_log
begin select raise(abort, 'audit_log is append-only'); end;
