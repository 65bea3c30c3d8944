"""Train a few-shot learner: `python train.py --config configs/omniglot_protonet.py:5w1s --workdir runs/pn`.

Overrides: `--config.total_steps=2000 --config.optim.lr=3e-4`. Starting again in the same workdir resumes.
Multi-host: `--coordinator_address HOST:PORT --num_processes N --process_id I` (or nothing on SLURM / TPU pods).
Exit codes: 0 done, 1 failed, 2 bad flag, 75 workdir in use, 128+N stopped by signal N (checkpoint saved; resume).
"""
from absl import app

from fewjax.cli.common import parse_flags
from fewjax.cli.distributed import DISTRIBUTED_FLAGS
from fewjax.cli.train import define_flags, main

define_flags()
DISTRIBUTED_FLAGS.define()

if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
