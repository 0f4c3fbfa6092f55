"""Audio: the cochleagram front end (cochleagram.py) and the Word-Speaker-Noise data (wsn_data.py, wsn_standin.py).

Thesis Chapter 6 (spec ch5 6.5, 11.2). Imports nothing else of goaldriven but the rank-0 utilities.
"""
