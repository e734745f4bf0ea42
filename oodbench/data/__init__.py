"""Data sources, caches and the built-in datasets' constructions."""
