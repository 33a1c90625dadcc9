"""The HTTP edge that app.py wires together: request ids, logging, the GraphQL view, health."""
