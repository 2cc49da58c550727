"""Fixtures: filled in by the module owner."""
