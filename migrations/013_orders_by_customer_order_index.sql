-- orders_by_customer by order id.
--
-- The table is keyed by (customer_id, order_id) and paged by customer, for
-- GET /v1/orders?customer_id=. But a live batch of the projection finds the
-- rows of its orders by order id alone (an OrderConfirmed or OrderCancelled
-- does not carry the customer), and no index led with order_id: every batch
-- read the whole table (or the whole primary key), in proportion to the
-- orders ever placed. At 2,000 orders/s, 22,000 orders in, that lookup took
-- 1.6 ms of each batch's transaction and grew from there.
--
-- Unique: an order belongs to one customer. Building it holds writes to the
-- table back until it is built (a migration runs in a transaction, so not
-- concurrently): seconds for millions of orders.
create unique index orders_by_customer_order on orders_by_customer (order_id);

-- A rebuild interrupted before this migration resumes into its shadow
-- table, which its swap makes the live one: it needs the index too.
do $$
begin
    if to_regclass('orders_by_customer_rebuild') is not null then
        create unique index orders_by_customer_rebuild_order on orders_by_customer_rebuild (order_id);
    end if;
end $$;

---- create above / drop below ----

-- A rebuild's swap renames tables, not their indexes (a shadow is made
-- "like" the live table, its indexes named after it), so the index is found
-- by what it is: unique, on order_id alone.
do $$
declare
    i regclass;
begin
    for i in
        select x.indexrelid::regclass
        from pg_index x
        where x.indrelid in (select to_regclass(t) from unnest(array['orders_by_customer', 'orders_by_customer_rebuild']) t)
          and x.indisunique and x.indnatts = 1
          and x.indkey[0] = (select attnum from pg_attribute where attrelid = x.indrelid and attname = 'order_id')
    loop
        execute format('drop index %s', i);
    end loop;
end $$;
