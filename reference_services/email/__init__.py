"""EmailService: renders an order confirmation and logs it (the demo sends no mail)."""
