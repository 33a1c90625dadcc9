"""Guards of the project's shape: the committed schema, migrations, and one-way layers."""

from __future__ import annotations

import ast
from pathlib import Path

from tortoise.context import TortoiseContext
from tortoise.migrations.autodetector import MigrationAutodetector

from models.db import tortoise_config
from schema import build_schema
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_committed_schema_matches_the_code(settings: Settings) -> None:
    committed = (ROOT / "schema.graphql").read_text()
    current = str(build_schema(settings)) + "\n"
    assert committed == current, (
        "schema.graphql differs from the code's schema. If the change is intended, run "
        "`python manage.py export-schema` and commit schema.graphql so it gets reviewed."
    )


async def test_models_have_no_unmigrated_changes(settings: Settings) -> None:
    config = tortoise_config(settings)
    async with TortoiseContext() as context:
        await context.init(config=config)
        assert context.apps is not None
        writers = await MigrationAutodetector(context.apps, config["apps"]).changes()
    assert writers == [], (
        "models changed without a migration: run `python manage.py makemigrations`"
    )


# Each layer may import only the layers listed for it (and itself), never one above it.
ALLOWED = {
    # Ground level, like settings: metric objects every layer may import.
    "observability": {"observability"},
    "models": {"models", "settings", "observability"},
    "ai": {"ai", "settings", "observability"},
    "services": {"services", "models", "settings", "ai", "observability"},
    "subscriptions": {"subscriptions", "services", "models", "settings", "observability"},
    "generation": {
        "generation",
        "subscriptions",
        "services",
        "ai",
        "models",
        "settings",
        "observability",
    },
    "sync": {
        "sync",
        "generation",
        "subscriptions",
        "services",
        "models",
        "settings",
        "observability",
    },
    "resolvers": {
        "observability",
        "resolvers",
        "ai",
        "services",
        "models",
        "settings",
        "sync",
        "generation",
        "subscriptions",
    },
}
PROJECT_PACKAGES = {
    "observability",
    "models",
    "ai",
    "services",
    "subscriptions",
    "generation",
    "sync",
    "resolvers",
    "schema",
    "web",
    "settings",
    "app",
    "bench",
    "tests",
    "manage",
}
BELOW_RESOLVERS = {
    "observability",
    "models",
    "ai",
    "services",
    "subscriptions",
    "generation",
    "sync",
    "settings",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_layers_point_one_way() -> None:
    violations = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            imported = _imports(path)
            for name in imported & PROJECT_PACKAGES - allowed:
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
            if layer in BELOW_RESOLVERS and "strawberry" in imported:
                violations.append(f"{path.relative_to(ROOT)} imports strawberry")
    assert violations == []
