"""Typed errors. Each says what was wrong, so callers can tell a bad upload from an outage.

The server tags its INVALID_ARGUMENT messages with ``[kind]`` (one of the
``kind`` values below) so the client can raise the matching class.
"""

from __future__ import annotations

import re
from typing import Dict, Optional, Type


class BodyDanceError(Exception):
    """Base class of every error this SDK raises."""

    kind = "error"


class BadImageError(BodyDanceError, ValueError):
    """The photo could not be decoded or is not a usable RGB image."""

    kind = "bad_image"


class NoPersonError(BodyDanceError, ValueError):
    """No person (or too small a person) was found in the photo."""

    kind = "no_person"


class PhotoNotUprightError(BadImageError):
    """The person in the photo is upside down or lying sideways.

    ``quarter_turns``: how many quarter turns anticlockwise (``numpy.rot90``'s ``k``) stand them
    upright, when the evidence is clear; None when it is not (lying at a slant, say).
    """

    kind = "not_upright"

    def __init__(self, message: str, quarter_turns: Optional[int] = None):
        super().__init__(message)
        found = re.search(r"quarter_turns=(\d)", message)
        self.quarter_turns = quarter_turns if quarter_turns is not None else (int(found.group(1)) if found else None)


class BadTemplateError(BodyDanceError, ValueError):
    """The dance template file is missing, malformed or out of range."""

    kind = "bad_template"


class InvalidRequestError(BodyDanceError, ValueError):
    """The server refused a request's tensors (names, dtypes or shapes)."""

    kind = "invalid_request"


class ServerNotReadyError(BodyDanceError, ConnectionError):
    """No server answered, or the models are not loaded."""

    kind = "server_not_ready"


class RequestTimeoutError(BodyDanceError, TimeoutError):
    """A request did not finish within its deadline."""

    kind = "timeout"


class ServerStartError(BodyDanceError, RuntimeError):
    """The embedded tritonserver or one of its models failed to start."""

    kind = "server_start"


_BY_KIND: Dict[str, Type[BodyDanceError]] = {
    cls.kind: cls for cls in (BadImageError, PhotoNotUprightError, NoPersonError, BadTemplateError, InvalidRequestError)
}


def tag(kind: str, message: str) -> str:
    """Server side: prefix a message so the client can type it."""
    return f"[{kind}] {message}"


def from_tagged(message: str) -> BodyDanceError:
    """Client side: the typed error for a server message (InvalidRequestError if untagged)."""
    for kind, cls in _BY_KIND.items():
        marker = f"[{kind}]"
        if marker in message:
            return cls(message.split(marker, 1)[1].strip())
    return InvalidRequestError(message)
