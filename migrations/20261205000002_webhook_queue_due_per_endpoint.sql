-- Deliveries are claimed endpoint by endpoint (each endpoint's earliest due
-- rows first, so one endpoint's backlog cannot hold back the others'): the
-- due rows are found per endpoint, in due order.
drop index webhook_queue_due_idx;
create index webhook_queue_due_idx on webhook_queue (manager_id, webhook_id, due_at, id);
