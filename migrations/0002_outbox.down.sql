-- Rollback of 0002_outbox.up.sql.
DROP TABLE job_effects;
DROP TABLE outbox;
