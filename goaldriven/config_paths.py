"""Where gin configs live, for a checkout and for an installed package.

A config named on the command line (`--gin_file=gin/experiments/x.gin` or `experiments/x.gin`) and the `include`s inside
configs (written relative to the gin root, `include 'tasks/path_integration.gin'`) resolve against, in order:
  1. the current directory (a path that exists as given wins);
  2. `<checkout>/gin`, when goaldriven is imported from a source checkout (editable install or PYTHONPATH);
  3. `<cwd>/gin`;
  4. `goaldriven/gin_configs`, the copy of gin/ that `pip install .` ships inside the package.
"""

import os
import pathlib
import re

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent


def gin_roots() -> list[pathlib.Path]:
    """Existing gin root folders, most specific first, without duplicates."""
    candidates = [_PACKAGE_DIR.parent / "gin", pathlib.Path.cwd() / "gin", _PACKAGE_DIR / "gin_configs"]
    roots: list[pathlib.Path] = []
    for candidate in candidates:
        if candidate.is_dir() and candidate.resolve() not in roots:
            roots.append(candidate.resolve())
    return roots


def resolve_gin_file(name: str) -> str:
    """Returns an existing path for a config name, or raises FileNotFoundError listing where it looked."""
    if os.path.isfile(name):
        return name
    relative = name[len("gin/") :] if name.startswith("gin/") else name
    looked = [os.path.abspath(name)]
    for root in gin_roots():
        path = root / relative
        if path.is_file():
            return str(path)
        looked.append(str(path))
    raise FileNotFoundError(
        f"gin file {name!r} not found; looked in: {', '.join(looked)}. "
        "Pass a path to an existing .gin file, e.g. --gin_file=gin/experiments/path_integration__quick.gin."
    )


_INCLUDE = re.compile(r"""^\s*include\s+['"]([^'"]+)['"]""", re.MULTILINE)


def shadowed_includes(files: list[str]) -> list[tuple[str, str]]:
    """(include, packaged path) for every include of `files` (recursively) that gin would read from the current
    directory although a packaged config of that name exists: gin tries the working directory first, so a local
    `models/zoo.gin` would run instead of the packaged one."""
    roots = gin_roots()
    shadowed, seen, pending = [], set(), list(files)
    while pending:
        path = pending.pop()
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        with open(path, encoding="utf-8") as f:
            includes = _INCLUDE.findall(f.read())
        for name in includes:
            packaged = [root / name for root in roots if (root / name).is_file()]
            local = not os.path.isabs(name) and os.path.isfile(name)
            if local and packaged and not os.path.samefile(name, packaged[0]):
                shadowed.append((name, str(packaged[0])))
            pending.append(name if local or os.path.isabs(name) else str(packaged[0]) if packaged else name)
    return shadowed


def list_experiments() -> list[str]:
    """Experiment configs available to this installation (names relative to the gin root)."""
    names: set[str] = set()
    for root in gin_roots():
        names.update(str(p.relative_to(root)) for p in (root / "experiments").glob("*.gin"))
    return sorted(names)
