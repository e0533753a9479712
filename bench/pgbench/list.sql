-- GET /api/inventory/products: what one list request costs PostgreSQL. The
-- list query of src/store/products.rs runs only on a cache miss (miss_ppm
-- times per million, the rate the service run just measured); the audit
-- writer's batched insert of src/store/audit.rs writes audit_batch records
-- once every audit_batch requests (the mean batch the service run wrote).
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
insert into audit_log (manager_id, occurred_at, request_id, method, path, query, status,
                       error_code, duration_ms, client_addr, product_ids, order_id)
select manager_id, occurred_at, request_id, method, path, query, status,
       error_code, duration_ms, client_addr, coalesce(product_ids, '{}'), order_id
  from jsonb_populate_recordset(null::audit_log, (
           select jsonb_agg(jsonb_build_object(
                      'occurred_at', now(), 'request_id', 'pgb-' || gen_random_uuid(), 'manager_id', 'mgr_' || :m,
                      'method', 'GET', 'path', '/api/inventory/products', 'query', 'manager_id=mgr_' || :m,
                      'status', 200, 'error_code', null, 'duration_ms', 0.2, 'client_addr', '127.0.0.1:40000',
                      'product_ids', '[]'::jsonb, 'order_id', null))
             from generate_series(1, :audit_batch)));
\endif
