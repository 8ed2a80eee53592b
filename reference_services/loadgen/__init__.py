"""Load generator for the web shop: Locust visitors following the BOUTIQUE.md mix."""
