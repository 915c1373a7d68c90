"""Measurements: retrieval-score detection, masked outcomes, attention effects, statistics."""
