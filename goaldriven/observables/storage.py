"""The observables file of one training run: `<workdir>/observables.h5`, a tidy table in HDF5 (never pickle).

Reference: /work/ch6_contract.md ("Observables file"); spec ch5_ch6 Section 11.3.

    / attrs   format="goaldriven-observables", version=1, task, architecture, rule, batch_size,
              model_seed, dataset_seed (-1: unseeded), statistics (names), extra (JSON)
    /layers/  name (L,) str, kind (L,) str {"conv", "dense"}, is_head (L,) bool      (model order)
    /table/   epoch int32, layer int32 (row of /layers), statistic int32 (index into attrs statistics),
              fraction float64 (1.0: all units), noise float64 (sigma, 0: none), seed int32, value float64   (N,)

Every change rewrites the whole file to a temporary file beside it and renames it over the old one
(goaldriven/atomic_write.py): a reader, or a run killed mid-write, sees the old file or the new one.
"""

# N: rows, T: epochs, L: layers, S: statistics
import dataclasses
import json
import os
from typing import Callable, Sequence

import h5py
import numpy as np

from goaldriven import atomic_write

FORMAT, VERSION = "goaldriven-observables", 1
COLUMNS = {
    "epoch": np.int32,
    "layer": np.int32,
    "statistic": np.int32,
    "fraction": np.float64,
    "noise": np.float64,
    "seed": np.int32,
    "value": np.float64,
}
_STR = h5py.string_dtype()


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What identifies a training run (the classifiers' labels and groups)."""

    task: str
    architecture: str
    rule: str
    batch_size: int
    model_seed: int | None = None
    dataset_seed: int | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def attrs(self) -> dict:
        return {
            "task": self.task,
            "architecture": self.architecture,
            "rule": self.rule,
            "batch_size": int(self.batch_size),
            "model_seed": -1 if self.model_seed is None else int(self.model_seed),
            "dataset_seed": -1 if self.dataset_seed is None else int(self.dataset_seed),
            "extra": json.dumps(self.extra, sort_keys=True),
        }

    @classmethod
    def from_attrs(cls, attrs) -> "RunInfo":
        seed = lambda s: None if int(s) < 0 else int(s)
        return cls(
            task=str(attrs["task"]),
            architecture=str(attrs["architecture"]),
            rule=str(attrs["rule"]),
            batch_size=int(attrs["batch_size"]),
            model_seed=seed(attrs["model_seed"]),
            dataset_seed=seed(attrs["dataset_seed"]),
            extra=json.loads(attrs["extra"]),
        )


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str
    is_head: bool = False


@dataclasses.dataclass
class Observables:
    """A read observables file: the run, its layers and statistics, the recorded epochs and the table."""

    run: RunInfo
    layers: list[LayerInfo]
    statistics: list[str]
    epochs: np.ndarray  # (T,) sorted
    table: dict[str, np.ndarray]

    def values(self, fraction: float = 1.0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
        """(T, L, S) float64 for one perturbation (NaN where no row was recorded)."""
        t = self.table
        rows = (t["fraction"] == fraction) & (t["noise"] == noise) & (t["seed"] == seed)
        if not rows.any():
            raise KeyError(
                f"no rows for fraction={fraction}, noise={noise}, seed={seed}; recorded: {self.perturbations()}"
            )
        out = np.full((len(self.epochs), len(self.layers), len(self.statistics)), np.nan)
        epoch_index = np.searchsorted(self.epochs, t["epoch"][rows])
        out[epoch_index, t["layer"][rows], t["statistic"][rows]] = t["value"][rows]
        return out

    def perturbations(self) -> list[tuple[float, float, int]]:
        t = self.table
        return sorted({(float(f), float(n), int(s)) for f, n, s in zip(t["fraction"], t["noise"], t["seed"])})


def _header(run: RunInfo, layers: Sequence[LayerInfo], statistics: Sequence[str]) -> dict:
    return {
        "run": run.attrs(),
        "layers": [(layer.name, layer.kind, bool(layer.is_head)) for layer in layers],
        "statistics": list(statistics),
    }


def _read_header(f: h5py.File) -> dict:
    if f.attrs.get("format") != FORMAT:
        raise ValueError(f"{f.filename} is not a goaldriven observables file (format {f.attrs.get('format')!r}).")
    run = RunInfo.from_attrs(f.attrs)
    names = [s.decode() if isinstance(s, bytes) else str(s) for s in f["layers/name"][()]]
    kinds = [s.decode() if isinstance(s, bytes) else str(s) for s in f["layers/kind"][()]]
    heads = [bool(h) for h in f["layers/is_head"][()]]
    statistics = [s.decode() if isinstance(s, bytes) else str(s) for s in f.attrs["statistics"]]
    return _header(run, [LayerInfo(*row) for row in zip(names, kinds, heads)], statistics)


def _write(path: str, header: dict, table: dict[str, np.ndarray]) -> None:
    with atomic_write.atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs["format"], f.attrs["version"] = FORMAT, VERSION
            for key, value in header["run"].items():
                f.attrs[key] = value
            f.attrs["statistics"] = np.array(header["statistics"], dtype=_STR)
            names, kinds, heads = zip(*header["layers"]) if header["layers"] else ((), (), ())
            f.create_dataset("layers/name", data=np.array(names, dtype=object), dtype=_STR)
            f.create_dataset("layers/kind", data=np.array(kinds, dtype=object), dtype=_STR)
            f.create_dataset("layers/is_head", data=np.array(heads, dtype=bool))
            for name, dtype in COLUMNS.items():
                f.create_dataset(f"table/{name}", data=np.asarray(table[name], dtype=dtype))


def _read_table(f: h5py.File) -> dict[str, np.ndarray]:
    return {name: np.asarray(f[f"table/{name}"][()], dtype=dtype) for name, dtype in COLUMNS.items()}


def create(path: str, run: RunInfo, layers: Sequence[LayerInfo], statistics: Sequence[str]) -> None:
    """Creates an empty observables file; an existing one must have the same header (then it is kept as it is)."""
    header = _header(run, layers, statistics)
    if os.path.exists(path):
        with h5py.File(path, "r") as f:
            existing = _read_header(f)
        if existing != header:
            diff = [key for key in header if header[key] != existing[key]]
            raise ValueError(
                f"{path} holds observables of another run or setting (different {', '.join(diff)}); use a fresh "
                "workdir or delete the file."
            )
        return
    _write(path, header, {name: np.zeros(0, dtype) for name, dtype in COLUMNS.items()})


def append(path: str, rows: dict[str, np.ndarray]) -> None:
    """Appends rows (a dict of equally long 1-D arrays, one per table column) atomically."""
    missing = set(COLUMNS) ^ set(rows)
    if missing:
        raise ValueError(f"rows need exactly the columns {sorted(COLUMNS)}; wrong: {sorted(missing)}")
    lengths = {len(np.ravel(v)) for v in rows.values()}
    if len(lengths) != 1:
        raise ValueError(f"row columns have different lengths {sorted(lengths)}.")
    with h5py.File(path, "r") as f:
        header, table = _read_header(f), _read_table(f)
    n_layers, n_stats = len(header["layers"]), len(header["statistics"])
    layer, stat = np.ravel(rows["layer"]), np.ravel(rows["statistic"])
    if layer.size and (layer.min() < 0 or layer.max() >= n_layers or stat.min() < 0 or stat.max() >= n_stats):
        raise ValueError(f"row layer/statistic indices outside the file's {n_layers} layers and {n_stats} statistics.")
    table = {name: np.concatenate([table[name], np.ravel(rows[name]).astype(dtype)]) for name, dtype in COLUMNS.items()}
    _write(path, header, table)


def recorded_epochs(path: str) -> list[int]:
    """The sorted distinct epochs with rows in the file ([] without a file)."""
    if not os.path.exists(path):
        return []
    with h5py.File(path, "r") as f:
        return sorted({int(e) for e in f["table/epoch"][()]})


def drop_epochs_after(path: str, epoch: int, log: Callable[[str], None] = print) -> list[int]:
    """Removes the rows of epochs > `epoch` (a resumed run recomputes them); logs and returns the dropped epochs."""
    if not os.path.exists(path):
        return []
    with h5py.File(path, "r") as f:
        header, table = _read_header(f), _read_table(f)
    keep = table["epoch"] <= epoch
    dropped = sorted({int(e) for e in table["epoch"][~keep]})
    if dropped:
        log(
            f"{path}: dropping observables of epochs {dropped} recorded after epoch {epoch} (the restored checkpoint); "
            "the resumed run records them again"
        )
        _write(path, header, {name: values[keep] for name, values in table.items()})
    return dropped


def read(path: str) -> Observables:
    with h5py.File(path, "r") as f:
        header, table = _read_header(f), _read_table(f)
    return Observables(
        run=RunInfo.from_attrs(header["run"]),
        layers=[LayerInfo(*row) for row in header["layers"]],
        statistics=header["statistics"],
        epochs=np.array(sorted(set(table["epoch"].tolist())), dtype=np.int32),
        table=table,
    )
