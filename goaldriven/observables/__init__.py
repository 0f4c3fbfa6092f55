"""Observables of learning-rule identification (thesis Chapter 6): statistics, observed layers, the recorder hook and
its HDF5 file (spec ch5_ch6 Section 11.3)."""
