"""Fake of OSWorld's `desktop_env` package (see tests/fakes/README.md)."""
