"""The HTTP gateway: the service's face to customers and ops."""
