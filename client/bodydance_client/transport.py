"""What both clients hold about their servers: settings, connections, failover, shared-memory regions.

:class:`ClientCore` is the common base of the blocking and the asyncio client;
each passes the connection class of its flavour (``tritonclient.grpc`` or
``tritonclient.grpc.aio``) and makes the calls itself, blocking or awaited.
The shared-memory regions holding a subject's tensors are made and destroyed
here, once; only the (un)registration calls belong to the flavour.

A URL that is a balanced gRPC target (``dns:///...``, ``ipv4:...``) is connected with channel
arguments that name the load-balancing policy (:func:`channel_args`). tritonclient uses channel
arguments *instead of* its own, so they repeat its message-size limits and keepalive settings too:
without them gRPC's 4 MB default would refuse the larger frame responses.
"""

from __future__ import annotations

import dataclasses
import uuid
import warnings
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np
import tritonclient.grpc as grpcclient

from bodydance_client import contract as C
from bodydance_client.errors import PhotoNotUprightError
from bodydance_client.policy import (
    DEFAULT_LB_POLICY, Attempt, Failover, is_balanced_target, retry_attempts, server_urls,
)

# tritonclient's own limit (Triton's MAX_GRPC_MESSAGE_SIZE, INT32_MAX), which its default channel sets.
MAX_MESSAGE_BYTES = grpcclient.MAX_GRPC_MESSAGE_SIZE


def channel_args(lb_policy: str = DEFAULT_LB_POLICY) -> List[Tuple[str, Any]]:
    """gRPC channel arguments for a balanced target: tritonclient's defaults plus the LB policy."""
    keepalive = grpcclient.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.lb_policy_name", lb_policy),
    ]


def connection_options(url: str, lb_policy: str = DEFAULT_LB_POLICY) -> Dict[str, Any]:
    """Keyword arguments of either flavour's ``InferenceServerClient`` for ``url``."""
    return {"channel_args": channel_args(lb_policy)} if is_balanced_target(url) else {}


def tensor_input(spec: C.TensorSpec, value: np.ndarray):
    tensor = grpcclient.InferInput(spec.name, list(value.shape), C.TRITON_DTYPE[spec.dtype])
    tensor.set_data_from_numpy(np.ascontiguousarray(value, dtype=spec.dtype))
    return tensor


@dataclasses.dataclass
class SharedRegion:
    """One system shared-memory region (``/name``) holding the frame ensemble's subject tensors."""

    name: str
    handle: Any
    byte_size: int

    @property
    def key(self) -> str:
        return f"/{self.name}"

    @property
    def registration(self) -> Tuple[str, str, int]:
        """Arguments of ``register_system_shared_memory`` (either client flavour)."""
        return self.name, self.key, self.byte_size

    def destroy(self) -> None:
        import tritonclient.utils.shared_memory as shm

        shm.destroy_shared_memory_region(self.handle)


def share_subject_tensors(tensors: Dict[str, np.ndarray]) -> Tuple[SharedRegion, list]:
    """Copy the frame ensemble's subject tensors into a new region -> (region, inputs pointing into it)."""
    import tritonclient.utils.shared_memory as shm

    arrays = [np.ascontiguousarray(tensors[s.name], dtype=s.dtype) for s in C.FRAME_SUBJECT_TENSORS]
    total = sum(a.nbytes for a in arrays)
    name = f"bodydance_{uuid.uuid4().hex[:12]}"
    region = SharedRegion(name, shm.create_shared_memory_region(name, f"/{name}", total), total)
    offset, inputs = 0, []
    for spec, array in zip(C.FRAME_SUBJECT_TENSORS, arrays):
        shm.set_shared_memory_region(region.handle, [array], offset=offset)
        tensor = grpcclient.InferInput(spec.name, list(array.shape), C.TRITON_DTYPE[spec.dtype])
        tensor.set_shared_memory(name, array.nbytes, offset=offset)
        inputs.append(tensor)
        offset += array.nbytes
    return region, inputs


class ClientCore:
    """Settings, one connection per URL, the failover shared by all requests, the live shm regions.

    Args:
        urls: ``host:port`` of a server's gRPC endpoint, or several for failover; or a gRPC target
            that gRPC balances over several servers (``dns:///service:8001``, ``ipv4:a:8001,b:8001``).
        connect: the flavour's connection class, called with each URL (and ``channel_args`` for a
            balanced target).
        timeout_s: deadline of each request.
        retry_deadline_s: how long a request keeps being retried while servers are unavailable.
        window: frames in flight at once in ``frames``.
        shared_memory: pass subject tensors through system shared memory (server on this host).
        max_side: longest side of the video in px; the photo's own resolution up to it.
        turn_upright: when the server finds the person upside down or sideways and says clearly how
            to turn the photo, turn it and try again (with a RuntimeWarning); else the error stands.
        lb_policy: gRPC load-balancing policy of balanced targets (``round_robin``; ``pick_first``
            keeps to one server while it answers).
    """

    def __init__(self, urls: Union[str, Sequence[str]], connect: Callable[[str], Any], *, timeout_s: float,
                 retry_deadline_s: float, window: int, shared_memory: bool, max_side: int, turn_upright: bool,
                 lb_policy: str = DEFAULT_LB_POLICY):
        self.urls = server_urls(urls)
        if shared_memory and any(is_balanced_target(u) for u in self.urls):
            # A region is registered through the connection, i.e. on whichever server gRPC picks.
            raise ValueError("shared_memory=True needs plain host:port URLs (each server registers the region); "
                             "a balanced target spreads requests over servers that would not have it")
        self.max_side = int(max_side)
        self.turn_upright = bool(turn_upright)
        self.timeout_s = timeout_s
        self.retry_deadline_s = retry_deadline_s
        self.window = max(1, window)
        self.shared_memory = shared_memory
        self._clients = [connect(u, **connection_options(u, lb_policy)) for u in self.urls]
        self._failover = Failover(len(self._clients))
        self._shm_regions: List[SharedRegion] = []

    def _turned(self, canvas: np.ndarray, image: np.ndarray, err: PhotoNotUprightError):
        """Both copies of a photo the server found not upright, turned as its evidence says (with a
        warning that says so); the error again when turning is off or the evidence is unclear."""
        if not self.turn_upright or err.quarter_turns is None:
            raise err
        warnings.warn(f"turned the photo to stand the person upright ({err})", RuntimeWarning, stacklevel=3)
        return (np.ascontiguousarray(np.rot90(canvas, err.quarter_turns)),
                np.ascontiguousarray(np.rot90(image, err.quarter_turns)))

    def _attempts(self, what: str, retry: bool = True) -> Iterator[Attempt]:
        return retry_attempts(what, deadline_s=self.retry_deadline_s, failover=self._failover, retry=retry)

    def _new_subject_inputs(self, subject) -> Tuple[list, List[SharedRegion]]:
        """(the subject inputs of every frame request, the regions the servers must register first)."""
        if not self.shared_memory:
            return [tensor_input(s, subject.tensors[s.name]) for s in C.FRAME_SUBJECT_TENSORS], []
        region, inputs = share_subject_tensors(subject.tensors)
        self._shm_regions.append(region)  # kept before registering, so a failed registration is released too
        return inputs, [region]

    def _take_shm_regions(self) -> List[SharedRegion]:
        """The live regions, forgotten here: the caller unregisters them on every server, then destroys them."""
        regions, self._shm_regions = self._shm_regions, []
        return regions
