"""ShippingService: shipping quotes and tracking ids."""
