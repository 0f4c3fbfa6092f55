"""Audio front ends and data for the Word-Speaker-Noise task (thesis Chapter 6, spec 6.5)."""
