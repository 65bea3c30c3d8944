"""Multi-process start-up: `jax.distributed.initialize` from flags, or from the environment (SLURM, TPU pods).

With no flags and no cluster environment this does nothing: the same command runs on one machine.
"""
from __future__ import annotations

import os

import jax
from absl import flags


class _Flags:
    def define(self):
        flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 for jax.distributed.")
        flags.DEFINE_integer("num_processes", None, "Number of processes in the job.")
        flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1.")
        flags.DEFINE_bool("distributed", False, "Initialise jax.distributed from the cluster environment (SLURM, TPU).")


DISTRIBUTED_FLAGS = _Flags()

_CLUSTER_ENV = ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def initialize_distributed(f) -> None:
    explicit = (f.coordinator_address, f.num_processes, f.process_id)
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise ValueError("--coordinator_address, --num_processes and --process_id go together; "
                             f"got {explicit}. Pass all three, or none (and --distributed on a cluster).")
        if not 0 <= f.process_id < f.num_processes:
            raise ValueError(f"--process_id={f.process_id} must lie in 0..{f.num_processes - 1}.")
        jax.distributed.initialize(coordinator_address=f.coordinator_address, num_processes=f.num_processes,
                                   process_id=f.process_id)
    elif f.distributed or (any(k in os.environ for k in _CLUSTER_ENV) and os.environ.get("SLURM_NTASKS", "1") != "1"):
        jax.distributed.initialize()
