-- The per-customer cap's count (LOMASH_BOOKING_MAX_ACTIVE_PER_CUSTOMER) looks a
-- customer up by e-mail address and by phone digits, and only at bookings still ahead:
-- these indexes lead with the customer and bound the time, over every row (not only
-- the active ones), so the count's plan cannot depend on how many bookings the
-- statistics think are active. With the partial indexes of 0004, the planner walked
-- every active future booking instead (through appointments_active_starts or the
-- exclusion constraint's GiST, both partial and estimated nearly empty until the next
-- ANALYZE): each booking cost a scan of all the active ones, and the count took most
-- of the database time of a booking run (auto_explain: 7-9 s of statement time in an
-- 8 s run, 3,000 rows filtered per lookup by its end). 0012 drops the 0004 indexes.
CREATE INDEX appointments_by_email_starts
    ON appointments (lower(customer_email), starts_at);
CREATE INDEX appointments_by_phone_starts
    ON appointments (regexp_replace(customer_phone, '[^0-9]', '', 'g'), starts_at);
