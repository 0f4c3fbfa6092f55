"""The package as a whole: every module imports, imports run one way between layers (no cycles, no private names
across modules, no imports hidden in strings), and a missing third-party package is reported with its install command.
"""

import ast
import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import goaldriven
from goaldriven import cli_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.join(REPO, "goaldriven")

# Lower layers never import higher ones; packages of one rank never import each other. Entry points (train,
# fit_neural, cli_config) sit on top and are the only modules that import gin.
RANKS = {
    "goaldriven.runtime": 0,
    "goaldriven.hooks": 0,
    "goaldriven.distribute": 0,
    "goaldriven.checkpointing": 0,
    "goaldriven.reporting": 0,
    "goaldriven.atomic_write": 0,
    "goaldriven.config_paths": 0,
    "goaldriven.workdir_lock": 0,
    "goaldriven.weight_decay": 0,
    "goaldriven.optimizers": 0,
    "goaldriven.fused_optimizers": 0,
    "goaldriven.spatial": 1,
    "goaldriven.audio": 1,
    "goaldriven.alignment": 1,
    "goaldriven.cells": 2,
    "goaldriven.observables": 2,
    "goaldriven.models": 3,
    "goaldriven.tasks": 4,
    "goaldriven.neural_fits": 5,
    "goaldriven.identification": 5,
    "goaldriven.importers": 5,
    "goaldriven.transfer": 6,
    "goaldriven.search": 6,
    "goaldriven.cli_config": 6,
    "goaldriven.train": 7,
    "goaldriven.fit_neural": 7,
    "goaldriven.identify": 7,
    "goaldriven.transfer_eval": 7,
    "goaldriven.import_release": 7,
    "goaldriven.search_cli": 7,
}
ALLOWED_FROM_TASKS_INTO_ALIGNMENT = {"goaldriven.alignment.training"}  # the alignment loop hook


def _modules() -> list[str]:
    names = ["goaldriven"]
    for info in pkgutil.walk_packages([PACKAGE_DIR], prefix="goaldriven."):
        if not info.name.startswith("goaldriven.gin_configs"):
            names.append(info.name)
    return sorted(names)


def _path(module: str) -> str:
    relative = module.split(".")[1:]
    package = os.path.join(PACKAGE_DIR, *relative, "__init__.py")
    return package if os.path.exists(package) else os.path.join(PACKAGE_DIR, *relative) + ".py"


def _imports(module: str) -> list[tuple[str, str, int]]:
    """(imported goaldriven module, imported name or '', line) for every import in the module, nested ones too
    (but not those under `if TYPE_CHECKING:`, which never run)."""
    tree = ast.parse(open(_path(module), encoding="utf-8").read())
    is_package = _path(module).endswith("__init__.py")
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.startswith("goaldriven")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            if not base.startswith("goaldriven"):
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                is_module = os.path.exists(_path(target)) if target.count(".") else False
                out.append((target, "", node.lineno) if is_module else (base, alias.name, node.lineno))
    return out


