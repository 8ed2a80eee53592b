"""Package ``boutique.v1``: the boutique's events and its newer services, and their stubs."""
