-- POST /api/orders/process with an Idempotency-Key of its own: the claim
-- statement of src/store/idempotency.rs (insert the claim or do nothing, then
-- read the key back), then the order statement of src/store/orders.rs with
-- the key and claim token ($7, $8), its audit row written by audit_append
-- and its events by event_append_rows.
-- The key is 'pgb-' || :k, the stored request a canonical body; the write's
-- attempt, which is the claim token and the audit record's attempt, is
-- md5(:k)::uuid, and its request id 'pgb-' || :k.
\set m random(1, :managers)
\set a random(1, :products - 2)
\set b random(:a + 1, :products - 1)
\set pa (:m - 1) * :products + :a
\set pb (:m - 1) * :products + :b
\set c random(1, 1000000)
\set k random(1, 9000000000000000000)
with claimed as (
    insert into idempotency_key (manager_id, key, request, claim_token, claimed_at, claim_request_id)
    values ('mgr_' || :m, 'pgb-' || :k,
            '{"customer":{"email":"c' || :c || '@example.com","id":"cust_' || :c || '"},"manager_id":"mgr_' || :m
              || '","products":[{"product_id":"prod_' || :pa || '","quantity":1},{"product_id":"prod_' || :pb
              || '","quantity":1}]}',
            md5(:k::text)::uuid, now(), 'pgb-' || :k)
    on conflict (manager_id, key) do nothing
 returning 1
)
select exists (select 1 from claimed) as owned,
       k.request = '{"customer":{"email":"c' || :c || '@example.com","id":"cust_' || :c || '"},"manager_id":"mgr_' || :m
                   || '","products":[{"product_id":"prod_' || :pa || '","quantity":1},{"product_id":"prod_' || :pb
                   || '","quantity":1}]}' as same_request,
       k.status,
       k.response,
       k.claim_token,
       k.claimed_at,
       k.claim_request_id,
       o.id,
       o.total_amount
  from (values (1)) as one (x)
  left join idempotency_key k on k.manager_id = 'mgr_' || :m and k.key = 'pgb-' || :k
  left join customer_order o on o.manager_id = k.manager_id and o.id = k.order_id;
with req as (
    select * from unnest(array[:pa, :pb]::bigint[], array[1, 1]::int[]) with ordinality as r(id, qty, line_no)
), locked as materialized (
    select id, name, price, quantity, discontinued_at is not null as discontinued, version,
           low_stock_threshold
      from product
     where manager_id = 'mgr_' || :m and id in (select id from req)
     order by id
       for update
), claim as materialized (
    select idempotency_claim_held('mgr_' || :m, 'pgb-' || :k, md5(:k::text)::uuid) as held
), sellable as materialized (
    select count(*) = cardinality(array[1, 1]::int[]) and (select held from claim) as ok
      from req join locked l using (id)
     where not l.discontinued and l.quantity >= req.qty
), sold as (
    update product p
       set quantity = l.quantity - r.qty, version = l.version + 1, updated_at = now()
      from req r join locked l using (id), sellable s
     where s.ok and p.manager_id = 'mgr_' || :m and p.id = r.id
 returning p.id, p.name, p.price, r.qty, r.line_no, l.quantity as before, p.quantity as after,
           p.version, l.low_stock_threshold as threshold
), placed as (
    insert into customer_order (manager_id, customer_id, customer_email, total_amount)
    select 'mgr_' || :m, 'cust_' || :c, 'c' || :c || '@example.com', sum(price * qty) from sold having count(*) > 0
 returning id, total_amount, created_at
), order_lines as (
    insert into order_line (manager_id, order_id, line_no, product_id, name, quantity, unit_price)
    select 'mgr_' || :m, o.id, s.line_no, s.id, s.name, s.qty, s.price from placed o, sold s
), remembered as (
    update idempotency_key k
       set status = 200, order_id = o.id, completed_at = now()
      from placed o
     where k.manager_id = 'mgr_' || :m and k.key = 'pgb-' || :k and k.claim_token = md5(:k::text)::uuid
), audited as materialized (
    select audit_append(jsonb_build_object(
               'occurred_at', now(), 'request_id', 'pgb-' || :k, 'manager_id', 'mgr_' || :m,
               'method', 'POST', 'path', '/api/orders/process', 'query', null, 'status', 200,
               'error_code', null, 'duration_ms', 0.2, 'client_addr', '127.0.0.1:40000',
               'product_ids', '[]'::jsonb, 'order_id', null, 'attempt', md5(:k::text)::uuid),
           (select array_agg(id order by id) from sold), o.id, false) as done
      from placed o
), evented as materialized (
    select event_append_rows('mgr_' || :m, array_agg(e.event order by e.kind, (e.event).product_id)) as done
      from (
        select 1 as kind, event_row('inventory.changed', product_id => s.id, quantity => s.after,
                                    previous_quantity => s.before, version => s.version,
                                    reason => 'order', order_id => o.id)
          from sold s, placed o
        union all
        select 2, event_row('inventory.low_stock', product_id => s.id, quantity => s.after,
                            threshold => s.threshold, version => s.version)
          from sold s
         where s.before >= s.threshold and s.after < s.threshold
        union all
        select 3, event_row('order.processed', order_id => o.id)
          from placed o
      ) e (kind, event)
)
select r.line_no, r.qty, l.quantity, l.discontinued, o.id, o.total_amount,
       not (select held from claim) as claim_lost
  from req r
  left join locked l using (id)
  left join placed o on true
  left join audited on true
  left join evented on true
 order by r.line_no;
