"""Data parallelism over local devices with ``jax.sharding``: one mesh axis, batch split, params replicated.

The training step is jitted once with these shardings; XLA partitions it and inserts the
all-reduce of the per-device gradient sums (no ``shard_map``, no explicit ``pmean``). Inside
the step, each physical batch (chunk) is constrained to be split over the ``"data"`` axis, so
every device holds ``chunk_size / num_devices`` examples of every chunk.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["DATA_AXIS", "DataParallel", "make_data_parallel"]

DATA_AXIS = "data"


class DataParallel:
    """Shardings of a one-axis device mesh: batch split along ``"data"``, everything else replicated.

    Attributes:
      mesh: the ``jax.sharding.Mesh`` with axis ``"data"``.
      num_devices: its size.
    """

    def __init__(self, devices: list[Any]):
        self.mesh = Mesh(np.asarray(devices), (DATA_AXIS,))
        self.num_devices = len(devices)
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    def batch_sharding(self, leading_axes: int = 0) -> NamedSharding:
        """Sharding of an array whose axis ``leading_axes`` is the example axis (split over devices)."""
        return NamedSharding(self.mesh, PartitionSpec(*([None] * leading_axes), DATA_AXIS))

    def constrain_batch(self, tree: Any, leading_axes: int = 0) -> Any:
        """``with_sharding_constraint`` splitting the example axis of every leaf (inside ``jit``)."""
        if self.num_devices == 1:
            return tree
        sharding = self.batch_sharding(leading_axes)
        return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)

    def put_replicated(self, tree: Any) -> Any:
        """Place every leaf of ``tree`` on all devices (parameters, optimizer state, ...)."""
        return jax.device_put(tree, self.replicated)

    def put_batch(self, tree: Any, leading_axes: int = 0) -> Any:
        """Place every leaf of ``tree`` split along its example axis ``leading_axes``."""
        return jax.device_put(tree, self.batch_sharding(leading_axes))


@functools.lru_cache(maxsize=None)
def make_data_parallel(num_devices: int = 0) -> DataParallel:
    """The data-parallel layout over the first ``num_devices`` local devices (0 = all of them).

    Args:
      num_devices: how many local devices to use, 0 for all (``train.devices``).

    Returns:
      A :class:`DataParallel` (the same object for the same argument, so compiled programs that
      close over it can be reused).

    Raises:
      ValueError: ``num_devices`` exceeds the local device count.

    Example:
      >>> dp = make_data_parallel(1)
      >>> dp.num_devices
      1
    """
    devices = jax.local_devices()
    if num_devices < 0 or num_devices > len(devices):
        raise ValueError(
            f"train.devices must be in [0, {len(devices)}] (0 = all local devices), got {num_devices}; lower it."
        )
    return DataParallel(devices[: num_devices or len(devices)])
