"""PaymentService: validates a card and charges it (no money moves in the demo)."""
