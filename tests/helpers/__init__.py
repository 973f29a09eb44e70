"""Builders shared by several test folders (importable because tests/conftest.py puts tests/ on sys.path)."""
