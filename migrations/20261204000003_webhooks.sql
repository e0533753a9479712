-- Webhook endpoints: where a manager's events are sent, signed with the
-- endpoint's secret, and the log of every delivery attempt.

create sequence webhook_id_seq as bigint;

create table webhook (
    manager_id   text        not null,
    id           bigint      not null default nextval('webhook_id_seq'),
    url          text        not null constraint webhook_url_length check (char_length(url) between 1 and 2000),
    -- Empty: every type.
    event_types  text[]      not null default '{}',
    description  text        constraint webhook_description_length check (char_length(description) <= 500),
    -- The secret's bytes in base64 (the text after `whsec_`). During a
    -- rotation the previous one signs too, until it expires.
    secret       text        not null,
    previous_secret text,
    previous_secret_expires_at timestamptz,
    disabled_at  timestamptz,
    disabled_reason text,
    -- The feed position up to which events have been handed to delivery:
    -- events of the manager with ids above it are still to be sent. Set to
    -- the newest event at registration; a replay moves it back.
    cursor       bigint      not null default 0,
    created_at   timestamptz not null default now(),
    constraint webhook_pkey primary key (manager_id, id),
    constraint webhook_rotation check ((previous_secret is null) = (previous_secret_expires_at is null))
);

alter sequence webhook_id_seq owned by webhook.id;

-- Every delivery attempt, newest first per endpoint.
create sequence webhook_delivery_id_seq as bigint;

create table webhook_delivery (
    manager_id      text        not null,
    id              bigint      not null default nextval('webhook_delivery_id_seq'),
    webhook_id      bigint      not null,
    event_id        bigint      not null,
    attempt         integer     not null constraint webhook_delivery_attempt_positive check (attempt >= 1),
    status_code     smallint,
    error           text        constraint webhook_delivery_error_length check (char_length(error) <= 200),
    at              timestamptz not null default now(),
    duration_ms     integer     not null default 0,
    next_attempt_at timestamptz,
    constraint webhook_delivery_pkey primary key (manager_id, id),
    constraint webhook_delivery_webhook_fkey foreign key (manager_id, webhook_id)
        references webhook (manager_id, id) on delete cascade
);

alter sequence webhook_delivery_id_seq owned by webhook_delivery.id;

create index webhook_delivery_webhook_idx on webhook_delivery (manager_id, webhook_id, id);
