"""The schema extension through which the fast path learns documents: after the normal
executor validated one without errors (every validation rule, limiter and the introspection
switch of the schema included), the fast path plans it for its next requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from strawberry.extensions import SchemaExtension

if TYPE_CHECKING:
    from fastpath.endpoint import FastPath


class LearnDocuments(SchemaExtension):
    def __init__(self, fast_path: FastPath) -> None:
        self.fast_path = fast_path

    def on_validate(self) -> Iterator[None]:
        yield
        execution = self.execution_context
        if execution.pre_execution_errors:
            return
        self.fast_path.learn(
            execution.schema._schema,
            execution.query,
            execution.operation_name,
            execution.graphql_document,
        )
