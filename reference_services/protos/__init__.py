"""Protocol buffers of the boutique (package ``hipstershop``) and their generated stubs."""
