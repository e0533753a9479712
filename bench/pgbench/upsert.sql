-- POST /api/inventory/products with 5 products updated by name: the
-- transaction of src/store/products.rs (lock the matching rows, then one
-- statement updates, inserts and writes the audit row through audit_append,
-- with the write's attempt, a uuid of its own, then its events through
-- event_append). The plan the service computes between the two statements
-- is known here: every item updates product f..f+4 of manager m. The
-- service builds the events from the statement's rows; here the last
-- statement builds them from the products as written: one product.updated
-- each, without the inventory.changed of a product whose stock the upsert
-- reset (in a run of this scenario, only a product's first upsert has one).
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
           t.name, t.name_key, t.price, t.quantity, t.threshold, t.threshold_given
      from unnest(array[:p1, :p1 + 1, :p1 + 2, :p1 + 3, :p1 + 4]::bigint[],
                  array['Product ' || :f, 'Product ' || (:f + 1), 'Product ' || (:f + 2),
                        'Product ' || (:f + 3), 'Product ' || (:f + 4)]::text[],
                  array['product ' || :f, 'product ' || (:f + 1), 'product ' || (:f + 2),
                        'product ' || (:f + 3), 'product ' || (:f + 4)]::text[],
                  array_fill(:cents / 100.0, array[5])::numeric[],
                  array_fill(1000000000, array[5])::int[],
                  array_fill(null::int, array[5])::int[],
                  array_fill(false, array[5])::bool[])
           with ordinality as t(id, name, name_key, price, quantity, threshold, threshold_given, ord)
), before as materialized (
    select p.id, p.quantity from product p
     where p.manager_id = 'mgr_' || :m and p.id in (select id from input where not is_new)
), updated as (
    update product p
       set name = i.name, name_key = i.name_key, price = i.price, quantity = i.quantity,
           low_stock_threshold = case when i.threshold_given then i.threshold else p.low_stock_threshold end,
           version = p.version + 1, updated_at = now()
      from input i
     where not i.is_new and p.manager_id = 'mgr_' || :m and p.id = i.id
 returning p.id, p.version, p.low_stock_threshold, p.discontinued_at is not null as discontinued,
           p.created_at, p.updated_at
), inserted as (
    insert into product (manager_id, id, name, name_key, price, quantity, low_stock_threshold)
    select 'mgr_' || :m, id, name, name_key, price, quantity, threshold from input where is_new order by name_key
 returning id, version, low_stock_threshold, false as discontinued, created_at, updated_at
), written as (
    select * from updated union all select * from inserted
), audited as materialized (
    select audit_append(jsonb_build_object(
               'occurred_at', now(), 'request_id', 'pgb-' || gen_random_uuid(), 'manager_id', 'mgr_' || :m,
               'method', 'POST', 'path', '/api/inventory/products', 'query', null, 'status', 201,
               'error_code', null, 'duration_ms', 0.2, 'client_addr', '127.0.0.1:40000',
               'product_ids', '[]'::jsonb, 'order_id', null, 'attempt', gen_random_uuid()),
           (select array_agg(id order by ord) from input), null, false) as done
)
select i.id, i.name, i.price, i.quantity, i.is_new, b.quantity as previous, w.version, w.low_stock_threshold,
       w.discontinued, w.created_at, w.updated_at
  from input i
  join written w using (id)
  left join before b using (id)
  left join audited on true
 order by i.ord;
select event_append('mgr_' || :m, jsonb_agg(jsonb_build_object(
           'type', 'product.updated', 'product_id', id,
           'data', jsonb_build_object(
               'id', public_id('prod_', id), 'name', name, 'price', price, 'quantity', quantity,
               'status', case when discontinued_at is not null then 'discontinued'
                              when quantity > 0 then 'in_stock' else 'out_of_stock' end,
               'created_at', rfc3339(created_at), 'updated_at', rfc3339(updated_at),
               'low_stock_threshold', low_stock_threshold, 'version', version))
         order by id))
  from product
 where manager_id = 'mgr_' || :m and id between :p1 and :p1 + 4;
commit;
