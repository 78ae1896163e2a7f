-- The saga timeline view (projection saga_timeline): where each order's saga
-- stands, and every event of its order-, reservation- and payment- streams.

-- One row per order. Each column group comes from one stream, whose last
-- applied version it records: status, reason, placed_at and deadline_at from
-- the order stream; inventory from the reservation stream; payment from the
-- payment stream. The streams arrive on different topics, so a row may exist
-- before its OrderPlaced is applied: status '' and placed_at null until then.
create table saga_orders (
    order_id            uuid primary key,
    status              text not null default '',  -- '', pending, confirmed, rejected, cancelled
    reason              text not null default '',
    placed_at           timestamptz,
    deadline_at         timestamptz,                -- null: no deadline
    updated_at          timestamptz not null default now(),
    inventory           text not null default '',  -- '', reserved, rejected, committed, released
    payment             text not null default '',  -- '', captured, failed, refunded
    version_order       bigint not null default 0,
    version_reservation bigint not null default 0,
    version_payment     bigint not null default 0
);
-- Stuck sagas: pending past their deadline, oldest deadline first, ties by
-- order id (the keyset of GET /v1/sagas?state=stuck pages).
create index saga_orders_stuck on saga_orders (status, deadline_at, order_id);

create table saga_steps (
    order_id       uuid not null,
    stream_id      text not null,
    version        bigint not null,
    event_type     text not null,
    recorded_at    timestamptz not null,
    event_id       text not null default '',
    correlation_id text not null default '',
    causation_id   text not null default '',
    primary key (order_id, stream_id, version)
);

---- create above / drop below ----

drop table saga_steps;
drop table saga_orders;
