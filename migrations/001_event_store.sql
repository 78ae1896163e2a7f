-- The event log: the source of truth.
--
-- tx_id is the id of the writing transaction (pg_current_xact_id). Tailers
-- read only rows whose tx_id is below the oldest transaction still running
-- (pg_snapshot_xmin) and order by (tx_id, seq), so an event that commits late
-- is never skipped. Appenders take the advisory locks of every stream they
-- write before their first write, so a stream's writers get increasing tx_ids
-- and every stream reads back in version order.
create table events (
    seq            bigint generated always as identity primary key,
    tx_id          bigint not null default (pg_current_xact_id()::text::bigint),
    event_id       uuid not null unique,
    stream_id      text not null check (stream_id <> ''),
    version        bigint not null check (version > 0),
    type           text not null check (type <> ''),
    schema_version int not null check (schema_version > 0),
    data           jsonb not null,
    metadata       jsonb not null default '{}',
    recorded_at    timestamptz not null default now(),
    unique (stream_id, version)
);

create index events_global_order on events (tx_id, seq);

-- One row per command id that appended: a retried command returns this result
-- instead of appending again; fingerprint tells a retry from a different
-- command that reused the id.
create table commands (
    command_id  text primary key,
    fingerprint text not null,
    result      jsonb not null,
    recorded_at timestamptz not null default now()
);

-- A transaction left open holds every tailer back: cut idle ones.
do $$
begin
    execute format('alter database %I set idle_in_transaction_session_timeout = %L',
                   current_database(), '60s');
end
$$;

-- orderflow_append appends a batch of independent appends in one transaction
-- and one round trip. batch is a JSON array of
--   {"cmd": command id or "", "fp": fingerprint,
--    "streams": [{"id": stream, "exp": -1 any | 0 no stream | n exact,
--                 "events": [{"id": uuid, "type", "sv": schema version,
--                             "data": {...}, "meta": {...}}]}]}
-- It returns one result per append, in order:
--   {"s":"ok","r":{"streams":[{"id","version"}]}}        appended
--   {"s":"dup","r":{...}}                                 command id seen, same fingerprint: first result
--   {"s":"reused"}                                        command id seen with another fingerprint
--   {"s":"conflict","stream","expected","actual"}         an expected version did not hold
-- A failed append writes nothing and does not affect the others.
create function orderflow_append(batch jsonb) returns jsonb
language plpgsql as $$
declare
    k        bigint;
    a        jsonb;
    s        jsonb;
    res      jsonb := '[]';
    prior    record;
    failed   jsonb;
    cur      bigint;
    exp      bigint;
    curs     bigint[];
    i        int;
    n        bigint;
    versions jsonb;
begin
    -- Every lock of the batch, in one sorted order, before the first write.
    for k in
        select distinct hashtextextended(key, 0)
        from (
            select 's/' || (st->>'id')
            from jsonb_array_elements(batch) ap, jsonb_array_elements(ap->'streams') st
            union all
            select 'c/' || (ap->>'cmd')
            from jsonb_array_elements(batch) ap
            where coalesce(ap->>'cmd', '') <> ''
        ) keys(key)
        order by 1
    loop
        perform pg_advisory_xact_lock(k);
    end loop;

    for a in select value from jsonb_array_elements(batch) loop
        if coalesce(a->>'cmd', '') <> '' then
            select c.fingerprint, c.result into prior from commands c where c.command_id = a->>'cmd';
            if found then
                if prior.fingerprint = a->>'fp' then
                    res := res || jsonb_build_array(jsonb_build_object('s', 'dup', 'r', prior.result));
                else
                    res := res || jsonb_build_array(jsonb_build_object('s', 'reused'));
                end if;
                continue;
            end if;
        end if;

        failed := null;
        curs := '{}';
        for s in select value from jsonb_array_elements(a->'streams') loop
            select coalesce(max(e.version), 0) into cur from events e where e.stream_id = s->>'id';
            exp := (s->>'exp')::bigint;
            if exp >= 0 and cur <> exp then
                failed := jsonb_build_object('s', 'conflict', 'stream', s->>'id', 'expected', exp, 'actual', cur);
                exit;
            end if;
            curs := curs || cur;
        end loop;
        if failed is not null then
            res := res || jsonb_build_array(failed);
            continue;
        end if;

        versions := '[]';
        i := 0;
        for s in select value from jsonb_array_elements(a->'streams') loop
            i := i + 1;
            insert into events (event_id, stream_id, version, type, schema_version, data, metadata)
            select (e->>'id')::uuid, s->>'id', curs[i] + x.ord, e->>'type', (e->>'sv')::int,
                   e->'data', coalesce(e->'meta', '{}')
            from jsonb_array_elements(s->'events') with ordinality as x(e, ord);
            get diagnostics n = row_count;
            versions := versions || jsonb_build_array(jsonb_build_object('id', s->>'id', 'version', curs[i] + n));
        end loop;

        if coalesce(a->>'cmd', '') <> '' then
            insert into commands (command_id, fingerprint, result)
            values (a->>'cmd', coalesce(a->>'fp', ''), jsonb_build_object('streams', versions));
        end if;
        res := res || jsonb_build_array(jsonb_build_object('s', 'ok', 'r', jsonb_build_object('streams', versions)));
    end loop;
    return res;
end
$$;

---- create above / drop below ----

drop function orderflow_append(jsonb);
drop table commands;
drop table events;
