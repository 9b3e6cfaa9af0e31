"""What the Flower test modules share: a Grid without a network, and a hard-timeout subprocess runner."""
import json
import os
import subprocess
import sys
import textwrap

from flwr.app import Context, RecordDict
from flwr.supercore.task_identity import TaskIdentity

# Messages can only be created inside a Flower task; the local grid plays the task (flwr's internal identity).
TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


class LocalGrid:
    """A Grid without a network: node 100 + i owns partition `partitions[i]` (default i) and answers by calling
    `client_app` directly, with one Context per node that persists across rounds (as a SuperNode's does)."""

    def __init__(self, client_app, n_nodes: int, partitions=None, num_partitions=None):
        self.client_app = client_app
        self.partitions = list(partitions if partitions is not None else range(n_nodes))
        num_partitions = num_partitions or n_nodes
        self.contexts = [Context(run_id=1, node_id=100 + i, state=RecordDict(), run_config={},
                                 node_config={"partition-id": p, "num-partitions": num_partitions})
                         for i, p in enumerate(self.partitions)]

    def get_node_ids(self):
        return [100 + i for i in range(len(self.partitions))]

    def send_and_receive(self, messages, *, timeout=None):
        return [self.client_app(m, self.contexts[m.metadata.dst_node_id - 100]) for m in messages]


def in_subprocess(code: str, timeout: float) -> dict:
    """Run `code` (which prints one JSON line last) in a fresh interpreter, killed after `timeout` seconds: a broken
    Ray install or a hung SuperNode fails the test instead of hanging it."""
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, f"exit code {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])
