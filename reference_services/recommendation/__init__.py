"""RecommendationService: a few other products from the catalog."""
