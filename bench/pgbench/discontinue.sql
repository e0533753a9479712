-- POST /api/inventory/discontinue of a manager's last product: the
-- statement of src/store/products.rs, with its audit row written by
-- audit_append (with the write's attempt, a uuid of its own).
\set m random(1, :managers)
\set p :m * :products
with done as (
    update product
       set discontinued_at = coalesce(discontinued_at, now()), updated_at = now()
     where manager_id = 'mgr_' || :m and id = :p
 returning id
), audited as materialized (
    select audit_append(jsonb_build_object(
               'occurred_at', now(), 'request_id', 'pgb-' || gen_random_uuid(), 'manager_id', 'mgr_' || :m,
               'method', 'POST', 'path', '/api/inventory/discontinue', 'query', null, 'status', 204,
               'error_code', null, 'duration_ms', 0.2, 'client_addr', '127.0.0.1:40000',
               'product_ids', '[]'::jsonb, 'order_id', null, 'attempt', gen_random_uuid()),
           array[d.id], null, false) as done
      from done d
)
select id from done left join audited on true;
