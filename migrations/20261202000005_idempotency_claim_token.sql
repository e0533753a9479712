-- Each claim of an idempotency key gets a token of its own. A request
-- completes (or releases) its key only while the key still carries its
-- token: after a stale claim is taken over by a retry, the first request, if
-- it is still running, can no longer sell or overwrite the retry's outcome.
alter table idempotency_key add column claim_token uuid;
