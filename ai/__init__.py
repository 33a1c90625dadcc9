"""Language-model providers and the router that picks, retries and falls back.

The embedded default is `offline_writer`: a deterministic course writer that needs no network.
"""
