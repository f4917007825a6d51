"""Adapters: implementations of the application ports (storage, HTTP, Kubernetes)."""
