"""Prompts and samples: synthetic text, needle-in-a-haystack grids, long-context task formats."""
