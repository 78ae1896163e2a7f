-- Read views and the bookkeeping of the projections that keep them.

-- The last version of each stream a projection applied. A view row and its
-- checkpoint commit in one transaction.
create table projection_checkpoints (
    projection text not null,
    stream_id  text not null,
    version    bigint not null,
    primary key (projection, stream_id)
);

-- Streams a projection stopped applying because an event kept failing.
create table projection_parked (
    projection text not null,
    stream_id  text not null,
    version    bigint not null,
    error      text not null,
    parked_at  timestamptz not null default now(),
    primary key (projection, stream_id)
);

-- A rebuild in progress (or interrupted): where its replay of the log stands.
create table projection_rebuilds (
    projection text primary key,
    tx_id      bigint not null default 0,
    seq        bigint not null default 0,
    applied    bigint not null default 0,
    started_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- Projections that have been built at least once (a new one backfills).
create table projection_builds (
    projection text primary key,
    built_at   timestamptz not null default now()
);

create table order_details (
    order_id      uuid primary key,
    customer_id   text not null,
    status        text not null,
    lines         jsonb not null,
    total_cents   bigint not null,
    placed_at     timestamptz not null,
    updated_at    timestamptz not null,
    cancel_reason text not null default '',
    version       bigint not null
);

create table orders_by_customer (
    customer_id text not null,
    order_id    uuid not null,
    status      text not null,
    total_cents bigint not null,
    placed_at   timestamptz not null,
    version     bigint not null,
    primary key (customer_id, order_id)
);
-- Newest first, ties by order id: the order of GET /v1/orders pages.
create index orders_by_customer_page on orders_by_customer (customer_id, placed_at desc, order_id desc);

create table stock (
    sku        text primary key,
    on_hand    bigint not null,
    reserved   bigint not null,
    updated_at timestamptz not null,
    version    bigint not null
);

create table sales_orders (
    order_id    uuid primary key,
    day         date not null,
    total_cents bigint not null,
    status      text not null,
    version     bigint not null
);

create table daily_sales (
    day              date primary key,
    orders_placed    bigint not null default 0,
    placed_cents     bigint not null default 0,
    orders_cancelled bigint not null default 0,
    cancelled_cents  bigint not null default 0
);

---- create above / drop below ----

drop table daily_sales;
drop table sales_orders;
drop table stock;
drop table orders_by_customer;
drop table order_details;
drop table projection_builds;
drop table projection_rebuilds;
drop table projection_parked;
drop table projection_checkpoints;
