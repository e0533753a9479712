-- Deliveries still to make: one row per (endpoint, event) handed to
-- delivery, from the moment the endpoint's cursor passes the event until it
-- is delivered or given up (then the row goes; `webhook_delivery` keeps the
-- log of every attempt).

create sequence webhook_queue_id_seq as bigint;

create table webhook_queue (
    manager_id  text        not null,
    -- Insertion order, which is feed order per endpoint (a cursor moves
    -- under the endpoint's row lock and queues its events in id order).
    id          bigint      not null default nextval('webhook_queue_id_seq'),
    webhook_id  bigint      not null,
    event_id    bigint      not null,
    -- The product the event is about: one product's deliveries to one
    -- endpoint are made in this table's order.
    product_id  bigint,
    -- Attempts made (claimed) so far.
    attempts    integer     not null default 0,
    due_at      timestamptz not null default now(),
    -- The current claim: its fencing token and until when it holds.
    token       uuid,
    lease_until timestamptz,
    constraint webhook_queue_pkey primary key (manager_id, id),
    constraint webhook_queue_webhook_fkey foreign key (manager_id, webhook_id)
        references webhook (manager_id, id) on delete cascade,
    constraint webhook_queue_claim check ((token is null) = (lease_until is null))
);

alter sequence webhook_queue_id_seq owned by webhook_queue.id;

create index webhook_queue_due_idx on webhook_queue (due_at);
create index webhook_queue_order_idx on webhook_queue (manager_id, webhook_id, product_id, id);
