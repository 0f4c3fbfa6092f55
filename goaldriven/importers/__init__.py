"""Importers of the thesis' released trained networks into goaldriven Keras models (nothing here downloads).

  convrnns      the 20 ImageNet ConvRNN / feedforward models of Chapter 2 (TF1 name-based `model.ckpt` files)
Not built yet: mec (the Chapter 4 path integrators' TF2 `ckpt-101` files) and mouse_vision (the Chapter 3 `.pt`
files); common.py and goaldriven-import are ready for them.

Each importer maps the release's variable names onto a built goaldriven model and refuses any mismatch with a
message that lists the names (common.py). `goaldriven-import` turns a released file into a goaldriven checkpoint
directory with its gin config, which goaldriven-fit and goaldriven-train take like their own.
"""
