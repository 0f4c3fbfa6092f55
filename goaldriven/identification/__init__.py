"""Learning-rule identification from network observables (thesis Chapter 6 Part II; spec ch5 11)."""
