"""evaluate.py's command line: flags, then `fewjax.eval.workdir.evaluate_workdir`; the JSON record on stdout
(with the config's published result beside the accuracy, also as one line on stderr, when it names one)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import flags, logging

from fewjax.cli.common import run_or_fail
from fewjax.cli.distributed import initialize_distributed
from fewjax.eval.evaluate import EVAL_MEMORY_MB
from fewjax.eval.workdir import evaluate_workdir, save_record


class _Flags:
    def define(self):
        flags.DEFINE_string("workdir", None, "The training run's workdir.", required=True)
        flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number.")
        flags.DEFINE_enum("split", "test", ["test", "val"], "Which classes to evaluate on.")
        flags.DEFINE_integer("episodes", 600, "Number of episodes.")
        flags.DEFINE_integer("batch_size", 50, "Episodes per vmapped batch (at most; see --memory_mb).")
        flags.DEFINE_float("memory_mb", EVAL_MEMORY_MB, "Fewer episodes per batch when one batch's compiled program would "
                           "plan for more memory than this, per device.")
        flags.DEFINE_integer("ways", None, "Override the test ways.")
        flags.DEFINE_integer("shots", None, "Override the test shots.")
        flags.DEFINE_integer("queries", None, "Override the test queries per class.")
        flags.DEFINE_integer("inner_steps", None, "Override the test-time inner steps (MAML family, Reptile).")
        flags.DEFINE_integer("inner_batch_size", None, "Override Reptile's test-time inner mini-batch size "
                             "(0: every step on the whole support set).")
        flags.DEFINE_string("data", None, "Evaluate on your own data instead: an image folder (PATH/<class>/<image>), "
                            "or a .csv/.tsv/.jsonl file for a text checkpoint; every class in it a test class.")
        flags.DEFINE_enum("invert", "auto", ["auto", "true", "false"], "Image folders given with --data: make "
                          "the foreground (ink) high. auto inverts grayscale images with a light background (with "
                          "a warning), true / false force it.")
        flags.DEFINE_string("text_column", None, "Text checkpoints with --data FILE: the column holding the text.")
        flags.DEFINE_string("label_column", None, "Text checkpoints with --data FILE: the column holding the label.")
        flags.DEFINE_string("dataset", None, "Score on another built-in dataset of the same kind: a text checkpoint "
                            "on another text dataset's test classes (a CLINC150-trained encoder on fewrel).")
        flags.DEFINE_integer("max_length", None, "Text checkpoints: tokens per example (0: the smallest bucket that "
                             "fits the data, up to 512); with --dataset or --data, the new data's length (--dataset's "
                             "default: that dataset's preset length, clinc150 32, fewrel 64; --data's: 0).")
        flags.DEFINE_string("data_dir", None, "Where the dataset files are, if not where training found them.")
        flags.DEFINE_bool("ema", False, "Evaluate the run's moving average of its parameters (trained with "
                          "--config.ema_decay > 0; an error otherwise).")
        flags.DEFINE_bool("transductive", None, "MAML family, Reptile: --notransductive classifies each query with "
                          "the support set alone (Nichol et al.'s non-transductive protocol; default: the run's "
                          "config, transductive).")
        flags.DEFINE_bool("within_alphabet", None, "Omniglot: Lake's one-shot test, every episode's classes from one "
                          "alphabet, support and query drawn by different people (default: the run's config; "
                          "off with --data, whose folders have no alphabets).")


EVAL_FLAGS = _Flags()


def main(argv):
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    initialize_distributed(flags.FLAGS)
    record = run_or_fail(argv[0], lambda: evaluate_workdir(flags.FLAGS, save=False))
    if "published" in record and "accuracy" in record:
        print(f"accuracy {100 * record['accuracy']:.2f} +- {100 * record['ci95']:.2f} ({record['episodes']} "
              f"episodes); published: {record['published']}", file=sys.stderr, flush=True)
    print(json.dumps(record), flush=True)
    save_record(Path(flags.FLAGS.workdir), record)
