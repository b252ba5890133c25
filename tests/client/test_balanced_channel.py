"""Client-side gRPC balancing without Triton: the channel arguments, the targets, and in-process fake servers.

tritonclient sets its own channel arguments (message-size limits, keepalive) only when it is given
none; a balanced target passes ``channel_args``, so the client must repeat them. The fake servers
speak Triton's gRPC protocol (tritonclient's own service stubs), answer ModelInfer with a tensor
larger than gRPC's 4 MB default receive limit, and count what they served.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent import futures

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from bodydance_client.aio import AsyncBodyDanceClient
from bodydance_client.policy import balanced_target, is_balanced_target
from bodydance_client.sdk import BodyDanceClient
from bodydance_client.transport import MAX_MESSAGE_BYTES, channel_args, connection_options

BIG = 5 * 2**20 + 3  # bytes of the fake output: past gRPC's 4 MiB default receive limit


def _captured_options(monkeypatch, module, make):
    """The options ``make()`` passes to ``module.insecure_channel`` (the channel is still made)."""
    seen = []
    real = module.insecure_channel

    def spy(target, options=None, *args, **kwargs):
        seen.append((target, list(options or [])))
        return real(target, options, *args, **kwargs)
    monkeypatch.setattr(module, "insecure_channel", spy)
    make()
    assert len(seen) == 1
    return seen[0]


def test_balanced_targets_keep_every_default_channel_argument_of_tritonclient(monkeypatch):
    _, defaults = _captured_options(monkeypatch, grpc, lambda: grpcclient.InferenceServerClient("127.0.0.1:1"))
    assert ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES) in defaults
    target = "ipv4:127.0.0.1:1,127.0.0.1:2"
    seen_target, ours = _captured_options(monkeypatch, grpc, lambda: BodyDanceClient(target))
    assert seen_target == target
    assert set(defaults) <= set(ours)  # message limits and keepalive, as tritonclient sets them
    assert ("grpc.lb_policy_name", "round_robin") in ours
    assert dict(ours)["grpc.max_send_message_length"] == dict(ours)["grpc.max_receive_message_length"] == 2**31 - 1


def test_the_asyncio_flavour_gets_the_same_channel_arguments(monkeypatch):
    _, defaults = _captured_options(monkeypatch, grpc.aio, lambda: grpcaio.InferenceServerClient("127.0.0.1:1"))

    async def make():
        client = AsyncBodyDanceClient("dns:///localhost:1", lb_policy="pick_first")
        await client.close()
    _, ours = _captured_options(monkeypatch, grpc.aio, lambda: asyncio.run(make()))
    assert set(defaults) <= set(ours) and ("grpc.lb_policy_name", "pick_first") in ours


def test_plain_urls_keep_tritonclients_own_channel(monkeypatch):
    _, defaults = _captured_options(monkeypatch, grpc, lambda: grpcclient.InferenceServerClient("127.0.0.1:1"))
    _, ours = _captured_options(monkeypatch, grpc, lambda: BodyDanceClient("127.0.0.1:1"))
    assert ours == defaults and connection_options("127.0.0.1:1") == {}
    assert "grpc.lb_policy_name" not in dict(ours)


def test_which_urls_are_balanced_targets():
    for url in ("dns:///bodydance-triton-grpc.default.svc.cluster.local:8001", "dns:bodydance:8001",
                "ipv4:10.0.0.1:8001,10.0.0.2:8001", "ipv6:[::1]:8001"):
        assert is_balanced_target(url), url
    for url in ("127.0.0.1:8001", "localhost:8001", "triton:8001", "unix:///tmp/triton.sock"):
        assert not is_balanced_target(url), url
    assert dict(channel_args("pick_first"))["grpc.lb_policy_name"] == "pick_first"


def test_balanced_target_joins_ip_addresses_and_refuses_names():
    assert balanced_target(["10.0.0.1:8001", "10.0.0.2:8002"]) == "ipv4:10.0.0.1:8001,10.0.0.2:8002"
    assert balanced_target(["[::1]:8001", "[fe80::1]:8001"]) == "ipv6:[::1]:8001,[fe80::1]:8001"
    for bad in ([], ["triton:8001"], ["10.0.0.1"], ["10.0.0.1:x"], ["10.0.0.1:1", "[::1]:2"]):
        with pytest.raises(ValueError):
            balanced_target(bad)


def test_shared_memory_is_refused_on_a_balanced_target():
    with pytest.raises(ValueError, match="shared_memory"):
        BodyDanceClient("ipv4:127.0.0.1:1,127.0.0.1:2", shared_memory=True)
    BodyDanceClient(["127.0.0.1:1", "127.0.0.1:2"], shared_memory=True).close()  # plain URLs: still fine


# -- fake servers speaking Triton's protocol ------------------------------------------------
class _BigTensor(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self):
        self.served = 0
        self.lock = threading.Lock()

    def ModelInfer(self, request, context):
        with self.lock:
            self.served += 1
        response = service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
        response.outputs.add(name="big", datatype="UINT8", shape=[BIG])
        response.raw_output_contents.append(bytes(BIG))
        return response


@pytest.fixture()
def fake_servers():
    servers, servicers, ports = [], [], []
    for _ in range(3):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        servicer = _BigTensor()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        servers.append(server)
        servicers.append(servicer)
    yield [f"127.0.0.1:{p}" for p in ports], servicers, servers
    for server in servers:
        server.stop(grace=None)


def _request():
    tensor = grpcclient.InferInput("x", [1], "UINT8")
    tensor.set_data_from_numpy(np.zeros(1, np.uint8))
    return [tensor]


def test_round_robin_spreads_requests_over_every_server_and_receives_large_responses(fake_servers):
    addresses, servicers, _ = fake_servers
    with BodyDanceClient(balanced_target(addresses), retry_deadline_s=5) as client:
        for _ in range(12):
            result = client._infer("fake", _request(), None, retry=True, what="fake")
            assert result.as_numpy("big").shape == (BIG,)
    served = [s.served for s in servicers]
    # Evenly once every connection is up; the first requests go to whichever connected first.
    assert sum(served) == 12 and min(served) >= 2, served


def test_without_the_message_limits_the_same_response_is_refused(fake_servers):
    """Why the limits are repeated: tritonclient given channel arguments keeps none of its own."""
    addresses, _, _ = fake_servers
    bare = grpcclient.InferenceServerClient(balanced_target(addresses),
                                            channel_args=[("grpc.lb_policy_name", "round_robin")])
    with pytest.raises(InferenceServerException, match="RESOURCE_EXHAUSTED"):
        bare.infer("fake", _request())
    bare.close()


def test_a_stopped_server_is_skipped_and_the_retry_lands_elsewhere(fake_servers):
    addresses, servicers, servers = fake_servers
    with BodyDanceClient(balanced_target(addresses), retry_deadline_s=10) as client:
        for _ in range(30):  # until every connection is up and has served
            client._infer("fake", _request(), None, retry=True, what="fake")
            if min(s.served for s in servicers) >= 1:
                break
        before = [s.served for s in servicers]
        assert min(before) >= 1
        servers[1].stop(grace=None)
        for _ in range(9):
            assert client._infer("fake", _request(), None, retry=True, what="fake").as_numpy("big").shape == (BIG,)
    after = [s.served for s in servicers]
    assert after[1] == before[1]
    assert after[0] + after[2] == before[0] + before[2] + 9 and after[0] > before[0] and after[2] > before[2]
