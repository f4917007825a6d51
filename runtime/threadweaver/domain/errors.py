"""Errors the domain raises. Adapters map `ErrorKind` to their protocol (HTTP status codes)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    NOT_FOUND = "not_found"  # no such thread, or already destroyed
    FORBIDDEN = "forbidden"  # the acting account lacks the role the command needs
    CONFLICT = "conflict"  # the command contradicts the state (limits, last administrator)


class DomainError(Exception):
    """A command refused by the aggregate's rules. `message` keeps upstream's wording."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __repr__(self) -> str:
        return f"DomainError({self.kind.name}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationError(Exception):
    """Input that can never be a valid command, with every offending field named."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors

    @property
    def messages(self) -> list[str]:
        return [str(e) for e in self.errors]
