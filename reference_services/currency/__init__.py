"""CurrencyService: supported currencies and conversion through EUR."""
