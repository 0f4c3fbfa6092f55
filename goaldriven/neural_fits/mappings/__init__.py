"""Mappings from model features to neural responses, one file per mapping, registered by name in MAPPINGS.

References: thesis Sections 2.5.6 (PLS-25 per time bin, Fig. 2.12a), 3.3 and 3.6.2 (One-to-One, Ridge alpha = 1,
PLS-25 compared for inter-animal consistency), 4.8.3 (ElasticNet-CV, chapter 4); spec ch2 8.7, ch3 A2.5, B4.1.

    ridge          ridge.py: sklearn Ridge(alpha, fit_intercept=True), primal, dual or from the shared Gram
    one_to_one     one_to_one.py: per target unit, the source column with the highest training Pearson r
    elasticnet_cv  elastic_net.py: per target unit, (alpha, l1_ratio) chosen by k-fold CV, then refit
    pls            pls.py: sklearn PLSRegression(25, scale=False) in kernel form
    factored       factored_readout.py: spatial mask x channel weights per unit (TensorFlow; factored_ops.py)

The interface, input checks and capability flags (accepts_gram, needs_maps, costly_fit) are in base.py; the Gram
machinery (GramCache / GramFeatures / GramRows and the centred products) in gram.py; the temporal wrappers
(TemporallyVarying / TemporallyFixed) in temporal.py.
"""

import inspect

from goaldriven.neural_fits.mappings.base import Mapper
from goaldriven.neural_fits.mappings.elastic_net import ElasticNetCV
from goaldriven.neural_fits.mappings.factored_readout import FactoredReadout
from goaldriven.neural_fits.mappings.one_to_one import OneToOne
from goaldriven.neural_fits.mappings.pls import PLSRegression
from goaldriven.neural_fits.mappings.ridge import Ridge

MAPPINGS: dict[str, type[Mapper]] = {
    "pls": PLSRegression,
    "ridge": Ridge,
    "elasticnet_cv": ElasticNetCV,
    "one_to_one": OneToOne,
    "factored": FactoredReadout,
}


def mapping_class(name: str) -> type[Mapper]:
    """The mapping class registered under `name` (its capability flags say which features it takes)."""
    if name not in MAPPINGS:
        raise ValueError(f"unknown mapping {name!r}; choose one of {sorted(MAPPINGS)}.")
    return MAPPINGS[name]


def mapping_options(name: str) -> tuple[str, ...]:
    """The keyword options the mapping registered under `name` accepts (its constructor's arguments)."""
    parameters = inspect.signature(mapping_class(name)).parameters.values()
    return tuple(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def make_mapping(name: str, **kwargs) -> Mapper:
    """A fresh, unfitted mapping registered under `name` (see MAPPINGS), built with `kwargs`.

    Raises ValueError in one line naming the options `name` accepts (an unknown option), or the bad value.
    """
    accepted = mapping_options(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"mapping {name!r} does not accept option(s) {unknown}; it accepts {', '.join(accepted)} "
            "(--mapping_options=key=value,...)."
        )
    try:
        return mapping_class(name)(**kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"mapping {name!r} option(s) {kwargs}: {' '.join(str(error).split())}") from error
