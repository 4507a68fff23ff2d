DROP INDEX orders_account;
ALTER TABLE orders DROP COLUMN account_id;
DROP INDEX appointments_account;
ALTER TABLE appointments DROP COLUMN account_id;
DROP TABLE accounts;
