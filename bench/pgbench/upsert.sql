-- POST /api/inventory/products with 5 products updated by name: the
-- transaction of src/store/products.rs (lock the matching rows, then one
-- statement updates, inserts and writes the audit row through audit_append,
-- with the write's attempt, a uuid of its own). The plan the service
-- computes between the two statements is known here: every item updates
-- product f..f+4 of manager m.
\set m random(1, :managers)
\set f random(1, :products - 5)
\set p1 (:m - 1) * :products + :f
\set cents random(100, 9999)
begin;
select id, name_key as key
  from product
 where manager_id = 'mgr_' || :m
   and (id = any(array[]::bigint[])
        or name_key = any(array['product ' || :f, 'product ' || (:f + 1), 'product ' || (:f + 2),
                                'product ' || (:f + 3), 'product ' || (:f + 4)]::text[]))
 order by id
   for update;
with input as materialized (
    select t.ord, coalesce(t.id, nextval('product_id_seq')) as id, t.id is null as is_new,
           t.name, t.name_key, t.price, t.quantity
      from unnest(array[:p1, :p1 + 1, :p1 + 2, :p1 + 3, :p1 + 4]::bigint[],
                  array['Product ' || :f, 'Product ' || (:f + 1), 'Product ' || (:f + 2),
                        'Product ' || (:f + 3), 'Product ' || (:f + 4)]::text[],
                  array['product ' || :f, 'product ' || (:f + 1), 'product ' || (:f + 2),
                        'product ' || (:f + 3), 'product ' || (:f + 4)]::text[],
                  array_fill(:cents / 100.0, array[5])::numeric[],
                  array_fill(1000000000, array[5])::int[])
           with ordinality as t(id, name, name_key, price, quantity, ord)
), updated as (
    update product p
       set name = i.name, name_key = i.name_key, price = i.price, quantity = i.quantity,
           updated_at = now()
      from input i
     where not i.is_new and p.manager_id = 'mgr_' || :m and p.id = i.id
), inserted as (
    insert into product (manager_id, id, name, name_key, price, quantity)
    select 'mgr_' || :m, id, name, name_key, price, quantity from input where is_new order by name_key
), audited as materialized (
    select audit_append(jsonb_build_object(
               'occurred_at', now(), 'request_id', 'pgb-' || gen_random_uuid(), 'manager_id', 'mgr_' || :m,
               'method', 'POST', 'path', '/api/inventory/products', 'query', null, 'status', 201,
               'error_code', null, 'duration_ms', 0.2, 'client_addr', '127.0.0.1:40000',
               'product_ids', '[]'::jsonb, 'order_id', null, 'attempt', gen_random_uuid()),
           (select array_agg(id order by ord) from input), null, false) as done
)
select id, name, price, quantity
  from input
  left join audited on true
 order by ord;
commit;
