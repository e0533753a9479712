-- event_append_rows for a write that knows its events' columns before it
-- runs: an upsert reads every product it changes when it locks them, so
-- the service computes the events (the version, the previous quantity, the
-- threshold crossed) and passes them as one array a column, and the write
-- statement inserts them as they are: no joins of the written rows, no
-- composite values built and taken apart again.
--
-- `items[k]` is the position, in `item_ids`, of the product event k is
-- about: the statement creates its new products' ids itself, so it passes
-- them all in `item_ids`, in the request's order. The same lock as
-- event_append (the feed's exactness), the ids in the arrays' order. The
-- events' `updated_at` is the transaction's time, as the products'; a
-- `created_at` left null is too (a product this write creates).
create function event_append_columns(
    manager text, item_ids bigint[], items integer[], types text[], quantities integer[], previous integer[],
    versions bigint[], thresholds integer[], reasons text[], names text[], prices numeric[],
    discontinued boolean[], created timestamptz[]
) returns integer
language plpgsql volatile as $$
declare
    written integer;
begin
    if coalesce(cardinality(types), 0) = 0 then
        return 0;
    end if;
    perform pg_advisory_xact_lock(1702, hashtext(manager));
    insert into event (manager_id, type, product_id, quantity, previous_quantity, version, threshold, reason,
                       name, price, discontinued, created_at, updated_at)
    select manager, e.type, item_ids[e.item], e.quantity, e.previous, e.version, e.threshold, e.reason,
           e.name, e.price, e.discontinued, coalesce(e.created, now()), now()
      from unnest(items, types, quantities, previous, versions, thresholds, reasons, names, prices, discontinued,
                  created)
           with ordinality as e(item, type, quantity, previous, version, threshold, reason, name, price,
                                discontinued, created, ord)
     order by e.ord;
    get diagnostics written = row_count;
    return written;
end $$;
