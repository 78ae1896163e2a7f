-- The log's safe horizon counts only the transactions that write events.
--
-- Tailers used to read below pg_snapshot_xmin, the oldest transaction still
-- running anywhere in the cluster. Every writing transaction counts there: a
-- projector's view update, a saga's bookkeeping, a rebuild's swap, even one
-- in another database. Each of them held the relay back until it ended; under
-- load, the projectors' own transactions (tens of milliseconds each) made up
-- most of the time from append to Kafka.
--
-- Now a transaction that writes events announces it: before its first row in
-- events, and before it holds a transaction id, it takes a shared advisory
-- lock, held until it has ended (committed or rolled back). The horizon is
-- the oldest transaction still running that holds that lock, or the
-- snapshot's xmax if none does. Nothing else holds tailers back.
--
-- Why no event is skipped: a reader's statement takes its snapshot S first.
-- An event-writing transaction X that S does not see is either newer than S
-- (X >= xmax(S), above any horizon) or in S's list of running transactions.
-- In the latter case the horizon looks up the writers a moment later: if X
-- still runs, it still holds the lock it took before it had its id, and its
-- id is read from the server's process array, which has it from the moment
-- it was assigned. If X has ended by then, a still later look at the
-- transactions of S's list finds it no longer 'in progress', and it counts
-- all the same (conservatively: it might not have been a writer). So every
-- writer S cannot see bounds the horizon, and the events below it are final.
-- The order of the two looks is what makes it safe.

-- The lock's key.
create function orderflow_event_writer_key() returns bigint
language sql immutable as $$ select hashtextextended('orderflow.event-writer', 0) $$;

-- orderflow_event_writer makes the current transaction an event writer. It
-- must come before the transaction's first write: a transaction that already
-- holds an id could be past a reader's horizon, so it is refused. Called
-- again in the same transaction it does nothing.
create function orderflow_event_writer() returns void
language plpgsql as $$
begin
    if current_setting('orderflow.event_writer', true) = 'on' then
        return;
    end if;
    if pg_current_xact_id_if_assigned() is not null then
        raise exception 'orderflow: a transaction must write events before anything else'
            using errcode = '55000',
                  hint = 'Append in a transaction of its own (orderflow_append does), or write the events first.';
    end if;
    perform pg_advisory_xact_lock_shared(orderflow_event_writer_key());
    perform set_config('orderflow.event_writer', 'on', true);
end
$$;

-- Every statement that inserts events goes through it, whoever runs it.
create function orderflow_events_insert() returns trigger
language plpgsql as $$
begin
    perform orderflow_event_writer();
    return null;
end
$$;

create trigger events_writer before insert on events
    for each statement execute function orderflow_events_insert();

-- orderflow_log_horizon returns the transaction id below which the log is
-- final for the calling statement's snapshot: events with a smaller tx_id
-- are all visible to it, and none will commit later. Call it as a
-- scalar subquery, (select orderflow_log_horizon()), so it runs once. It is
-- stable, so it sees the caller's snapshot, and it must be: the argument
-- above needs the snapshot taken before the writers are looked up.
create function orderflow_log_horizon() returns bigint
language plpgsql stable as $$
declare
    snap    pg_snapshot := pg_current_snapshot();
    key     bigint := orderflow_event_writer_key();
    writers bigint[];
    h       bigint;
begin
    if not exists (select 1 from pg_snapshot_xip(snap)) then
        return pg_snapshot_xmax(snap)::text::bigint;
    end if;
    -- First the writers (their ids, 32 bits wide), then, in a later
    -- statement, which transactions have ended: a writer that ends between
    -- the two is then counted as ended, never missed.
    --
    -- pg_stat_activity is cached for the rest of the transaction once read;
    -- a caller in a longer transaction must see the writers of now.
    perform pg_stat_clear_snapshot();
    writers := array(
        select a.backend_xid::text::bigint
        from pg_locks l join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory'
          and l.database = (select oid from pg_database where datname = current_database())
          and l.classid = ((key >> 32) & 4294967295)::text::oid
          and l.objid = (key & 4294967295)::text::oid
          and l.objsubid = 1
          and a.backend_xid is not null);
    select min(x::text::bigint) into h
    from pg_snapshot_xip(snap) x
    where x::text::bigint % 4294967296 = any (writers)
       or pg_xact_status(x) <> 'in progress';
    return coalesce(h, pg_snapshot_xmax(snap)::text::bigint);
end
$$;

---- create above / drop below ----

drop function orderflow_log_horizon();
drop trigger events_writer on events;
drop function orderflow_events_insert();
drop function orderflow_event_writer();
drop function orderflow_event_writer_key();
