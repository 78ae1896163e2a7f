-- The horizon also says whether waiting is right.
--
-- A read stops at the oldest transaction of its snapshot that holds it back:
-- an event writer still running, or any transaction that ended between the
-- snapshot and the look at the transactions (009 explains why that one must
-- count: it may have been a writer). A running writer sends a notification when it
-- commits, so a tailer stopped by it rightly waits. One stopped by a
-- transaction that has already ended waits for nothing: nothing more will
-- announce those events (most such transactions wrote none, and the next
-- read passes them), so the tailer slept until the next append or its poll
-- interval, a quarter of a second by default when the log is quiet.
--
-- orderflow_log_bound returns the horizon (the same value as before) and
-- settled: false when an ended transaction set it, so the reader should
-- read again at once instead of waiting. orderflow_log_horizon keeps its
-- contract and reads the horizon from here: one definition.
create function orderflow_log_bound(out horizon bigint, out settled boolean)
language plpgsql stable as $$
declare
    snap    pg_snapshot := pg_current_snapshot();
    writers bigint[];
    running bigint; -- the oldest writer still running
    ended   bigint; -- the oldest transaction that ended after the snapshot
begin
    if not exists (select 1 from pg_snapshot_xip(snap)) then
        horizon := pg_snapshot_xmax(snap)::text::bigint;
        settled := true;
        return;
    end if;
    -- As in 011: first the writers, then, in a later statement, which
    -- transactions have ended, so a writer ending between the two is
    -- counted as ended, never missed.
    perform pg_stat_clear_snapshot();
    writers := array(select backend_xid::text::bigint from orderflow_event_writers where backend_xid is not null);
    select min(x::text::bigint) filter (where x::text::bigint % 4294967296 = any (writers)),
           min(x::text::bigint) filter (where not x::text::bigint % 4294967296 = any (writers)
                                          and pg_xact_status(x) <> 'in progress')
    into running, ended
    from pg_snapshot_xip(snap) x;
    horizon := coalesce(least(running, ended), pg_snapshot_xmax(snap)::text::bigint);
    settled := ended is null or coalesce(running < ended, false);
end
$$;

create or replace function orderflow_log_horizon() returns bigint
language sql stable as $$ select horizon from orderflow_log_bound() $$;

---- create above / drop below ----

-- Back to 011's function.
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

drop function orderflow_log_bound();
