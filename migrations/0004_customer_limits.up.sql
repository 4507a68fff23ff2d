-- The per-customer cap on active bookings (LOMASH_BOOKING_MAX_ACTIVE_PER_CUSTOMER):
-- counted by e-mail address and by phone number (digits only) inside the booking
-- transaction, so these lookups must be index scans.
CREATE INDEX appointments_active_by_email
    ON appointments (lower(customer_email))
    WHERE status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED');
CREATE INDEX appointments_active_by_phone
    ON appointments (regexp_replace(customer_phone, '[^0-9]', '', 'g'))
    WHERE status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED');
