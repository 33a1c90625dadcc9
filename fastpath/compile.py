"""A plan and one request's variables → the tree of fields to render.

graphql-core's own `collect_fields` applies `@include`/`@skip`, fragments and field merging
exactly as the normal executor does, and `get_argument_values` coerces arguments the same way;
any error they raise sends the request to the normal executor, which reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLObjectType, GraphQLSchema, get_named_type
from graphql.execution.collect_fields import (
    FieldDetails,
    collect_fields,
    collect_subfields,
)
from graphql.execution.values import VariableValues, get_argument_values

from fastpath.plan import Plan, Unsupported


@dataclass(slots=True)
class Field:
    """One response key of a selection: the field it names, its arguments and its subfields."""

    key: str
    name: str
    type_name: str  # of the value, for object fields; of the parent for leaves
    args: dict[str, Any] = field(default_factory=dict)
    children: list[Field] | None = None


@dataclass(slots=True)
class Compiled:
    fields: list[Field]
    # Whether each response key came from exactly one field node: then the cost of the
    # response can be counted while rendering instead of walking it again (fastpath/cost).
    one_node_per_key: bool


def compile_request(schema: GraphQLSchema, plan: Plan, variables: VariableValues) -> Compiled:
    root = schema.query_type
    assert root is not None
    collected = collect_fields(schema, plan.fragments, variables, root, plan.operation)
    if collected.new_defer_usages:
        raise Unsupported("@defer")
    state = {"single": True}
    fields = _fields(schema, plan, variables, root, collected.grouped_field_set, state)
    return Compiled(fields=fields, one_node_per_key=state["single"])


def _fields(
    schema: GraphQLSchema,
    plan: Plan,
    variables: VariableValues,
    parent: GraphQLObjectType,
    grouped: dict[str, list[FieldDetails]],
    state: dict[str, bool],
) -> list[Field]:
    fields: list[Field] = []
    for key, details in grouped.items():
        if len(details) > 1:
            state["single"] = False
        node = details[0].node
        name = node.name.value
        if name == "__typename":
            fields.append(Field(key=key, name=name, type_name=parent.name))
            continue
        definition = parent.fields[name]
        args = get_argument_values(definition, node, variables) if definition.args else {}
        named = get_named_type(definition.type)
        if isinstance(named, GraphQLObjectType):
            sub = collect_subfields(
                schema, plan.fragments, variables, plan.operation, named, details
            )
            if sub.new_defer_usages:
                raise Unsupported("@defer")
            children = _fields(schema, plan, variables, named, sub.grouped_field_set, state)
            fields.append(Field(key, name, named.name, args, children))
        else:
            fields.append(Field(key, name, parent.name, args))
    return fields
