"""The GraphQL schema: Strawberry types, inputs, enums, error results, and `build_schema`."""

from schema.build import build_schema

__all__ = ["build_schema"]
