"""CheckoutService: places an order across cart, catalog, currency, payment, shipping, email."""
