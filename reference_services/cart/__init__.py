"""CartService: each shopper's cart, kept in a durable store."""
