"""NotificationService: tells customers about their orders, from the boutique's events."""
