"""fewjax: few-shot and meta-learning in JAX.

The public API is curated here (optax style): `fewjax.maml_loss`, `fewjax.Task`, ... Subpackages:
`fewjax.models` (Flax modules), `fewjax.data` (sources, episodes, sharding), `fewjax.train` and `fewjax.eval`.
"""
from fewjax.kernels import (
    adapt,
    classification_loss,
    contrastive_loss,
    distillation_loss,
    imaml_loss,
    maml_loss,
    map_tasks,
    matching_loss,
    over_tasks,
    over_tasks_value_and_grad,
    protonet_loss,
    regression_loss,
    reptile_grad,
)
from fewjax import data, models
from fewjax.eval import evaluate
from fewjax.types import Batch, EmbedFn, LossFn, Params, Task

__version__ = "0.1.0"

__all__ = [
    "Batch", "EmbedFn", "LossFn", "Params", "Task", "adapt", "classification_loss", "contrastive_loss",
    "data", "distillation_loss", "evaluate", "imaml_loss", "maml_loss", "map_tasks", "matching_loss", "models",
    "over_tasks", "over_tasks_value_and_grad", "protonet_loss", "regression_loss", "reptile_grad",
]
