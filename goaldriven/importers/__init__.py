"""Importers of the thesis' released trained networks into goaldriven Keras models (nothing here downloads).

  convrnns      the 20 ImageNet ConvRNN / feedforward models of Chapter 2 (TF1 name-based `model.ckpt` files)
  mec           the MEC path integrators of Chapter 4 (TF2 object-based `ckpt-101` files)

Not built yet: mouse_vision (the Chapter 3 `.pt` files); common.py and goaldriven-import are ready for it.

Each importer maps the release's variable names onto a built goaldriven model and refuses any mismatch with a
message that lists the names (common.py). `goaldriven-import` turns a released file into a goaldriven checkpoint
directory with its gin config, which goaldriven-fit and goaldriven-train take like their own.
"""
