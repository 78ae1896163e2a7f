-- Saga deadlines: an order still pending at due_at is cancelled with reason
-- "timeout". A row is written when the order participant sees OrderPlaced;
-- the scheduler fires each once (row locks with skip locked, and an
-- idempotent command id if a firing instance dies half-way).
create table saga_deadlines (
    order_id uuid primary key,
    due_at   timestamptz not null,
    fired_at timestamptz
);

create index saga_deadlines_due on saga_deadlines (due_at) where fired_at is null;

---- create above / drop below ----

drop table saga_deadlines;
