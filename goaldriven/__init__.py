"""goaldriven: goal-driven models of neural systems (Nayebi, "A Goal-Driven Approach to Systems Neuroscience", 2022).

Subpackages: cells (recurrent cells), models (networks), alignment (learning rules), tasks (objectives, data and the
distributed training loop), neural_fits (model-to-brain comparisons). Entry points: goaldriven.train (and, later,
goaldriven.fit_neural) are the only modules that read absl flags or import gin.
"""

__version__ = "0.1.0"
