"""Shared fixtures. Heavier fixtures (tiny models, sample catalog) are session-scoped and built once."""
