"""UserService: the boutique's accounts, their passwords and their access tokens."""
