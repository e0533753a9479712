-- POST /api/inventory/products with 5 products updated by name: the
-- transaction of src/store/products.rs (lock the matching rows, reading
-- what their events need, then one statement updates, inserts, writes the
-- audit row through audit_append, with the write's attempt, a uuid of its
-- own, and the events through event_append_columns). The plan and the
-- events the service computes between the two statements are known here:
-- every item updates product f..f+4 of manager m, to the quantity it
-- already has (the scenario's), so each has one event, product.updated,
-- with its version (the value passed is a stand-in: the service passes the
-- locked row's version plus one) and created_at.
\set m random(1, :managers)
\set f random(1, :products - 5)
\set p1 (:m - 1) * :products + :f
\set cents random(100, 9999)
begin;
select id, name_key as key, quantity, version, low_stock_threshold, discontinued_at is not null as discontinued,
       created_at
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
), updated as (
    update product p
       set name = i.name, name_key = i.name_key, price = i.price, quantity = i.quantity,
           low_stock_threshold = case when i.threshold_given then i.threshold else p.low_stock_threshold end,
           version = p.version + 1, updated_at = now()
      from input i
     where not i.is_new and p.manager_id = 'mgr_' || :m and p.id = i.id
), inserted as (
    insert into product (manager_id, id, name, name_key, price, quantity, low_stock_threshold)
    select 'mgr_' || :m, id, name, name_key, price, quantity, threshold from input where is_new order by name_key
), item_ids as materialized (
    select array_agg(id order by ord) as ids from input
), audited as materialized (
    select audit_append(jsonb_build_object(
               'occurred_at', now(), 'request_id', 'pgb-' || gen_random_uuid(), 'manager_id', 'mgr_' || :m,
               'method', 'POST', 'path', '/api/inventory/products', 'query', null, 'status', 201,
               'error_code', null, 'duration_ms', 0.2, 'client_addr', '127.0.0.1:40000',
               'product_ids', '[]'::jsonb, 'order_id', null, 'attempt', gen_random_uuid()),
           (select ids from item_ids), null, false) as done
), evented as materialized (
    select event_append_columns('mgr_' || :m, (select ids from item_ids), array[1, 2, 3, 4, 5],
           array_fill('product.updated'::text, array[5]), array_fill(1000000000, array[5])::int[],
           array_fill(null::int, array[5])::int[], array_fill(2::bigint, array[5]),
           array_fill(null::int, array[5])::int[], array_fill(null::text, array[5]),
           array['Product ' || :f, 'Product ' || (:f + 1), 'Product ' || (:f + 2),
                 'Product ' || (:f + 3), 'Product ' || (:f + 4)]::text[],
           array_fill(:cents / 100.0, array[5])::numeric[], array_fill(false, array[5]),
           array_fill(now() - interval '1 day', array[5])) as done
)
select i.id, i.name, i.price, i.quantity
  from input i
  left join audited on true
  left join evented on true
 order by i.ord;
commit;
