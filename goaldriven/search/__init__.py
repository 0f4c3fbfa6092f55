"""Distributed architecture and metaparameter search (thesis Chapters 2 and 5): Optuna TPE on a shared store.

storage.py (PostgreSQL / SQLite / journal, heartbeats and retries), samplers.py (TPE), spaces.py (search spaces as
functions of a trial returning gin bindings), objective.py (a trial = a goaldriven-train run), worker.py (create a
search once, run workers until a cap), report.py (importances, figures, the best configuration as gin).
The console script is goaldriven-search (goaldriven/search_cli.py); docs/search.md explains the use on many hosts.
"""
