-- Since when every delivery attempt to the endpoint has failed (null after a
-- success, and before any failure): an endpoint failing for
-- WEBHOOK_DISABLE_AFTER_HOURS is disabled.
alter table webhook add column failing_since timestamptz;
