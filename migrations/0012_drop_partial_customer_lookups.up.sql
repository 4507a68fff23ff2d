-- Second phase of 0011: the cap's count reads the customer indexes of 0011; nothing
-- reads these (an index is named by no query, so the code before 0011 runs as well).
-- lomash: phase 2 of 0011_customer_lookups
DROP INDEX appointments_active_by_phone;
DROP INDEX appointments_active_by_email;
