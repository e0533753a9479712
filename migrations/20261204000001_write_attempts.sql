-- Every write request is an attempt with an id of its own, and its audit
-- record carries it. The id is unique (with the month the record falls in),
-- which makes the record a fence: when the service loses sight of a write
-- (its reply was lost, or its request reached its deadline), it writes the
-- request's record itself. If the write had not committed, its own record
-- now collides with the fence and the write rolls back whenever it reaches
-- it; if it had, the fence is the one left out. Either way the request has
-- exactly one record, and the service learns which happened.
alter table audit_log add column attempt uuid;
create unique index audit_log_attempt_key on audit_log (attempt, occurred_at) where attempt is not null;

-- The one place that names the columns of an audit record written by SQL:
-- the writes' own records (inside their statement), fences, and records
-- queued for requests that were attempts. `entry` is the record as the
-- service serialises it; `product_ids` and `order_id` are what the write
-- changed. A write's record is refused (unique_violation) when a fence for
-- its attempt exists; a fence (`fence`) that finds the attempt's record
-- already there is left out. Returns whether the record was written.
create function audit_append(entry jsonb, product_ids bigint[], order_id bigint, fence boolean)
returns boolean
language plpgsql as $$
declare
    written integer;
begin
    insert into audit_log (manager_id, occurred_at, request_id, method, path, query, status, error_code,
                           duration_ms, client_addr, product_ids, order_id, attempt)
    select a.manager_id, a.occurred_at, a.request_id, a.method, a.path, a.query, a.status, a.error_code,
           -- A write's duration runs to the end of its own statement.
           a.duration_ms + case when fence then 0
                                else 1000 * extract(epoch from clock_timestamp() - transaction_timestamp())::float8
                           end,
           a.client_addr, coalesce(audit_append.product_ids, a.product_ids, '{}'),
           coalesce(audit_append.order_id, a.order_id), a.attempt
      from jsonb_populate_record(null::audit_log, entry) a
        on conflict (attempt, occurred_at) where attempt is not null do nothing;
    get diagnostics written = row_count;
    if written = 0 and not fence then
        raise exception 'the request % was settled before its write committed', entry ->> 'attempt'
            using errcode = 'unique_violation', constraint = 'audit_log_attempt_key';
    end if;
    return written = 1;
end $$;

-- Batches of queued records written, remembered for a day: a batch whose
-- commit reply was lost (the connection broke after COMMIT was sent) is
-- found here when it is retried, and not written twice.
create table audit_batch (
    id         uuid        primary key,
    written_at timestamptz not null default now()
);

-- Whether a write may still complete its idempotency key: it has none, or
-- the key is still claimed by this attempt and unsettled. Locks the key's
-- row, so a request settling the key waits for the write. The one
-- statement of this check; orders and adjustments both call it.
create function idempotency_claim_held(manager text, idem_key text, attempt uuid) returns boolean
language sql volatile as $$
    select idem_key is null
        or exists (select 1
                     from idempotency_key
                    where manager_id = manager and key = idem_key and claim_token = attempt and status is null
                      for update)
$$;

-- The request that holds an idempotency key's claim, so that a later
-- request settling the claim writes the record under its request id.
alter table idempotency_key add column claim_request_id text;

-- Retention: drops, whole, the monthly partitions of the audit trail whose
-- upper bound is at or before `before` (the default partition is never
-- dropped). Rows are never deleted one by one: the append-only triggers
-- stay in force for every month kept. Returns the partitions dropped.
create function audit_log_prune(before timestamptz) returns setof text
language plpgsql as $$
declare
    part record;
begin
    for part in
        select c.relname,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz as upper
          from pg_inherits i
          join pg_class c on c.oid = i.inhrelid
         where i.inhparent = 'audit_log'::regclass
           and pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
         order by 2
    loop
        if part.upper <= before then
            execute format('alter table audit_log detach partition %I', part.relname);
            execute format('drop table %I', part.relname);
            return next part.relname;
        end if;
    end loop;
end $$;
