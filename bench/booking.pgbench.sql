-- One booking as a pgbench transaction: the ceiling for bench/booking.py.
-- The same four statements the peer (bench/peers/fastapi_booking.py) runs in one
-- transaction: claim the idempotency key, insert the appointment (the EXCLUDE
-- constraint decides), store the response, and for a booking add the outbox row.
-- Run with -M prepared (asyncpg prepares its statements too) and these -D variables:
--   n=0 (the per-client transaction counter), clients (-c), offset (first slot),
--   slots (0: every transaction its own slot; k: all of them on k slots),
--   consultants, base (epoch of slot hour 0), tag (run number, keeps keys unique).
-- Slot g is consultant g % consultants at hour g / consultants after base, the
-- numbering the wrk script (bench/booking.lua) uses.
\set n :n + 1
\set seq (:n - 1) * :clients + :client_id
\if :slots > 0
\set g :offset + :seq % :slots
\else
\set g :offset + :seq
\endif
\set c :g % :consultants
\set t :base + (:g / :consultants) * 3600
\set key :tag * 1000000000 + :seq
BEGIN;
INSERT INTO idempotency_keys (key, request_hash, status, response)
VALUES ('pgb-' || :key::text, sha256(('body-' || :key::text)::bytea), 0, '')
ON CONFLICT DO NOTHING RETURNING key;
WITH inserted AS (
    INSERT INTO appointments (id, reference, type, category, status, consultant_id,
        showroom_id, starts_at, ends_at, customer_name, customer_email, customer_phone,
        customer_postcode, customer_address, notes, manage_token_hash)
    VALUES (md5('pgb-' || :key::text)::uuid, 'LW-' || upper(to_hex(:key::bigint)), 'ONLINE',
        'KITCHEN', 'CONFIRMED', 'bench-c' || lpad(:c::text, 2, '0'), NULL,
        to_timestamp(:t), to_timestamp(:t) + interval '1 hour', 'Ada Lovelace',
        'ada@example.com', '+44 7700 900123', 'SW1A 1AA', NULL, 'bench',
        sha256(('token-' || :key::text)::bytea))
    ON CONFLICT DO NOTHING RETURNING id
)
SELECT count(*) AS booked FROM inserted
\gset
\if :booked
UPDATE idempotency_keys SET status = 201, response = '{"id": "'
    || md5('pgb-' || :key::text)::uuid::text || '", "reference": "LW-'
    || upper(to_hex(:key::bigint)) || '", "status": "CONFIRMED", "type": "ONLINE", '
    || '"category": "KITCHEN", "consultant_id": "bench-c' || lpad(:c::text, 2, '0')
    || '", "showroom_id": null, "start": "' || to_timestamp(:t)::text || '", "end": "'
    || (to_timestamp(:t) + interval '1 hour')::text || '", "customer": {"name": '
    || '"Ada Lovelace", "email": "ada@example.com", "phone": "+44 7700 900123", '
    || '"postcode": "SW1A 1AA", "address": null}, "notes": "bench", "manage_token": '
    || '"Qm9va2luZ0JlbmNoTWFuYWdlVG9rZW4xMjM0NTY3"}'
WHERE key = 'pgb-' || :key::text;
INSERT INTO outbox (job_id, queue, kind, payload)
VALUES ('pgb-' || :key::text, 'notifications', 'appointment.confirmed',
    ('{"appointment_id": "' || md5('pgb-' || :key::text)::uuid::text
    || '", "reference": "LW-' || upper(to_hex(:key::bigint)) || '"}')::jsonb);
\else
UPDATE idempotency_keys SET status = 409,
    response = '{"error": {"code": "slot_taken", "message": "That slot has just been booked."}}'
WHERE key = 'pgb-' || :key::text;
\endif
COMMIT;
