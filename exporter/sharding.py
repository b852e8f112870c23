"""Splits clusters over N tierwatch processes by rendezvous hashing.

A cluster is the unit (its replicas' lag needs its primary's WAL history), and going from
n to n+1 shards moves only the clusters the new shard wins: about 1/(n+1) of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TypeVar

from exporter.config import Cluster, Shard

C = TypeVar("C")


def _weight(cluster_name: str, shard_index: int) -> int:
    digest = hashlib.blake2b(f"{shard_index}\0{cluster_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(cluster_name: str, count: int) -> int:
    return max(range(count), key=lambda index: _weight(cluster_name, index))


def select(clusters: Iterable[Cluster], shard: Shard) -> tuple[Cluster, ...]:
    if shard.count == 1:
        return tuple(clusters)
    return tuple(c for c in clusters if shard_of(c.name, shard.count) == shard.index)
