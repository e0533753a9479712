-- The event feed: every change of a product or an order is recorded as
-- events in the transaction that makes it (a transactional outbox), and
-- read in feed order by `GET /api/events`.

-- A product's version: raised by one with every change of the product, so a
-- consumer of events keeps the highest it has seen. Not in any index, so
-- stock decrements stay HOT updates.
alter table product add column version bigint not null default 1
    constraint product_version_positive check (version >= 1);
-- Below this many units a change that crosses it records `inventory.low_stock`.
alter table product add column low_stock_threshold integer
    constraint product_low_stock_threshold_range check (low_stock_threshold between 0 and 1000000000);

-- Event ids come from one global sequence (public `evt_001` onwards). CACHE 1
-- (the default) is required: with a per-session cache, ids would no longer
-- grow in the order they are taken, which the feed's exactness rests on.
create sequence event_id_seq as bigint cache 1;

create table event (
    manager_id  text        not null,
    id          bigint      not null default nextval('event_id_seq'),
    type        text        not null
        constraint event_type_known check (type in (
            'product.created', 'product.updated', 'product.discontinued', 'inventory.changed',
            'inventory.low_stock', 'order.processed', 'order.cancelled', 'webhook.disabled')),
    -- The moment the event was recorded, just before its transaction commits.
    occurred_at timestamptz not null default clock_timestamp(),
    -- The product the event is about, if any (deliveries keep one product's
    -- events in feed order).
    product_id  bigint,
    data        jsonb       not null,
    constraint event_pkey primary key (manager_id, id)
);

alter sequence event_id_seq owned by event.id;

-- Retention finds old events by time: rows arrive in time order, so a BRIN
-- index (a few pages, next to nothing to maintain on the write path) is
-- enough to delete them in bounded batches.
create index event_occurred_at_brin on event using brin (occurred_at);

-- The public spelling of a row number: `prefix` then the number zero-padded
-- to at least three digits (`prod_001`, `prod_1000`), as the service prints
-- ids.
create function public_id(prefix text, n bigint) returns text
language sql immutable strict parallel safe as $$
    select prefix || case when n < 100 then lpad(n::text, 3, '0') else n::text end
$$;

-- A time as the service prints it: RFC 3339 in UTC with 0, 3 or 6
-- fractional digits, whichever is exact.
create function rfc3339(t timestamptz) returns text
language sql immutable strict parallel safe as $$
    select to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || case when extract(microseconds from t)::bigint % 1000000 = 0 then ''
                when extract(microseconds from t)::bigint % 1000 = 0
                    then '.' || lpad(((extract(microseconds from t)::bigint % 1000000) / 1000)::text, 3, '0')
                else '.' || lpad((extract(microseconds from t)::bigint % 1000000)::text, 6, '0')
           end
        || 'Z'
$$;

-- The one place events are written. `events` is a JSON array of
-- `{type, product_id, data}` in the order they are to take ids.
--
-- The feed's exactness: before taking ids, the transaction takes a lock of
-- its manager held until it commits or rolls back. Two transactions of one
-- manager then take their ids one after the other's end, so within a manager
-- ids grow in commit order: a reader that has seen event n can never later
-- find a committed event below n. The lock is taken after every row lock of
-- the write (callers call this last), so it is held only for the end of the
-- transaction, and it is the last lock every writer takes: no cycle.
-- Returns how many events were written.
create function event_append(manager text, events jsonb) returns integer
language plpgsql volatile as $$
declare
    written integer;
begin
    if events is null or jsonb_array_length(events) = 0 then
        return 0;
    end if;
    -- Class 1702 ("evt") keeps these keys apart from other advisory locks.
    perform pg_advisory_xact_lock(1702, hashtext(manager));
    insert into event (manager_id, type, product_id, data)
    select manager, e ->> 'type', (e ->> 'product_id')::bigint, e -> 'data'
      from jsonb_array_elements(events) with ordinality as x(e, ord)
     order by ord;
    get diagnostics written = row_count;
    return written;
end $$;
