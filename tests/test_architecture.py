"""The shape of the code: imports run one way, every package installs, no module grows unexplained.

The import graph is read with ast, not by importing: top-level imports, imports inside
functions, and the registries' lazy `"module:attr"` entries all count as edges (an entry is
an import that happens later); imports under `if TYPE_CHECKING:` do not. An edge goes to the
module named (`from pkg import name` names `pkg`, or `pkg.name` where that is a module).
"""

from __future__ import annotations

import ast
import configparser
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("evalkit", "upstreams")
LAZY_ENTRY = re.compile(r"^((?:evalkit|upstreams)(?:\.\w+)*):\w+$")

# Which layers each layer may import (besides itself). The ground floor imports nothing of the
# project; the leaderboard reads result files and may use the ground floor and the metrics only.
ALLOWED = {
    "core": set(),
    "upstreams": {"core"},
    "metrics": {"core"},
    "synth": {"core"},
    "corpora": {"core", "synth"},  # LibriSpeech's phone transcriptions come from the synthesiser's eSpeak
    "evaluation": {"core", "upstreams", "metrics"},
    "pretraining": {"core", "upstreams"},
    "leaderboard": {"core", "metrics"},
    "pipeline": {"core", "upstreams", "metrics", "synth", "evaluation", "pretraining", "leaderboard"},
    "cli": {
        "core",
        "upstreams",
        "metrics",
        "synth",
        "corpora",
        "evaluation",
        "pretraining",
        "leaderboard",
        "pipeline",
    },
    "root": set(),
}
MAX_LINES = 500
REASON = "Why one module:"


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "upstreams":
        return "upstreams"
    if len(parts) == 1:
        return "root"
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return parts[1]


def project_modules() -> dict[str, Path]:
    found = {}
    for top in PROJECT:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _from_target(node: ast.ImportFrom, package: str, modules: dict[str, Path]) -> list[str]:
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def _named(node: ast.AST, package: str, modules: dict[str, Path]) -> list[str]:
    """What one node names as imported: an import statement's modules or a lazy registry entry."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return _from_target(node, package, modules)
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := LAZY_ENTRY.match(node.value)):
        return [m.group(1)]
    return []


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `module` imports, by any of the ways the module docstring lists."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges = set()
    for node in ast.walk(tree):
        for target in [] if id(node) in skip else _named(node, package, modules):
            if target in modules and target != module:
                edges.add(target)
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def test_layers_import_only_the_layers_below_them():
    graph = import_graph()
    assert {layer(m) for m in graph} <= set(ALLOWED), "a module outside every known layer"
    back_edges = [
        f"{src} -> {dst}"
        for src, dsts in graph.items()
        for dst in sorted(dsts)
        if layer(dst) != layer(src) and layer(dst) not in ALLOWED[layer(src)] and layer(dst) != "root"
    ]
    assert not back_edges, "imports against the layering:\n" + "\n".join(sorted(back_edges))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
            if w in stack:
                low[v] = min(low[v], low[w])
        if low[v] == index[v]:
            component = stack[stack.index(v) :]
            del stack[stack.index(v) :]
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle_through_a_lazy_entry():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_between_modules():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_long_modules_say_why():
    unexplained = []
    for path in project_modules().values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if lines > MAX_LINES and REASON not in doc:
            unexplained.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not unexplained, f"over {MAX_LINES} lines without '{REASON}' in the docstring: {unexplained}"


def test_setup_cfg_installs_every_package():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    mapped = dict(
        line.split(" = ") for line in cfg["options"]["package_dir"].strip().splitlines() if " = " in line
    )
    on_disk = {m for m, p in project_modules().items() if p.name == "__init__.py"}
    on_disk |= {name for name, folder in mapped.items() if (ROOT / folder / "__init__.py").is_file()}
    assert listed == on_disk


def test_tasks_and_configs_install_as_data_of_evalkit(tmp_path):
    """No generic top-level `tasks`/`configs` package: they are `evalkit.tasks`/`evalkit.configs`."""
    script = (
        "import importlib.util as u, evalkit.tasks, evalkit.configs\n"
        "from evalkit.core.resources import tasks_dir, pretrain_recipe\n"
        "assert u.find_spec('tasks') is None and u.find_spec('configs') is None\n"
        "assert (tasks_dir() / 'asr' / 'task.yaml').is_file()\n"
        "assert pretrain_recipe('hubert-tiny').is_file()\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)
