"""The bottom layer: architecture table, model loading, the decode loop, atomic file I/O."""
