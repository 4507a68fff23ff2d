CREATE INDEX appointments_active_by_email
    ON appointments (lower(customer_email))
    WHERE status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED');
CREATE INDEX appointments_active_by_phone
    ON appointments (regexp_replace(customer_phone, '[^0-9]', '', 'g'))
    WHERE status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED');
