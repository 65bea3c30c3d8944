"""fewjax: few-shot and meta-learning in JAX.

The public API is curated here (optax style): `fewjax.maml_loss`, `fewjax.Task`, ... Subpackages:
`fewjax.models` (Flax modules), `fewjax.data` (sources, episodes), `fewjax.text`, `fewjax.methods`,
`fewjax.experiment` (a run's config, data, state), `fewjax.train`, `fewjax.eval`; `fewjax.load(workdir)` brings a
trained run back (docs/architecture.md).
`import fewjax` loads the kernels and types only (JAX and optax); the subpackages load on first use, so reusing
one kernel in research code does not pull Flax, Orbax, tokenizers or the data loaders.
"""
import importlib
from fewjax.kernels import (
    adapt,
    classification_loss,
    contrastive_loss,
    distillation_loss,
    imaml_loss,
    inner_minibatches,
    logistic_head,
    lslr_init,
    maml_loss,
    mamlpp_adapt,
    mamlpp_loss,
    mamlpp_step_weights,
    map_tasks,
    matching_loss,
    near_duplicate_weights,
    over_tasks,
    over_tasks_value_and_grad,
    protonet_loss,
    regression_loss,
    reptile_grad,
    setfit_loss,
)
from fewjax.types import Batch, EmbedFn, LossFn, Params, Task

__version__ = "0.1.0"

_SUBPACKAGES = ("cli", "data", "eval", "experiment", "methods", "models", "placement", "text", "train")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"fewjax.{name}")
    if name == "evaluate":
        return importlib.import_module("fewjax.eval").evaluate
    if name == "load":
        return importlib.import_module("fewjax.experiment.load").load
    raise AttributeError(f"module 'fewjax' has no attribute {name!r}")

__all__ = [
    "Batch", "EmbedFn", "LossFn", "Params", "Task", "adapt", "classification_loss", "contrastive_loss", "data",
    "distillation_loss", "evaluate", "load", "imaml_loss", "inner_minibatches", "logistic_head", "lslr_init",
    "maml_loss", "mamlpp_adapt", "mamlpp_loss", "mamlpp_step_weights", "map_tasks", "matching_loss", "models",
    "near_duplicate_weights", "over_tasks", "over_tasks_value_and_grad", "protonet_loss", "regression_loss",
    "reptile_grad", "setfit_loss",
]
