-- TRUNCATE triggers do not propagate to partitions, so `truncate
-- audit_log_2026_11` bypassed the parent's trigger. Give every partition,
-- present and future, its own. (Dropping or detaching a whole month, the
-- retention mechanism, remains possible.)

create or replace function audit_log_ensure_partitions(months_ahead integer) returns void
language plpgsql as $$
declare
    first_month date := date_trunc('month', now())::date;
    m date;
    part text;
begin
    for i in 0 .. months_ahead loop
        m := (first_month + make_interval(months => i))::date;
        part := format('audit_log_%s', to_char(m, 'YYYY_MM'));
        if to_regclass(part) is null then
            execute format(
                'create table %I partition of audit_log for values from (%L) to (%L)',
                part, m, (m + interval '1 month')::date);
            execute format(
                'create trigger audit_log_no_truncate before truncate on %I '
                'for each statement execute function audit_log_reject_change()', part);
        end if;
    end loop;
end $$;

do $$
declare
    part regclass;
begin
    for part in select inhrelid::regclass from pg_inherits where inhparent = 'audit_log'::regclass loop
        if not exists (select 1 from pg_trigger where tgrelid = part and tgname = 'audit_log_no_truncate') then
            execute format(
                'create trigger audit_log_no_truncate before truncate on %s '
                'for each statement execute function audit_log_reject_change()', part);
        end if;
    end loop;
end $$;
