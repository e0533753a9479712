-- bench/run --scale: the volume of a large tenant base, written directly
-- with SQL (through the API it would take hours): :managers managers
-- (scale_1 ..) with :per_manager products each, and :audit_rows audit rows
-- spread over this month so far (the partition the service writes to).
-- Run with psql -v managers=... -v per_manager=... -v audit_rows=...
\set ON_ERROR_STOP on
\timing on
insert into product (manager_id, name, name_key, price, quantity)
select 'scale_' || m, 'Product ' || n, 'product ' || n, 1 + (m * 7 + n) % 9999 / 100.0, 1000
  from generate_series(1, :managers) m, generate_series(1, :per_manager) n
 order by m, n;
insert into audit_log (manager_id, occurred_at, request_id, method, path, query, status,
                       duration_ms, client_addr)
select 'scale_' || (1 + g % :managers),
       date_trunc('month', now()) + (now() - date_trunc('month', now())) * random(),
       'scale-' || g, 'GET', '/api/inventory/products', 'manager_id=scale_' || (1 + g % :managers),
       200, 1.0, '127.0.0.1:40000'
  from generate_series(1, :audit_rows) g;
vacuum analyze product, audit_log;
