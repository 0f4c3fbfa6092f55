"""Comparisons of models with neural data: rate maps and spatial scores now; mappings and noise ceilings later."""
