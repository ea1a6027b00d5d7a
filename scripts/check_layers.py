"""Import layering check (run in CI by tests/test_architecture.py, or by hand).

Reads every module's imports (top level and inside functions: a lazy import is still a
dependency) and checks the layers, bottom to top:

    core (pixseek.*, pixseek.models, pixseek.store)  <  ingest, search  <  worker  <  evaluation,
    api  <  cli

- no package imports one above it (so there is no cycle between packages);
- the core never imports a stage;
- nothing below the command line imports pixseek.cli.

Exit status 1 and one line per offending import when a rule is broken.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# installed name -> folder (pyproject.toml's package-dir)
STAGE_DIRS = {
    "pixseek.ingest": "ingest",
    "pixseek.search": "search",
    "pixseek.worker": "worker",
    "pixseek.evaluation": "evaluation",
    "pixseek.api": "api",
}
LAYER = {
    "core": 0,
    "pixseek.ingest": 1,
    "pixseek.search": 1,
    "pixseek.worker": 2,
    "pixseek.evaluation": 3,
    "pixseek.api": 3,
    "pixseek.cli": 4,
}


def package_of(module: str) -> str | None:
    """The layer-package a module belongs to, or None for modules outside pixseek."""
    if module != "pixseek" and not module.startswith("pixseek."):
        return None
    for name in (*STAGE_DIRS, "pixseek.cli"):
        if module == name or module.startswith(name + "."):
            return name
    return "core"


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in (ROOT / "pixseek").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(p for p in parts if p != "__init__")] = path
    for name, folder in STAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            found[".".join([name, *(p for p in parts if p != "__init__")])] = path
    return found


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.append((node.lineno, target))
    return out


def violations() -> list[str]:
    problems: list[str] = []
    for module, path in sorted(modules().items()):
        source = package_of(module)
        if source is None:
            continue
        for line, target in imports_of(module, path):
            goal = package_of(target)
            if goal is None or goal == source:
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if module == "pixseek.__main__":  # `python -m pixseek`: the entry point itself
                continue
            if goal == "pixseek.cli":
                problems.append(f"{where}: {module} imports the command line ({target})")
            elif LAYER[goal] > LAYER[source]:
                problems.append(
                    f"{where}: {module} ({source}) imports {target} ({goal}), a layer above it"
                )
            elif LAYER[goal] == LAYER[source]:
                problems.append(f"{where}: {module} imports {target}: sibling stages stay apart")
    return problems


def main() -> int:
    problems = violations()
    for problem in problems:
        print(problem)
    if not problems:
        print(f"layers ok: {len(modules())} modules")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