def _group(module: str) -> str:
    for prefix in sorted(RANKS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return "goaldriven"


# each defines absl flags: one per process
ENTRY_POINTS = (
    "goaldriven.train",
    "goaldriven.fit_neural",
    "goaldriven.identify",
    "goaldriven.transfer_eval",
    "goaldriven.import_release",
    "goaldriven.search_cli",
)


@pytest.mark.parametrize("module", [m for m in _modules() if m not in ENTRY_POINTS])
def test_every_module_imports(module):
    importlib.import_module(module)


def test_every_entry_point_imports_in_its_own_process():
    for module in ENTRY_POINTS:
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{module}: {proc.stderr[-2000:]}"


def test_every_module_has_a_rank():
    assert [m for m in _modules() if _group(m) == "goaldriven" and m != "goaldriven"] == []


def test_imports_run_from_higher_layers_to_lower_ones_only():
    wrong = []
    for module in _modules():
        here = _group(module)
        for target, _, line in _imports(module):
            there = _group(target)
            if here == there or there == "goaldriven":
                continue
            if RANKS[there] > RANKS[here] or (RANKS[there] == RANKS[here] and RANKS[here] > 0):
                wrong.append(f"{module}:{line} imports {target} (rank {RANKS[there]} from rank {RANKS[here]})")
            if here == "goaldriven.tasks" and there == "goaldriven.alignment":
                if target not in ALLOWED_FROM_TASKS_INTO_ALIGNMENT:
                    wrong.append(f"{module}:{line} imports {target}; tasks/ may import only the alignment hook")
    assert wrong == []


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in _imports(m) if t in set(_modules()) and t != m} for m in _modules()}
    for package in [m for m in graph if _path(m).endswith("__init__.py")]:
        for child in [m for m in graph if m.startswith(package + ".")]:
            graph[child].discard(package)  # importing a submodule runs its package's __init__: not a cycle edge
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_private_names_across_modules_and_no_imports_in_strings():
    wrong = []
    for module in _modules():
        source = open(_path(module), encoding="utf-8").read()
        for target, name, line in _imports(module):
            if name.startswith("_") and not name.startswith("__") and target != module:
                wrong.append(f"{module}:{line} imports the private {target}.{name}")
        tree = ast.parse(source)
        aliases = {
            a.asname or a.name.split(".")[-1]
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("goaldriven")
            for a in n.names
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                if node.attr.startswith("_") and not node.attr.startswith("__"):
                    wrong.append(f"{module}:{node.lineno} uses the private {node.value.id}.{node.attr}")
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__" and node in tree.body:
                wrong.append(f"{module}:{node.lineno} forwards names with a module __getattr__")
        if "importlib" in set(_third_party(module)):
            wrong.append(f"{module} imports importlib: import modules by name, not by string")
    assert wrong == []


def test_only_entry_points_import_gin():
    users = {m for m in _modules() if any(t == "gin" for t in _third_party(m))}
    assert "goaldriven.cli_config" in users and users <= {"goaldriven.cli_config", *ENTRY_POINTS}, users


def _third_party(module):
    tree = ast.parse(open(_path(module), encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module.split(".")[0]


def test_a_gin_file_importing_a_missing_package_names_the_package(tmp_path):
    config = tmp_path / "needs_package.gin"
    config.write_text("from __gin__ import dynamic_registration\nimport goaldriven_no_such_package_xyz\n")
    with pytest.raises(cli_config.MissingDependencyError, match="goaldriven-no-such-package-xyz.*pip install"):
        cli_config.parse_gin_config([str(config)], clear=True)


_WITHOUT_TFDS = "import sys; sys.modules['tensorflow_datasets'] = None; "  # import of it raises ModuleNotFoundError


def test_path_integration_needs_no_tensorflow_datasets(tmp_path):
    code = _WITHOUT_TFDS + (
        "from goaldriven import cli_config; "
        "cli_config.parse_gin_config(['experiments/path_integration__quick.gin', 'testing/smoke.gin']); "
        "task = cli_config.configured_task(); model = task.build_model(); print('built', model.count_params())"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "built" in proc.stdout, proc.stderr[-2000:]


def test_imagenet_without_tensorflow_datasets_fails_in_one_line_with_the_install_command(tmp_path):
    argv = [
        "goaldriven-train",
        "--gin_file=gin/experiments/imagenet__resnet18_v1.gin",
        "--gin_file=gin/testing/smoke.gin",
        f"--workdir={tmp_path / 'run'}",
    ]
    code = _WITHOUT_TFDS + f"sys.argv = {argv!r}; from goaldriven import train; train.run_main()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if "goaldriven-train: error:" in line]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert "tensorflow-datasets" in errors[0] and "pip install" in errors[0] and "gin config" not in errors[0]


def test_the_package_version_is_set():
    assert goaldriven.__version__
