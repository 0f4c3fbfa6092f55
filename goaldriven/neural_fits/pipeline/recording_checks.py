"""Checks of the recordings against a fit, made before the first layer is fitted (a fit can take hours).

  constant_units           per area and scored time point, the units whose trial-averaged responses do not vary over
                           the stimuli (zero variance: no correlation is defined); an area where every unit is
                           constant at every time point cannot be scored at all and is refused (ValueError).
  check_inter_animal_sources  the inter-animal mapping predicts each animal from the other animals' units (pooled) or
                           from each other animal alone (pairwise); a source smaller than the mapping needs (PLS:
                           n_components units) is refused, naming the area, the animal and the minimum.
Units that can be fitted but have no defined noise-corrected score (split-half reliability <= 0, or a mapping term
<= 0 in every bootstrap) are found after the fits, in summary.py.
"""

# n: stimuli, u: units, t: time bins, r: trials
from typing import Sequence

import numpy as np

from goaldriven.neural_fits import mappings
from goaldriven.neural_fits.data.neural_data import NeuralData
from goaldriven.neural_fits.metrics.correlation import pearson


def constant_units(
    data: NeuralData, areas: Sequence[str], time_points: Sequence[tuple[str, list[int]]]
) -> dict[str, dict[str, list[str]]]:
    """{area: {time label: [unit ids]}} of the units with zero variance over the stimuli (trial- and bin-averaged
    responses at that time point; pearson's criterion: std <= 1e-10 x max |value|). Only non-empty lists are kept.

    Raises ValueError when every unit of an area is constant at every time point (nothing there can be scored).
    """
    found: dict[str, dict[str, list[str]]] = {}
    hopeless = []
    for area in areas:
        units = np.flatnonzero(data.area == area)
        always = np.ones(len(units), bool)
        for label, bins in time_points:
            mean = data.responses[:, units][:, :, bins].mean(axis=(2, 3), dtype=np.float64)  # (n, u)
            constant = np.isnan(pearson(mean, mean))
            always &= constant
            if constant.any():
                found.setdefault(area, {})[label] = data.unit_ids[units[constant]].tolist()
        if always.all():
            hopeless.append(area)
    if hopeless:
        others = [a for a in areas if a not in hopeless]
        where = time_points[0][0] if len(time_points) == 1 else f"every time point ({len(time_points)})"
        fix = f" or leave them out (--areas={','.join(others)})" if others else ""
        raise ValueError(
            f"every unit of area(s) {hopeless} has constant responses over the stimuli (zero variance) in {where}: "
            f"no score is defined there. Fix: check how the file was written (all zeros? normalised away?){fix}."
        )
    return found


def check_inter_animal_sources(
    data: NeuralData, areas: Sequence[str], mapping: str, options: dict, mode: str, *, user_options: bool = True
) -> None:
    """Raises ValueError (one line: area, animal, source size, the minimum and the fix) when the inter-animal mapping
    `mapping` (with `options`) would get fewer source units than it needs for some target animal. `user_options`:
    the options are the user's --mapping_options (False: a default mapping standing in, e.g. PLS for `factored`)."""
    needed = mappings.make_mapping(mapping, **options).min_features
    if needed <= 1:
        return
    shown = f" (n_components={needed})" if "n_components" in mappings.mapping_options(mapping) else ""
    for area in areas:
        in_area = data.area == area
        counts = {a: int(np.sum(in_area & (data.animal == a))) for a in sorted(set(data.animal[in_area].tolist()))}
        if len(counts) < 2:
            continue  # no inter-animal step for this area (fitting.py says so)
        for target in counts:
            others = {a: c for a, c in counts.items() if a != target}
            if mode == "pooled":
                size, source = sum(others.values()), f"the {sum(others.values())} units of the other animals (pooled)"
            else:
                smallest = min(others, key=others.get)
                size, source = others[smallest], f"the {others[smallest]} units of animal {smallest!r} alone (pairwise)"
            if size < needed:
                fewer = f"fewer components (--mapping_options=n_components={size}), " if user_options else ""
                raise ValueError(
                    f"inter-animal consistency of area {area}: animal {target!r} would be predicted from {source}, "
                    f"but mapping {mapping!r}{shown} needs >= {needed} source units. Fix: {fewer}more units per "
                    "animal, or skip the step (--inter_animal=false)."
                )
