"""From a checkpoint to scores: stimuli and presentation (stimuli.py), feature extraction and its cache
(extraction.py), the feature store and its views (feature_store.py), the fit loop (fitting.py), report files
(report.py), recordings simulated from a model's own layers (simulate_from_model.py) and the whole pipeline as one
library call (fit_checkpoint.py, what goaldriven-fit runs)."""
