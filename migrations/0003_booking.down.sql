DROP TABLE idempotency_keys;
DROP TABLE appointments;
DROP TABLE consultant_blocked_days;
DROP TABLE consultant_hours;
DROP TABLE consultants;
ALTER TABLE showrooms DROP COLUMN email;
ALTER TABLE showrooms DROP COLUMN phone;
