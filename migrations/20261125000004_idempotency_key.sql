-- Idempotency keys of POST /api/orders/process. A row is claimed when the
-- first request with a key starts (status null), and completed with that
-- request's outcome: a sold order (status 200, order_id, in the order's own
-- statement) or a refusal (404/409 and its error body). A retry with the
-- same key and body is answered from the row; a claim whose request died
-- (status still null long after claimed_at) may be claimed again.
create table idempotency_key (
    manager_id   text        not null,
    key          text        not null constraint idempotency_key_key_length check (char_length(key) between 1 and 255),
    request      text        not null,
    claimed_at   timestamptz not null default now(),
    status       smallint    constraint idempotency_key_status_final check (status in (200, 404, 409)),
    order_id     bigint,
    response     jsonb,
    completed_at timestamptz,
    constraint idempotency_key_pkey primary key (manager_id, key),
    constraint idempotency_key_order_fkey foreign key (manager_id, order_id) references customer_order (manager_id, id),
    constraint idempotency_key_outcome check (
        (status is null and order_id is null and response is null)
        or (status = 200 and order_id is not null)
        or (status in (404, 409) and response is not null))
);

-- Finding keys old enough to forget.
create index idempotency_key_claimed_at_idx on idempotency_key (claimed_at);
