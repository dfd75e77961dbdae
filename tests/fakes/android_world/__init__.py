"""Fake of AndroidWorld's `android_world` package (see tests/fakes/README.md)."""
