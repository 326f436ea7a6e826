"""Count the import graph's upward arrows and cycles against the layers written in pyproject.toml.

Reads every module of the packages named in `[tool.importlinter]` with `ast` (imports inside functions
included), resolves each import to a project module, and prints:
- every arrow from a lower layer to a higher one of each `layers` contract (an upward import);
- every cycle between modules (strongly connected components of two modules or more).
Exit status 1 when either is found. Needs only the standard library (Python >= 3.11 for tomllib).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def module_files(package: str) -> dict[str, Path]:
    """Map each module name under `package` to its file."""
    modules = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name `module`'s file imports, at any depth of the file."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names.add(stem)
            names.update(f"{stem}.{alias.name}" for alias in node.names)
    return names


def build_graph(packages: list[str]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (the longest known prefix of each imported name)."""
    files = {}
    for package in packages:
        files.update(module_files(package))
    graph = defaultdict(set)
    for module, path in files.items():
        for name in imported_names(path, module):
            parts = name.split(".")
            while parts and ".".join(parts) not in files:
                parts.pop()
            target = ".".join(parts)
            if target and target != module:
                graph[module].add(target)
        graph.setdefault(module, set())
    return graph


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """Index of the layer (0 = top) holding `module`, or None."""
    for index, group in enumerate(layers):
        if any(module == name or module.startswith(name + ".") for name in group):
            return index
    return None


def upward_arrows(graph: dict[str, set[str]], contracts: list[dict]) -> list[tuple[str, str, str]]:
    """(importer, imported, contract name) for each import from a lower layer to a higher one."""
    found = []
    for contract in contracts:
        containers = contract.get("containers", [""])
        for container in containers:
            prefix = f"{container}." if container else ""
            layers = [
                [prefix + name.strip() for name in line.replace("|", ":").split(":")]
                for line in contract["layers"]
            ]
            for importer, targets in graph.items():
                low = layer_of(importer, layers)
                for target in targets:
                    high = layer_of(target, layers)
                    if low is not None and high is not None and high < low:
                        found.append((importer, target, contract["name"]))
    return sorted(set(found))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of two modules or more (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def main() -> int:
    """Print upward arrows and cycles; exit 1 if there are any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "pyproject.toml"), help="where [tool.importlinter] is")
    args = parser.parse_args()
    settings = tomllib.loads(Path(args.config).read_text())["tool"]["importlinter"]
    packages = settings.get("root_packages") or [settings["root_package"]]
    graph = build_graph(packages)
    contracts = [c for c in settings.get("contracts", []) if c.get("type") == "layers"]
    arrows = upward_arrows(graph, contracts)
    loops = cycles(graph)
    for importer, target, contract in arrows:
        print(f"upward: {importer} -> {target}  ({contract})")
    for loop in loops:
        print(f"cycle: {' <-> '.join(loop)}")
    edges = sum(len(t) for t in graph.values())
    print(f"{len(graph)} modules, {edges} imports: {len(arrows)} upward, {len(loops)} cycles")
    return 1 if arrows or loops else 0


if __name__ == "__main__":
    sys.exit(main())
