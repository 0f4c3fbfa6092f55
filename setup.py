"""goaldriven: goal-driven models of neural systems (Nayebi 2022) in Keras 3 / TensorFlow.

The TensorFlow backend is an extra so that each host installs the build it can run:
  pip install -e '.[cpu]'   development and CI (tensorflow-cpu)
  pip install -e '.[gpu]'   CUDA hosts (tensorflow[and-cuda])
  pip install -e '.[tpu]'   Cloud TPU VMs (tensorflow-tpu; see README for the libtpu wheel index)
tensorflow-addons is deliberately absent: it does not import under Keras 3 (README, "Why no tensorflow-addons").
"""

import setuptools

TF_VERSION = "2.21.0"

setuptools.setup(
    name="goaldriven",
    version="0.1.0",
    description="Goal-driven models of neural systems: ConvRNNs, path integrators, learning rules, neural fits.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.14",
    packages=setuptools.find_packages(include=["goaldriven", "goaldriven.*"]) + ["goaldriven.gin_configs"],
    # The top-level gin/ folder ships inside the package as goaldriven/gin_configs so that an installed
    # package finds its configs; gin/ itself never gets an __init__.py (it would shadow gin-config).
    package_dir={"goaldriven.gin_configs": "gin"},
    package_data={"goaldriven.gin_configs": ["*.gin", "*/*.gin", "*/*/*.gin"]},
    install_requires=[
        "keras==3.15.1",
        "gin-config==0.5.0",
        "absl-py==2.5.1",
        "numpy>=2.0,<2.5",
        "scipy>=1.13",
        "scikit-learn>=1.4",  # the embedded digits data (tasks/digits.py); neural-fit mappings
        "matplotlib>=3.8",
        "h5py>=3.10",  # neural data and streamed features (goaldriven/neural_fits/; never pickle)
        "tensorboard>=2.20,<2.22",
        "tensorflow-datasets>=4.9.9,<5",  # ImageNet and CIFAR-10 (tasks/tfds_reading.py; imported when they run)
        "importlib_resources>=6",  # TFDS needs it to prepare ImageNet from the tars and does not declare it
        # goaldriven-search (goaldriven/search/): TPE, heartbeats and RetryHeartbeatStaleTrialCallback as checked with
        # 5.1.0 (several hyperopt-compatibility knobs are deprecated and go in 6.0); the PostgreSQL driver for many hosts.
        "optuna==5.1.0",
        "psycopg2-binary==2.9.13",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu=={TF_VERSION}"],
        "gpu": [f"tensorflow[and-cuda]=={TF_VERSION}"],
        # tensorflow-tpu's newest release is 2.20.0; the code is kept working on TF >=2.20,<2.22.
        "tpu": ["tensorflow-tpu==2.20.0"],
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "threadpoolctl>=3",
        ],  # threadpoolctl: one BLAS thread per test process
        # Optional: runs the reference PyTorch path integrator next to ours in bench/path_integration.py.
        "bench": ["torch==2.13.0"],
        "torch": ["torch==2.13.0"],  # reads pre-1.6 (non-zip) .pt files; zip .pt files need no torch
    },
    entry_points={
        "console_scripts": [
            "goaldriven-train=goaldriven.train:run_main",
            "goaldriven-fit=goaldriven.fit_neural:run_main",
            "goaldriven-identify=goaldriven.identify:run_main",
            "goaldriven-transfer=goaldriven.transfer_eval:run_main",
            "goaldriven-import=goaldriven.import_release:run_main",
            "goaldriven-search=goaldriven.search_cli:run_main",
        ],
    },
)
