-- A scheduler claims due deadlines in a statement of its own (claimed_at)
-- and fires them afterwards, instead of holding row locks while it appends:
-- a transaction holding an id keeps every newer event from the relay, so
-- firing a hundred deadlines inside one stalled the whole system. A claim
-- older than the lease (a scheduler that died) is taken again; the append
-- that fires a deadline is idempotent.
alter table saga_deadlines add column claimed_at timestamptz;

---- create above / drop below ----

alter table saga_deadlines drop column claimed_at;
