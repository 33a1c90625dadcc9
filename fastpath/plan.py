"""Which documents the fast path may run, decided once per document.

A document is learned from the normal executor (`LearnDocuments` runs after its validation,
so only documents that passed every validation rule and limiter of the schema are kept) and
checked here: a query whose every field, fragment and directive the fast executor knows. The
verdict is cached by the document's text and operation name; a document it does not know is
remembered as unsupported and always takes the normal path.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.collect_fields import FragmentDetails
from graphql.utilities import get_operation_ast

# Per object type, the fields the fast executor renders (fastpath/render.py). Anything else in
# a document sends the whole document to the normal executor.
SUPPORTED_FIELDS: dict[str, frozenset[str]] = {
    "Query": frozenset({"courses", "course", "me"}),
    "Me": frozenset({"id", "email", "displayName", "tier", "role"}),
    "CourseConnection": frozenset({"totalCount", "pageInfo", "edges", "nodes"}),
    "PageInfo": frozenset({"hasNextPage", "endCursor"}),
    "CourseEdge": frozenset({"cursor", "node"}),
    "Course": frozenset(
        {
            "id",
            "title",
            "description",
            "level",
            "language",
            "status",
            "version",
            "createdAt",
            "updatedAt",
            "owner",
            "members",
            "viewerAccess",
            "subjects",
        }
    ),
    "Member": frozenset({"role", "addedAt", "user"}),
    "User": frozenset({"id", "displayName"}),
    "Subject": frozenset({"id", "courseId", "position", "title", "summary", "topics"}),
    "Topic": frozenset(
        {
            "id",
            "subjectId",
            "courseId",
            "position",
            "title",
            "objectives",
            "content",
            "estimatedMinutes",
            "progress",
            "bookmarked",
            "notes",
        }
    ),
    "Progress": frozenset({"completed", "completedAt", "score"}),
    "Note": frozenset({"id", "topicId", "body", "version", "createdAt", "updatedAt"}),
}
CONDITIONAL_DIRECTIVES = frozenset({"include", "skip"})


@dataclass(frozen=True, slots=True)
class Plan:
    """A supported document, parsed and validated once: what each request starts from."""

    document: DocumentNode
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDetails]
    operation_name: str | None
    # Field trees and prices by variables (fastpath/endpoint.py `_prepare`).
    prepared: dict[bytes, Any] = field(default_factory=dict, compare=False, hash=False)


class Unsupported(Exception):
    """The document (or this request of it) is left to the normal executor."""


def plan_document(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> Plan | None:
    """The plan of a validated document, or None when the fast executor cannot run it."""
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY:
        return None
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    if any(d.variable_definitions for d in fragments.values()):
        return None  # experimental fragment variables
    try:
        _check(schema, operation.selection_set, schema.query_type, fragments, set())
    except Unsupported:
        return None
    return Plan(
        document=document,
        operation=operation,
        fragments={name: FragmentDetails(d) for name, d in fragments.items()},
        operation_name=operation_name,
    )


def _check(
    schema: GraphQLSchema,
    selection_set: SelectionSetNode,
    parent: GraphQLObjectType | None,
    fragments: dict[str, FragmentDefinitionNode],
    visiting: set[str],
) -> None:
    if parent is None or parent.name not in SUPPORTED_FIELDS:
        raise Unsupported(parent.name if parent else "no type")
    supported = SUPPORTED_FIELDS[parent.name]
    for node in selection_set.selections:
        for directive in node.directives or ():
            if directive.name.value not in CONDITIONAL_DIRECTIVES:
                raise Unsupported(f"@{directive.name.value}")
        if isinstance(node, FieldNode):
            name = node.name.value
            if name == "__typename":
                continue
            if name not in supported:
                raise Unsupported(f"{parent.name}.{name}")
            if node.selection_set is not None:
                child = get_named_type(parent.fields[name].type)
                if not isinstance(child, GraphQLObjectType):
                    raise Unsupported(f"{parent.name}.{name}: abstract type")
                _check(schema, node.selection_set, child, fragments, visiting)
        elif isinstance(node, InlineFragmentNode):
            _check_condition(
                node.type_condition.name.value if node.type_condition else None, parent
            )
            _check(schema, node.selection_set, parent, fragments, visiting)
        elif isinstance(node, FragmentSpreadNode):
            fragment = fragments.get(node.name.value)
            if fragment is None or node.name.value in visiting:
                raise Unsupported("fragment")
            _check_condition(fragment.type_condition.name.value, parent)
            _check(
                schema,
                fragment.selection_set,
                parent,
                fragments,
                visiting | {fragment.name.value},
            )


def _check_condition(condition: str | None, parent: GraphQLObjectType) -> None:
    # Fragments on interfaces or unions are valid GraphQL but not rendered here.
    if condition is not None and condition != parent.name:
        raise Unsupported(f"fragment on {condition}")


class PlanCache:
    """Verdicts by (document text, operation name), least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str | None], Plan | None] = OrderedDict()

    def get(self, query: str, operation_name: str | None) -> tuple[bool, Plan | None]:
        key = (query, operation_name)
        if key not in self._entries:
            return False, None
        self._entries.move_to_end(key)
        return True, self._entries[key]

    def put(self, query: str, operation_name: str | None, plan: Plan | None) -> None:
        self._entries[(query, operation_name)] = plan
        self._entries.move_to_end((query, operation_name))
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
