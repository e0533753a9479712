-- The write path's cost, profiled (perf, the whole machine, the upsert
-- and order benchmarks): PostgreSQL reads a table's CHECK constraints
-- from their stored text and plans them again in every statement that
-- writes the table (ExecConstraints: stringToNode, then ExecPrepareExpr),
-- and evaluates every one of them for every row written, whichever
-- columns changed. For an upsert that was a tenth of the machine's CPU:
-- the product's seven checks (a regular expression among them, run again
-- for a manager id an update never changes) and the event's two, one of
-- them a 700-character CASE.
--
-- A domain's checks are read and planned once per connection (the type
-- cache keeps them), and run only when a value is stored in a column of
-- that type: an update that changes the quantity checks the quantity.
-- The rules are the same; they move from the tables to the columns' types.
-- Each column changes type without rewriting its table: the domain is
-- created without its check, the column takes it (a domain without
-- checks over the column's own type changes nothing stored), then the
-- check is added and validated against the rows already there.

create domain manager_key as text;
create domain product_name as text;
create domain product_name_key as text;
create domain product_price as numeric(9, 2);
create domain stock_quantity as integer;
create domain stock_threshold as integer;
create domain row_version as bigint;
create domain customer_key as text;
create domain customer_email as text;
create domain line_number as integer;
create domain line_quantity as integer;
create domain order_total as numeric(18, 2);
create domain line_price as numeric(9, 2);
create domain event_type as text;

alter table product
    drop constraint product_manager_id_format,
    drop constraint product_name_format,
    drop constraint product_name_key_length,
    drop constraint product_price_range,
    drop constraint product_quantity_range,
    drop constraint product_version_positive,
    drop constraint product_low_stock_threshold_range,
    alter column manager_id type manager_key,
    alter column name type product_name,
    alter column name_key type product_name_key,
    alter column price type product_price,
    alter column quantity type stock_quantity,
    alter column low_stock_threshold type stock_threshold,
    alter column version type row_version;

alter table customer_order
    drop constraint customer_order_customer_id_format,
    drop constraint customer_order_email_length,
    drop constraint customer_order_total_positive,
    alter column customer_id type customer_key,
    alter column customer_email type customer_email;

alter table order_line
    drop constraint order_line_line_no_positive,
    drop constraint order_line_quantity_range,
    drop constraint order_line_unit_price_positive,
    alter column line_no type line_number,
    alter column quantity type line_quantity;

alter table customer_order alter column total_amount type order_total;
alter table order_line alter column unit_price type line_price;

-- The event's type. The rule that an event without `data` has the columns
-- its type needs (event_data_or_columns) is dropped: it cost a CASE of
-- ten branches in every write, and the events are written by the append
-- functions alone (event_append, event_append_rows, and the next
-- migration's event_append_columns), whose callers are tested to record
-- every type with its columns (and the feed to show every event with its
-- data).
alter table event
    drop constraint event_type_known,
    drop constraint event_data_or_columns,
    alter column type type event_type;

alter domain manager_key add constraint manager_key_format
    check (value ~ '^[A-Za-z0-9_.:-]{1,64}$') not valid;
alter domain product_name add constraint product_name_format
    check (char_length(value) between 1 and 200 and value = btrim(value)) not valid;
alter domain product_name_key add constraint product_name_key_length
    check (char_length(value) between 1 and 400) not valid;
alter domain product_price add constraint product_price_range
    check (value > 0 and value <= 1000000) not valid;
alter domain stock_quantity add constraint stock_quantity_range
    check (value between 0 and 1000000000) not valid;
alter domain stock_threshold add constraint stock_threshold_range
    check (value between 0 and 1000000000) not valid;
alter domain row_version add constraint row_version_positive
    check (value >= 1) not valid;
alter domain customer_key add constraint customer_key_format
    check (value ~ '^[A-Za-z0-9_.:-]{1,64}$') not valid;
alter domain customer_email add constraint customer_email_length
    check (char_length(value) between 3 and 254) not valid;
alter domain line_number add constraint line_number_positive
    check (value >= 1) not valid;
alter domain line_quantity add constraint line_quantity_range
    check (value between 1 and 1000000) not valid;
alter domain order_total add constraint order_total_positive
    check (value > 0) not valid;
alter domain line_price add constraint line_price_positive
    check (value > 0) not valid;
alter domain event_type add constraint event_type_known
    check (value in ('product.created', 'product.updated', 'product.discontinued', 'inventory.changed',
                     'inventory.low_stock', 'order.processed', 'order.cancelled', 'webhook.disabled')) not valid;

alter domain manager_key validate constraint manager_key_format;
alter domain product_name validate constraint product_name_format;
alter domain product_name_key validate constraint product_name_key_length;
alter domain product_price validate constraint product_price_range;
alter domain stock_quantity validate constraint stock_quantity_range;
alter domain stock_threshold validate constraint stock_threshold_range;
alter domain row_version validate constraint row_version_positive;
alter domain customer_key validate constraint customer_key_format;
alter domain customer_email validate constraint customer_email_length;
alter domain line_number validate constraint line_number_positive;
alter domain line_quantity validate constraint line_quantity_range;
alter domain order_total validate constraint order_total_positive;
alter domain line_price validate constraint line_price_positive;
alter domain event_type validate constraint event_type_known;
