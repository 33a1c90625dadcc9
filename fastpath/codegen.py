"""Compiles a request's field tree into one Python function that builds the response data.

The function is a nest of dict displays and list comprehensions over the fetched rows, one
expression per response key (e.g. `"title": r2["title"]`), generated once per shape of
selection and cached: no resolver call, no awaitable, no per-field dispatch at request time.
A subject's topics are the exception: PostgreSQL renders them (fastpath/topics_json.py) and
their JSON is embedded as it comes. The function also counts what the cost calculator counts
(every object rendered, every `totalCount`), so `extensions.cost.actual` needs no second walk
over the response.

Each object type has a template per field: an expression of the object's variables (`{r}`,
`{p}` for a position among siblings, `{c}` for an edge's connection). Rows are asyncpg
records (Execution in fastpath/execute.py holds them); `Connection` and `Viewer` are plain
objects.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastpath.compile import Field
from fastpath.topics_json import shape, topic_selections

Renderer = Callable[[Any, dict[str, Any]], dict[str, Any]]

# Leaf templates: type -> field -> expression of the object's variables.
LEAVES: dict[str, dict[str, str]] = {
    "Me": {
        "id": "str({r}.id)",
        "email": "{r}.email",
        "displayName": "{r}.display_name",
        "tier": "E_UserTier[{r}.tier]",
        "role": "E_UserRole[{r}.role]",
    },
    "CourseConnection": {"totalCount": "_count({r}, ex)"},
    "PageInfo": {
        "hasNextPage": "{r}.has_next_page",
        "endCursor": "(_cursor({r}, {r}.rows[-1]) if {r}.rows else None)",
    },
    "CourseEdge": {"cursor": "_cursor({c}, {r})"},
    "Course": {
        "id": 'str({r}["id"])',
        "title": '{r}["title"]',
        "description": '{r}["description"]',
        "level": 'E_CourseLevel[{r}["level"]]',
        "language": '{r}["language"]',
        "status": 'E_CourseStatus[{r}["status"]]',
        "version": '{r}["version"]',
        "createdAt": '{r}["created_at"].isoformat()',
        "updatedAt": '{r}["updated_at"].isoformat()',
        "viewerAccess": "ex.access({r})",
    },
    "Member": {
        "role": 'E_MemberRole[{r}["role"]]',
        "addedAt": '{r}["created_at"].isoformat()',
    },
    "User": {"id": 'str({r}["id"])', "displayName": '{r}["display_name"]'},
    "Subject": {
        "id": 'str({r}["id"])',
        "courseId": 'str({r}["course_id"])',
        "position": "{p}",
        "title": '{r}["title"]',
        "summary": '{r}["summary"]',
    },
}

# Object fields: (kind, source) where `source` is an expression of the parent's variables.
# "list": a list of rows; "one": a single object that may be None. A subject's topics are
# rendered by PostgreSQL (fastpath/topics_json.py) and embedded as they come.
LIST, ONE = "list", "one"
OBJECTS: dict[str, dict[str, tuple[str, str]]] = {
    "CourseConnection": {
        "pageInfo": (ONE, "{r}"),
        "edges": (LIST, "{r}.rows"),
        "nodes": (LIST, "{r}.rows"),
    },
    "CourseEdge": {"node": (ONE, "{r}")},
    "Course": {
        "owner": (ONE, 'ex.user({r}["owner_id"])'),
        "members": (LIST, 'ex.members.get({r}["id"], ())'),
        "subjects": (LIST, 'ex.subjects.get({r}["id"], ())'),
    },
    "Member": {"user": (ONE, 'ex.user({r}["user_id"])')},
}
# Types whose position among their siblings is their index in the list.
POSITIONED = frozenset({"Subject"})


class _Writer:
    def __init__(self, topic_selections: dict[tuple[object, ...], int]) -> None:
        self.counter = 0
        self.topic_selections = topic_selections

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def obj(self, type_name: str, fields: list[Field], r: str, p: str, c: str) -> str:
        """A dict display of one object of `type_name` bound to the variables r (p, c)."""
        items = []
        for f in fields:
            items.append(f"{f.key!r}: {self.value(type_name, f, r, p, c)}")
        return "{" + ", ".join(items) + "}"

    def value(self, type_name: str, f: Field, r: str, p: str, c: str) -> str:
        if f.name == "__typename":
            return repr(type_name)
        if f.children is None:
            return LEAVES[type_name][f.name].format(r=r, p=p, c=c)
        if type_name == "Subject" and f.name == "topics":
            index = self.topic_selections[shape(f.children)]
            return f'_topics(ex, {r}["id"], {index})'
        kind, source = OBJECTS[type_name][f.name]
        source = source.format(r=r, p=p, c=c)
        child = f.type_name
        if kind == ONE:
            var = self.name("o")
            inner = self.obj(child, f.children, var, p, r)
            return f"({inner} if ({var} := {source}) is not None and _inc(ex) else None)"
        var, pos = self.name("r"), self.name("p")
        if child == "CourseEdge":
            # An edge is its course row, with the connection (`r`) for its cursor.
            inner = self.obj(child, f.children, var, pos, r)
            return f"[{inner} for {var} in _n({source}, ex)]"
        if child in POSITIONED:
            inner = self.obj(child, f.children, var, pos, c)
            return f"[{inner} for {pos}, {var} in enumerate(_n({source}, ex))]"
        inner = self.obj(child, f.children, var, pos, c)
        return f"[{inner} for {var} in _n({source}, ex)]"


def _source(fields: list[Field]) -> str:
    selections = {shape(children): i for i, children in enumerate(topic_selections(fields))}
    writer = _Writer(selections)
    items = []
    for f in fields:
        if f.name == "__typename":
            items.append(f"{f.key!r}: 'Query'")
            continue
        root = f"roots[{f.key!r}]"
        var = writer.name("o")
        inner = writer.obj(f.type_name, f.children or [], var, "None", "None")
        items.append(
            f"{f.key!r}: ({inner} if ({var} := {root}) is not None and _inc(ex) else None)"
        )
    return "def render(ex, roots):\n    return {" + ", ".join(items) + "}\n"


class Renderers:
    """Compiled render functions by shape of selection (least recently used dropped)."""

    def __init__(self, namespace: dict[str, Any], size: int = 256) -> None:
        self.namespace = namespace
        self.size = size
        self._cache: OrderedDict[tuple[Any, ...], Renderer] = OrderedDict()

    def get(self, fields: list[Field]) -> Renderer:
        key = shape(fields)
        renderer = self._cache.get(key)
        if renderer is None:
            namespace = dict(self.namespace)
            # Only field names the schema validated, response keys through repr(), and the
            # templates above reach the source: no request text is executed.
            exec(compile(_source(fields), "<fastpath render>", "exec"), namespace)  # noqa: S102
            renderer = self._cache[key] = namespace["render"]
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return renderer
