-- Audit log (SPEC §2.10): every admin and ops action — who, when, on what,
-- the state before and after. Append-only: a trigger refuses UPDATE and DELETE.
create table audit_log (
    id bigserial primary key,
    at timestamptz not null,
    actor text not null,
    actor_role text not null,
    action text not null,
    target text not null,
    before text,
    after text
);

create index audit_log_target on audit_log (target);

create function audit_log_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_log is append-only';
end;
$$;

create trigger audit_log_no_change before update or delete on audit_log
    for each row execute function audit_log_append_only();
