-- An order's deadline is recorded by the transaction that places it, not
-- later by a consumer of OrderPlaced: until now an order placed while the
-- relay or Kafka was down, or before the saga's consumer caught up, had no
-- deadline row, so the scheduler could not cancel it however long it stayed
-- pending. The row is an index of the log: a statement-level trigger on
-- events takes it from every OrderPlaced that has a deadline_at, in the same
-- transaction as the append (one INSERT per batch, whatever its size).
create function orderflow_record_deadlines() returns trigger
language plpgsql as $$
begin
    insert into saga_deadlines (order_id, due_at)
    select (data->>'order_id')::uuid, (data->>'deadline_at')::timestamptz
    from placed_events
    where type = 'OrderPlaced' and data ? 'deadline_at'
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
select (data->>'order_id')::uuid, (data->>'deadline_at')::timestamptz
from events
where type = 'OrderPlaced' and data ? 'deadline_at'
on conflict (order_id) do nothing;

---- create above / drop below ----

drop trigger events_record_deadlines on events;
drop function orderflow_record_deadlines();
