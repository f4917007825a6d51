"""Shared test helpers (real processes, no mocks)."""
