"""The boutique's own protocol buffers (package ``boutique``), by version."""
