-- An order's deadline is recorded by the transaction that places it, not
-- later by a consumer of OrderPlaced: until now an order placed while the
-- relay or Kafka was down, or before the saga's consumer caught up, had no
-- deadline row, so the scheduler could not cancel it however long it stayed
-- pending. The row is an index of the log: a statement-level trigger on
-- events takes it from every OrderPlaced that has a deadline_at, in the same
-- transaction as the append (one INSERT per batch, whatever its size).
--
-- Only what the saga can read is taken: schema version 1, a UUID order id and
-- an RFC 3339 deadline with its zone, as orderflow writes them. An event the
-- trigger cannot read gets no deadline and still appends; the saga parks it
-- as it would any undecodable event. A second OrderPlaced of an order keeps
-- the first deadline.
create function orderflow_placed_deadlines(placed jsonb, schema_version int, out order_id uuid, out due_at timestamptz)
language sql stable as $$
    select (placed->>'order_id')::uuid, (placed->>'deadline_at')::timestamptz
    where schema_version = 1
      and placed->>'order_id' ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
      and jsonb_typeof(placed->'deadline_at') = 'string'
      and placed->>'deadline_at' ~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$'
$$;

create function orderflow_record_deadlines() returns trigger
language plpgsql as $$
begin
    insert into saga_deadlines (order_id, due_at)
    select d.order_id, d.due_at
    from placed_events e, orderflow_placed_deadlines(e.data, e.schema_version) d
    where e.type = 'OrderPlaced' and e.data ? 'deadline_at' and d.order_id is not null
    on conflict (order_id) do nothing;
    return null;
end
$$;

create trigger events_record_deadlines
    after insert on events
    referencing new table as placed_events
    for each statement execute function orderflow_record_deadlines();

-- Orders placed before this migration whose OrderPlaced the saga has not
-- consumed yet.
insert into saga_deadlines (order_id, due_at)
select d.order_id, d.due_at
from events e, orderflow_placed_deadlines(e.data, e.schema_version) d
where e.type = 'OrderPlaced' and e.data ? 'deadline_at' and d.order_id is not null
on conflict (order_id) do nothing;

---- create above / drop below ----

drop trigger events_record_deadlines on events;
drop function orderflow_record_deadlines();
drop function orderflow_placed_deadlines(jsonb, int);
