-- Rollback of 0001_showrooms.up.sql.
DROP TABLE showrooms;
