-- POST /api/inventory/discontinue of a manager's last product: the
-- statement of src/store/products.rs, with its audit row.
\set m random(1, :managers)
\set p :m * :products
with done as (
    update product
       set discontinued_at = coalesce(discontinued_at, now()), updated_at = now()
     where manager_id = 'mgr_' || :m and id = :p
 returning id
), audited as (
    insert into audit_log (manager_id, occurred_at, request_id, method, path, query, status,
                           error_code, duration_ms, client_addr, product_ids, order_id)
    select a.manager_id, a.occurred_at, a.request_id, a.method, a.path, a.query, a.status,
           a.error_code,
           a.duration_ms + 1000 * extract(epoch from clock_timestamp() - transaction_timestamp())::float8,
           a.client_addr, array[d.id], null
      from jsonb_populate_record(null::audit_log, jsonb_build_object(
               'occurred_at', now(), 'request_id', 'pgb-' || gen_random_uuid(), 'manager_id', 'mgr_' || :m,
               'method', 'POST', 'path', '/api/inventory/discontinue', 'query', null, 'status', 204,
               'error_code', null, 'duration_ms', 0.2, 'client_addr', '127.0.0.1:40000',
               'product_ids', '[]'::jsonb, 'order_id', null)) a, done d
)
select id from done;
