"""ProductCatalogService: the shop's nine products, lookup and search."""
