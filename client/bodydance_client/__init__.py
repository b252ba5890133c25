"""BodyDance client SDK: one photo + a dance template -> frames or an MP4, over Triton gRPC.

Imports numpy, tritonclient[grpc], Pillow and PyAV only (no torch).
"""

from bodydance_client.errors import (  # noqa: F401
    BadImageError, BadTemplateError, BodyDanceError, InvalidRequestError, NoPersonError,
    RequestTimeoutError, ServerNotReadyError, ServerStartError,
)


def __getattr__(name):
    # The SDK classes load lazily so `import bodydance_client.contract` stays light for the server side.
    if name in ("BodyDanceClient", "Subject"):
        from bodydance_client import sdk

        return getattr(sdk, name)
    if name == "AsyncBodyDanceClient":
        from bodydance_client.aio import AsyncBodyDanceClient

        return AsyncBodyDanceClient
    raise AttributeError(name)
