"""Object solution times: per-image decoder d' (dprime.py) and the OST of each image from a model's layers over time
(solution_times.py)."""
