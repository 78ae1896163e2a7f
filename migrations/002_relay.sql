-- Where the Kafka relay stands: the position of the last event the broker
-- acknowledged. It moves only after an acknowledgement, so a crash repeats
-- at most the batch in flight (delivery is at least once).
create table relay_checkpoints (
    name       text primary key,
    tx_id      bigint not null default 0,
    seq        bigint not null default 0,
    updated_at timestamptz not null default now()
);

---- create above / drop below ----

drop table relay_checkpoints;
