-- GET /api/inventory/products: what one list request costs PostgreSQL. The
-- list query of src/store/products.rs runs only on a cache miss (miss_ppm
-- times per million, the rate the service run just measured); once every
-- audit_batch requests (the mean batch the service run wrote) the audit
-- writer's transaction of write_batch in src/audit/sql.rs writes audit_batch
-- records: the batch's id into audit_batch, then the records. Reads make no
-- write attempt, so the service sends their records with COPY; pgbench cannot
-- send COPY data, so here the same columns (attempt null) go in by one
-- INSERT ... SELECT of plain values.
\set m random(1, :managers)
\set s random(1, 4)
\set miss random(1, 1000000)
\set flush random(1, :audit_batch)
\if :miss <= :miss_ppm
select id, name, price, quantity
  from product
 where manager_id = 'mgr_' || :m
   and id > 0
   and case (array[null, 'in_stock', 'out_of_stock', 'discontinued']::text[])[:s]
         when 'in_stock' then discontinued_at is null and quantity > 0
         when 'out_of_stock' then discontinued_at is null and quantity = 0
         when 'discontinued' then discontinued_at is not null
         else true
       end
 order by id
 limit 100;
\endif
\if :flush = 1
begin;
insert into audit_batch (id) values (gen_random_uuid()) on conflict do nothing returning true as first;
insert into audit_log (manager_id, occurred_at, request_id, method, path, query, status,
                       error_code, duration_ms, client_addr, product_ids, order_id, attempt)
select 'mgr_' || :m, now(), 'pgb-' || gen_random_uuid(), 'GET', '/api/inventory/products',
       'manager_id=mgr_' || :m, 200, null, 0.2, '127.0.0.1:40000', '{}'::bigint[], null, null
  from generate_series(1, :audit_batch);
commit;
\endif
