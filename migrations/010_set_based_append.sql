-- orderflow_append, set-based: the same contract as in 001 (see there), in
-- a handful of statements per batch instead of five or six per append.
--
-- 001 ran, for every append, a lookup of its command id, a max(version) per
-- stream, an INSERT per stream and an INSERT of the command, each a
-- statement with its own executor start-up; at 500 sagas/s that was most of
-- PostgreSQL's CPU (about 0.3 ms per append, a batch of 30 took 8-10 ms).
-- Now one statement takes every lock, one reads the command ids stored
-- before, one the current version of every stream, and the appends are
-- decided in memory, in order, each seeing what the earlier ones of the
-- batch did (a version they moved, a command id they took), exactly as when
-- they ran one after the other. Then one INSERT writes every event, in
-- append order, and one every command.
create or replace function orderflow_append(batch jsonb) returns jsonb
language plpgsql as $$
declare
    n        int := jsonb_array_length(batch);
    a        jsonb;
    s        jsonb;
    e        jsonb;
    cmd      text;
    fp       text;
    prior    jsonb;  -- command id -> {"fp", "r"}: stored before, or taken earlier in this batch
    cur      jsonb;  -- stream id -> its current version, moved by earlier appends of the batch
    res      jsonb[] := '{}';
    failed   jsonb;
    exp      bigint;
    v        bigint;
    versions jsonb;
    -- the rows to insert, column by column, in order
    e_ids    uuid[] := '{}';
    e_stream text[] := '{}';
    e_ver    bigint[] := '{}';
    e_type   text[] := '{}';
    e_sv     int[] := '{}';
    e_data   jsonb[] := '{}';
    e_meta   jsonb[] := '{}';
    c_ids    text[] := '{}';
    c_fps    text[] := '{}';
    c_res    jsonb[] := '{}';
begin
    -- Every lock of the batch, in one sorted order, before the first write.
    perform count(pg_advisory_xact_lock(k)) from (
        select distinct hashtextextended(key, 0) as k
        from (
            select 's/' || (st->>'id')
            from jsonb_array_elements(batch) ap, jsonb_array_elements(ap->'streams') st
            union all
            select 'c/' || (ap->>'cmd')
            from jsonb_array_elements(batch) ap
            where coalesce(ap->>'cmd', '') <> ''
        ) keys(key)
        order by 1
    ) sorted;

    select coalesce(jsonb_object_agg(c.command_id, jsonb_build_object('fp', c.fingerprint, 'r', c.result)), '{}')
    into prior
    from commands c
    where c.command_id in (select ap->>'cmd' from jsonb_array_elements(batch) ap where coalesce(ap->>'cmd', '') <> '');

    -- One max(version) per stream: each an index probe from the top.
    select coalesce(jsonb_object_agg(id, m) filter (where m is not null), '{}')
    into cur
    from (select ids.id, (select max(ev.version) from events ev where ev.stream_id = ids.id) as m
          from (select distinct st->>'id' as id
                from jsonb_array_elements(batch) ap, jsonb_array_elements(ap->'streams') st) ids) t;

    for i in 0 .. n - 1 loop
        a := batch->i;
        cmd := coalesce(a->>'cmd', '');
        fp := coalesce(a->>'fp', '');
        if cmd <> '' and prior ? cmd then
            if prior->cmd->>'fp' = fp then
                res := res || jsonb_build_object('s', 'dup', 'r', prior->cmd->'r');
            else
                res := res || '{"s":"reused"}'::jsonb;
            end if;
            continue;
        end if;

        failed := null;
        for j in 0 .. jsonb_array_length(a->'streams') - 1 loop
            s := a->'streams'->j;
            v := coalesce((cur->>(s->>'id'))::bigint, 0);
            exp := (s->>'exp')::bigint;
            if exp >= 0 and v <> exp then
                failed := jsonb_build_object('s', 'conflict', 'stream', s->>'id', 'expected', exp, 'actual', v);
                exit;
            end if;
        end loop;
        if failed is not null then
            res := res || failed;
            continue;
        end if;

        versions := '[]';
        for j in 0 .. jsonb_array_length(a->'streams') - 1 loop
            s := a->'streams'->j;
            v := coalesce((cur->>(s->>'id'))::bigint, 0);
            for x in 0 .. jsonb_array_length(s->'events') - 1 loop
                e := s->'events'->x;
                v := v + 1;
                e_ids := e_ids || (e->>'id')::uuid;
                e_stream := e_stream || (s->>'id');
                e_ver := e_ver || v;
                e_type := e_type || (e->>'type');
                e_sv := e_sv || (e->>'sv')::int;
                e_data := e_data || (e->'data');
                e_meta := e_meta || coalesce(e->'meta', '{}');
            end loop;
            cur := jsonb_set(cur, array[s->>'id'], to_jsonb(v));
            versions := versions || jsonb_build_object('id', s->>'id', 'version', v);
        end loop;

        if cmd <> '' then
            c_ids := c_ids || cmd;
            c_fps := c_fps || fp;
            c_res := c_res || jsonb_build_object('streams', versions);
            prior := jsonb_set(prior, array[cmd], jsonb_build_object('fp', fp, 'r', jsonb_build_object('streams', versions)));
        end if;
        res := res || jsonb_build_object('s', 'ok', 'r', jsonb_build_object('streams', versions));
    end loop;

    if cardinality(e_ids) > 0 then
        insert into events (event_id, stream_id, version, type, schema_version, data, metadata)
        select * from unnest(e_ids, e_stream, e_ver, e_type, e_sv, e_data, e_meta);
    end if;
    if cardinality(c_ids) > 0 then
        insert into commands (command_id, fingerprint, result)
        select * from unnest(c_ids, c_fps, c_res);
    end if;
    return to_jsonb(res);
end
$$;

---- create above / drop below ----

-- Back to 001's function, statement by statement.
create or replace function orderflow_append(batch jsonb) returns jsonb
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
