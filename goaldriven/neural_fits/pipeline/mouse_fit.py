"""A Chapter 3 fit of one model: fit, inter-animal ceiling, Table 3.3 columns, per-area plots, mapping comparison.

Reference: thesis Sections 3.3 and 3.6.2-3.6.3, Table 3.3, Figures 3.1 and 3.6 (spec ch3 A2.4-A2.6, A6.3).

    chapter3_fit(store, recordings, spec, workdir)    features in a FeatureStore -> every file below
    chapter3_outputs(result, recordings, spec, fit_dir)   the Chapter 3 files for a fit already run (goaldriven-fit)

Files written (beside report.py's units.csv, summary.json, predictivity_by_layer.png):
  mouse_table.json   Table 3.3 columns (mouse_tables.table_columns) with the markdown row
  mouse_table.md     per-area markdown table and the row
  mouse_areas.png    per area: predictivity by layer with the inter-animal consistency band (mouse_plots)
  mapping_comparison.json / .png   (compare_mappings) Fig. 3.1: inter-animal consistency under PLS, Ridge,
                     One-to-One and RSA, with the split-half reliability
"""

import dataclasses
import os
from typing import Any, Callable

from goaldriven import atomic_write
from goaldriven.neural_fits.data.neural_data import NeuralData
from goaldriven.neural_fits.pipeline import mouse_plots, mouse_tables, report
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore
from goaldriven.neural_fits.pipeline.fitting import FitConfig, FitResult, fit_recordings
from goaldriven.neural_fits.pipeline.mouse_tables import Chapter3Fit

TABLE_JSON, TABLE_MD, AREAS_PNG = "mouse_table.json", "mouse_table.md", "mouse_areas.png"
COMPARISON_JSON, COMPARISON_PNG = "mapping_comparison.json", "mapping_comparison.png"


@dataclasses.dataclass
class MouseFit:
    """A Chapter 3 fit: the fit's rows and summary, the Table 3.3 columns, the mapping comparison and the files."""

    result: FitResult
    columns: dict[str, Any]
    comparison: dict[str, Any] | None
    paths: list[str]


def chapter3_fit(
    store: FeatureStore,
    recordings: NeuralData,
    spec: Chapter3Fit,
    workdir: str,
    *,
    layers=None,
    model_name: str = "model",
    compare_mappings: bool = False,
    log: Callable[[str], None] = print,
) -> MouseFit:
    """Scores the layers of `store` (default: all) against `recordings` the Chapter 3 way and writes every file."""
    config = spec.fit_config(layers=layers)
    result = fit_recordings(store, recordings, config, log=log)
    return chapter3_outputs(result, recordings, spec, workdir, config, model_name, compare_mappings, log)


def chapter3_outputs(
    result: FitResult,
    recordings: NeuralData,
    spec: Chapter3Fit,
    fit_dir: str,
    config: FitConfig,
    model_name: str = "model",
    compare_mappings: bool = False,
    log: Callable[[str], None] = print,
) -> MouseFit:
    """Adds the inter-animal ceiling to the fit's summary (rewriting report.py's files) and writes the Chapter 3
    files (module docstring) into `fit_dir` (report.py's files too: the summary now holds the ceiling)."""
    ceiling = mouse_tables.inter_animal(recordings, spec, spec.mapping, log=log)
    mouse_tables.attach_inter_animal(result, ceiling, config)
    paths = report.write_all(result, fit_dir)  # the summary now holds the inter-animal consistency
    columns = mouse_tables.table_columns(result, ceiling, spec, model_name)
    table_json, table_md, areas_png = (os.path.join(fit_dir, name) for name in (TABLE_JSON, TABLE_MD, AREAS_PNG))
    atomic_write.write_json(table_json, columns)
    with atomic_write.atomic_path(table_md) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(mouse_tables.markdown_table(columns) + "\n\n" + columns["markdown"] + "\n")
    mouse_plots.plot_areas(result.summary, columns, areas_png)
    paths = list(paths) + [table_json, table_md, areas_png]
    comparison = None
    if compare_mappings:
        known = {spec.mapping: ceiling} if spec.mapping in mouse_tables.COMPARED_MAPPINGS else None
        comparison = mouse_tables.mapping_comparison(recordings, spec, log=log, known=known)
        comparison_json, comparison_png = (os.path.join(fit_dir, n) for n in (COMPARISON_JSON, COMPARISON_PNG))
        atomic_write.write_json(comparison_json, comparison)
        mouse_plots.plot_mapping_comparison(comparison, comparison_png)
        paths += [comparison_json, comparison_png]
    log(columns["markdown"])
    return MouseFit(result, columns, comparison, paths)
