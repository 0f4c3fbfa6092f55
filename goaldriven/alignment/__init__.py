"""Biologically plausible learning rules as custom-gradient layers (thesis Chapter 5).

Empty until the alignment issue lands: nothing here is usable yet.
"""
