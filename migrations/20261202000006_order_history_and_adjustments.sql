-- What a store manager needs after a sale: the order's lines as they were
-- sold (names change, so the name at the moment of sale is kept), orders that
-- can be cancelled, and stock changed by differences with a record of each.

-- A line's product name when it was sold.
alter table order_line add column name text;
update order_line l set name = p.name
  from product p
 where p.manager_id = l.manager_id and p.id = l.product_id;
alter table order_line alter column name set not null;

-- Set once, when the order is cancelled; the status is derived from it
-- (processed while null, cancelled after), as a product's is.
alter table customer_order add column cancelled_at timestamptz;

-- A manager's orders for one customer, newest first.
create index customer_order_customer_idx on customer_order (manager_id, customer_id, id);

-- Every applied stock difference, in the transaction that applied it.
create sequence stock_adjustment_id_seq as bigint;
create table stock_adjustment (
    manager_id  text        not null,
    id          bigint      not null default nextval('stock_adjustment_id_seq'),
    product_id  bigint      not null,
    delta       integer     not null
        constraint stock_adjustment_delta_range check (delta <> 0 and delta between -1000000000 and 1000000000),
    created_at  timestamptz not null default now(),
    constraint stock_adjustment_pkey primary key (manager_id, id),
    constraint stock_adjustment_product_fkey foreign key (manager_id, product_id) references product (manager_id, id)
);
alter sequence stock_adjustment_id_seq owned by stock_adjustment.id;
create index stock_adjustment_product_idx on stock_adjustment (manager_id, product_id);

-- Idempotency keys now also complete stock adjustments, whose answer (the
-- products after the change) is kept as the response.
alter table idempotency_key drop constraint idempotency_key_outcome;
alter table idempotency_key add constraint idempotency_key_outcome check (
    (status is null and order_id is null and response is null)
    or (status = 200 and (order_id is not null or response is not null))
    or (status in (404, 409) and response is not null));
