-- Products, orders and the audit trail. Every table leads its keys with
-- manager_id so the schema can be distributed by manager (e.g. Citus) without
-- changing a key; ids come from global sequences so public ids never repeat.

create sequence product_id_seq as bigint;
create sequence customer_order_id_seq as bigint;

create table product (
    manager_id      text        not null
        constraint product_manager_id_format check (manager_id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    id              bigint      not null default nextval('product_id_seq'),
    name            text        not null
        constraint product_name_format check (char_length(name) between 1 and 200 and name = btrim(name)),
    price           numeric(9, 2) not null
        constraint product_price_range check (price > 0 and price <= 1000000),
    quantity        integer     not null
        constraint product_quantity_range check (quantity between 0 and 1000000000),
    discontinued_at timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint product_pkey primary key (manager_id, id)
) with (fillfactor = 90);
-- fillfactor 90 leaves room on each page so stock decrements can be HOT
-- updates (no index touched): quantity is deliberately in no index.

alter sequence product_id_seq owned by product.id;

-- One product per name per manager, names compared trimmed (they are stored
-- trimmed) and case-insensitively. Also the arbiter of concurrent creations.
create unique index product_manager_name_key on product (manager_id, lower(name));

create table customer_order (
    manager_id     text        not null,
    id             bigint      not null default nextval('customer_order_id_seq'),
    customer_id    text        not null
        constraint customer_order_customer_id_format check (customer_id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    customer_email text        not null
        constraint customer_order_email_length check (char_length(customer_email) between 3 and 254),
    total_amount   numeric(18, 2) not null
        constraint customer_order_total_positive check (total_amount > 0),
    created_at     timestamptz not null default now(),
    constraint customer_order_pkey primary key (manager_id, id)
);

alter sequence customer_order_id_seq owned by customer_order.id;

create table order_line (
    manager_id text          not null,
    order_id   bigint        not null,
    line_no    integer       not null constraint order_line_line_no_positive check (line_no >= 1),
    product_id bigint        not null,
    quantity   integer       not null constraint order_line_quantity_range check (quantity between 1 and 1000000),
    unit_price numeric(9, 2) not null constraint order_line_unit_price_positive check (unit_price > 0),
    constraint order_line_pkey primary key (manager_id, order_id, line_no),
    constraint order_line_order_fkey foreign key (manager_id, order_id) references customer_order (manager_id, id),
    constraint order_line_product_fkey foreign key (manager_id, product_id) references product (manager_id, id)
);

-- "Which orders sold this product" without scanning every line.
create index order_line_product_idx on order_line (manager_id, product_id);

-- The audit trail: one row per request under /api/. Partitioned by month so
-- old months can be detached or dropped whole; append-only (see trigger).
-- manager_id is '' when the request named no valid manager: the column stays
-- NOT NULL so it can be a distribution column.
create table audit_log (
    manager_id  text        not null default '',
    id          bigint      generated always as identity,
    occurred_at timestamptz not null,
    request_id  text        not null,
    method      text        not null,
    path        text        not null,
    query       text,
    status      smallint    not null,
    error_code  text,
    duration_ms double precision not null,
    client_addr text,
    product_ids bigint[]    not null default '{}',
    order_id    bigint,
    constraint audit_log_pkey primary key (manager_id, id, occurred_at)
) partition by range (occurred_at);

-- Catches rows outside every monthly partition; the service creates the
-- current and next month's partitions at start-up and daily, so it stays empty.
create table audit_log_default partition of audit_log default;

create function audit_log_ensure_partitions(months_ahead integer) returns void
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
        end if;
    end loop;
end $$;

select audit_log_ensure_partitions(1);

create function audit_log_reject_change() returns trigger
language plpgsql as $$
begin
    raise exception 'audit_log is append-only: % is not allowed', tg_op
        using errcode = 'insufficient_privilege';
end $$;

create trigger audit_log_no_update_or_delete
    before update or delete on audit_log
    for each row execute function audit_log_reject_change();

create trigger audit_log_no_truncate
    before truncate on audit_log
    for each statement execute function audit_log_reject_change();
