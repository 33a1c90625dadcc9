"""Routes a GraphQL operation's reads (replicas/routing.py): a query asking only for the
dashboard and course pages reads from a replica; a mutation, once done, marks its user's write
so that the user's next reads see it. Everything else reads the primary as before."""

from __future__ import annotations

from collections.abc import AsyncIterator

from graphql import FieldNode, OperationDefinitionNode, OperationType, get_operation_ast
from strawberry.extensions import SchemaExtension

from replicas import routing

# Root fields served from a replica: the dashboard (`courses` and what hangs off it, through
# the dataloaders), a course page (`course`), and the viewer (already loaded from the primary
# when the token was checked). `syncPull` routes its own snapshot (sync/pull.py): a pull also
# writes. Anything else (jobs, admin) reads the primary.
REPLICA_ROOT_FIELDS = frozenset({"courses", "course", "me", "__typename"})


def _reads_from_replica(operation: OperationDefinitionNode | None) -> bool:
    if operation is None or operation.operation is not OperationType.QUERY:
        return False
    selections = operation.selection_set.selections
    # A fragment at the root is not looked into: the primary answers it.
    return all(isinstance(s, FieldNode) and s.name.value in REPLICA_ROOT_FIELDS for s in selections)


class ReadRouting(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        if routing.replica_set() is None:
            yield
            return
        context = self.execution_context
        viewer = getattr(context.context, "viewer", None)
        user_id = viewer.id if viewer is not None else None
        document = context.graphql_document
        operation = get_operation_ast(document, context.operation_name) if document else None
        if _reads_from_replica(operation):
            async with routing.reads(user_id):
                yield
            return
        yield
        if operation is not None and operation.operation is OperationType.MUTATION:
            await routing.wrote(user_id)
