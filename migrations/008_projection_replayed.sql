-- The log position up to which a projection's tables hold every event: the
-- end of the replay of its last rebuild. Its checkpoint table then needs
-- rows only for streams applied past that position; a stream without a row
-- stands at its last version at or before it. A rebuild no longer writes a
-- checkpoint row for every stream of the log (for a million events, that
-- derive step was a fifth of the rebuild), and its swap no longer compares
-- two whole checkpoint tables under the exclusive lock. (0, 0): nothing
-- replayed; every applied stream has its row, as before this migration.
alter table projection_builds
    add column replayed_tx_id bigint not null default 0,
    add column replayed_seq   bigint not null default 0;

---- create above / drop below ----

-- Going back needs every stream's row again: each stream's last version up
-- to the replayed position, where it has none.
do $$
declare
    p record;
begin
    for p in select * from (values
        ('order_details', array['order-%']),
        ('orders_by_customer', array['order-%']),
        ('stock', array['sku-%']),
        ('daily_sales', array['order-%']),
        ('saga_timeline', array['order-%', 'reservation-%', 'payment-%'])) as v(projection, patterns)
    loop
        execute format('insert into %I (stream_id, version)
            select e.stream_id, max(e.version) from events e join projection_builds b on b.projection = %L
            where e.stream_id like any (%L::text[]) and (e.tx_id, e.seq) <= (b.replayed_tx_id, b.replayed_seq)
            group by e.stream_id
            on conflict (stream_id) do nothing', p.projection || '_checkpoints', p.projection, p.patterns);
    end loop;
end $$;
alter table projection_builds drop column replayed_tx_id, drop column replayed_seq;
