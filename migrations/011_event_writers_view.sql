-- One definition of the transactions writing events now, for the log's
-- horizon and for orderflow_eventstore_oldest_transaction_seconds: 009
-- spelled the lock lookup out inside orderflow_log_horizon, and the metric's
-- query in Go repeated it, so the two could drift apart unseen.
create view orderflow_event_writers as
select a.pid, a.backend_xid, a.xact_start
from pg_locks l join pg_stat_activity a on a.pid = l.pid
where l.locktype = 'advisory'
  and l.database = (select oid from pg_database where datname = current_database())
  and l.classid = ((orderflow_event_writer_key() >> 32) & 4294967295)::text::oid
  and l.objid = (orderflow_event_writer_key() & 4294967295)::text::oid
  and l.objsubid = 1;

-- The same function as in 009 (see there for why it is safe), reading the
-- writers from the view.
create or replace function orderflow_log_horizon() returns bigint
language plpgsql stable as $$
declare
    snap    pg_snapshot := pg_current_snapshot();
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
    writers := array(select backend_xid::text::bigint from orderflow_event_writers where backend_xid is not null);
    select min(x::text::bigint) into h
    from pg_snapshot_xip(snap) x
    where x::text::bigint % 4294967296 = any (writers)
       or pg_xact_status(x) <> 'in progress';
    return coalesce(h, pg_snapshot_xmax(snap)::text::bigint);
end
$$;

---- create above / drop below ----

-- Back to 009's function, which does the lookup itself.
create or replace function orderflow_log_horizon() returns bigint
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

drop view orderflow_event_writers;
