"""Ground-level observability: Prometheus metric objects every layer may import."""
