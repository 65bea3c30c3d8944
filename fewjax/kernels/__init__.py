"""Pure-functional meta-learning kernels: `(fn, params, task, *, hyperparameters) -> (value, metrics)`."""
from fewjax.kernels._episodic import DISTANCES
from fewjax.kernels.adapt import adapt
from fewjax.kernels.batching import map_tasks, over_tasks, over_tasks_value_and_grad
from fewjax.kernels.distill import distillation_loss
from fewjax.kernels.imaml import imaml_loss
from fewjax.kernels.losses import classification_loss, regression_loss
from fewjax.kernels.maml import maml_loss
from fewjax.kernels.mamlpp import lslr_init, mamlpp_adapt, mamlpp_loss, mamlpp_step_weights
from fewjax.kernels.matching import matching_loss
from fewjax.kernels.protonet import protonet_loss
from fewjax.kernels.reptile import inner_minibatches, reptile_grad
from fewjax.kernels.setfit import logistic_head, setfit_loss
from fewjax.kernels.siamese import contrastive_loss
from fewjax.kernels.support_filter import near_duplicate_weights

__all__ = [
    "DISTANCES", "adapt", "classification_loss", "contrastive_loss", "distillation_loss", "imaml_loss",
    "inner_minibatches", "logistic_head", "lslr_init", "maml_loss", "mamlpp_adapt", "mamlpp_loss",
    "mamlpp_step_weights", "map_tasks", "matching_loss", "near_duplicate_weights", "over_tasks",
    "over_tasks_value_and_grad", "protonet_loss", "regression_loss", "reptile_grad", "setfit_loss",
]
