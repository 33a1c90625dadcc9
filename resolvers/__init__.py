"""Thin resolvers and per-request dataloaders: parse the arguments, call a service, map."""
