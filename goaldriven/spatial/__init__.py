"""Spatial tuning of units in an arena: rate maps (ratemaps.py) and grid and border scores (scores.py).

Shared by path integration (tasks/path_integration_eval.py) and the neural fits of MEC recordings; imports nothing
else of goaldriven.
"""
