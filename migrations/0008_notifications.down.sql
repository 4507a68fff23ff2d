DROP TABLE failed_messages;
DROP TABLE notification_logs;
