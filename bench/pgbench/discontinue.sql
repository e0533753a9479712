-- POST /api/inventory/discontinue of a manager's last product: the
-- statement of src/store/products.rs, with its audit row written by
-- audit_append (with the write's attempt, a uuid of its own) and its event
-- by event_append_rows (none when the product was discontinued already, as it is
-- after the first time here: discontinuing again changes nothing).
\set m random(1, :managers)
\set p :m * :products
with before as materialized (
    select id, discontinued_at is null as fresh from product
     where manager_id = 'mgr_' || :m and id = :p
       for update
), done as (
    update product p
       set discontinued_at = now(), updated_at = now(), version = p.version + 1
      from before b
     where b.fresh and p.manager_id = 'mgr_' || :m and p.id = b.id
 returning p.id, p.version
), audited as materialized (
    select audit_append(jsonb_build_object(
               'occurred_at', now(), 'request_id', 'pgb-' || gen_random_uuid(), 'manager_id', 'mgr_' || :m,
               'method', 'POST', 'path', '/api/inventory/discontinue', 'query', null, 'status', 204,
               'error_code', null, 'duration_ms', 0.2, 'client_addr', '127.0.0.1:40000',
               'product_ids', '[]'::jsonb, 'order_id', null, 'attempt', gen_random_uuid()),
           array[b.id], null, false) as done
      from before b
), evented as materialized (
    select event_append_rows('mgr_' || :m, array_agg(event_row('product.discontinued', product_id => d.id,
                                                               version => d.version)))
      from done d
)
select b.id from before b left join audited on true left join evented on true;
