-- /metrics counts the last 24 hours of notification attempts by provider and outcome
-- (lomash_notifications_24h): an index on the attempt time keeps that a range scan.
CREATE INDEX notification_logs_attempted ON notification_logs (attempted_at);
