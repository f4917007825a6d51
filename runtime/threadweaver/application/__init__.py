"""Application layer: entity lifecycle, command and query services, projections.

It depends on the domain and on the ports in `ports.py`; adapters implement those ports.
"""
