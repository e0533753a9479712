-- POST /api/inventory/products with 5 products updated by name: the
-- transaction of src/store/products.rs (lock the matching rows, then one
-- statement updates, inserts, writes the audit row through audit_append,
-- with the write's attempt, a uuid of its own, and the events through
-- event_append_rows). The plan the service computes between the two
-- statements is known here: every item updates product f..f+4 of manager m.
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
), evented as materialized (
    select event_append_rows('mgr_' || :m, array_agg(e.event order by e.ord, e.kind)) as done
      from (
        select i.ord, 1 as kind,
               event_row(case when i.is_new then 'product.created' else 'product.updated' end,
                         product_id => w.id, name => i.name, price => i.price, quantity => i.quantity,
                         discontinued => w.discontinued, created_at => w.created_at,
                         updated_at => w.updated_at, threshold => w.low_stock_threshold,
                         version => w.version)
          from input i join written w using (id)
        union all
        select i.ord, 2,
               event_row('inventory.changed', product_id => w.id, quantity => i.quantity,
                         previous_quantity => coalesce(b.quantity, 0), version => w.version,
                         reason => 'upsert')
          from input i join written w using (id) left join before b using (id)
         where i.quantity <> coalesce(b.quantity, 0)
        union all
        select i.ord, 3,
               event_row('inventory.low_stock', product_id => w.id, quantity => i.quantity,
                         threshold => w.low_stock_threshold, version => w.version)
          from input i join written w using (id) join before b using (id)
         where b.quantity >= w.low_stock_threshold and i.quantity < w.low_stock_threshold
      ) e (ord, kind, event)
)
select i.id, i.name, i.price, i.quantity
  from input i
  join written w using (id)
  left join audited on true
  left join evented on true
 order by i.ord;
commit;
