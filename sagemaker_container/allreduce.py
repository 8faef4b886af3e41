"""Average arrays across the hosts of a job, over plain TCP: the example's data-parallel glue.

Why not torch.distributed or MPI: torch from the package index is gigabytes of CUDA wheels,
and MPI needs an SSH server in the image and Open MPI on the laptop. Averaging an MLP's few
thousand parameters once an epoch needs neither: the first host listens, the others connect
once, and every round each sends its arrays, the first host averages them and sends the mean
back. One host is the identity, so the same code runs on 1 or N hosts.

The cluster comes from the container contract: `SM_HOSTS`/`SM_CURRENT_HOST`/`SM_MASTER_ADDR`/
`SM_MASTER_PORT` where they are set (local runs, the sagemaker-training toolkit), else
`resourceconfig.json` with SageMaker's master port 7777.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_PORT = 7777
CONNECT_SECONDS = 120  # hosts of a job start within moments of each other; SageMaker's too


class PeerLost(Exception):
    """Another host stopped answering: it failed or was stopped."""


@dataclass(frozen=True)
class Cluster:
    hosts: list[str]
    rank: int
    master: tuple[str, int]

    @property
    def size(self) -> int:
        return len(self.hosts)

    @classmethod
    def from_environment(cls, config_dir: Path) -> Cluster:
        if os.environ.get("SM_HOSTS") and os.environ.get("SM_CURRENT_HOST"):
            hosts = json.loads(os.environ["SM_HOSTS"])
            current = os.environ["SM_CURRENT_HOST"]
        else:
            path = config_dir / "resourceconfig.json"
            resource = json.loads(path.read_text()) if path.is_file() else {}
            hosts = resource.get("hosts", ["algo-1"])
            current = resource.get("current_host", hosts[0])
        master = (os.environ.get("SM_MASTER_ADDR") or hosts[0],
                  int(os.environ.get("SM_MASTER_PORT") or DEFAULT_PORT))
        return cls(sorted(hosts), sorted(hosts).index(current), master)


class AllReduce:
    """A connected group of hosts; `mean` averages arrays across them."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.peers: list[socket.socket] = []
        if cluster.size == 1:
            return
        if cluster.rank == 0:
            with socket.create_server(("", cluster.master[1])) as server:
                server.settimeout(CONNECT_SECONDS)
                for _ in range(cluster.size - 1):
                    self.peers.append(server.accept()[0])
        else:
            self.peers.append(_connect(cluster.master))

    def mean(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self.cluster.size == 1:
            return arrays
        if self.cluster.rank > 0:
            _send(self.peers[0], arrays)
            return _receive(self.peers[0])
        total = [a.astype(np.float64) for a in arrays]
        for peer in self.peers:
            for index, array in enumerate(_receive(peer)):
                total[index] += array
        mean = [(t / self.cluster.size).astype(a.dtype) for t, a in zip(total, arrays,
                                                                           strict=True)]
        for peer in self.peers:
            _send(peer, mean)
        return mean

    def close(self) -> None:
        for peer in self.peers:
            peer.close()


def _connect(address: tuple[str, int]) -> socket.socket:
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        try:
            return socket.create_connection(address, timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise PeerLost(f"no master at {address[0]}:{address[1]}") from None
            time.sleep(0.05)


def _send(peer: socket.socket, arrays: list[np.ndarray]) -> None:
    data = pickle.dumps(arrays, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        peer.sendall(struct.pack("!Q", len(data)) + data)
    except OSError as error:
        raise PeerLost(str(error)) from None


def _receive(peer: socket.socket) -> list[np.ndarray]:
    peer.settimeout(None)  # an epoch takes as long as it takes
    size = struct.unpack("!Q", _exactly(peer, 8))[0]
    return pickle.loads(_exactly(peer, size))  # noqa: S301 - a peer of the same job


def _exactly(peer: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        try:
            chunk = peer.recv(min(left, 1 << 20))
        except OSError as error:
            raise PeerLost(str(error)) from None
        if not chunk:
            raise PeerLost("a host closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
