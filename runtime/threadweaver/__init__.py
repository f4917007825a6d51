"""thread-weaver runtime: an event-sourced, sharded chat backend."""

__version__ = "0.1.0"
