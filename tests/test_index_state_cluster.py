"""tests/test_index_state.py's state machine on the three-primary cluster (the same model
in 4 buckets): its own file so that xdist runs it beside the one-server machine
(``--dist loadfile`` keeps a file's tests in one worker)."""

from __future__ import annotations

import redis
import redis.cluster

import redmodel
from tests.test_index_state import CLUSTER_EXAMPLES, BucketHat, run_machine


def test_indexes_follow_the_python_model_on_the_cluster(
        redis_cluster_client: redis.cluster.RedisCluster) -> None:
    def flush() -> None:
        redis_cluster_client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)

    run_machine(redmodel.Store(redis_cluster_client), BucketHat, flush, CLUSTER_EXAMPLES)
