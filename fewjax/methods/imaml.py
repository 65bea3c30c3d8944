"""iMAML (Rajeswaran et al. 2019): a proximal inner problem and its implicit meta-gradient."""
from __future__ import annotations

import functools

import fewjax
from fewjax.kernels.imaml import imaml_adapt
from fewjax.methods import backbone
from fewjax.methods.maml import inner_rates, predictor, task_loss
from fewjax.methods.method import Method, mean_gradient, per_task_metrics, task_chunk_size
from fewjax.models import apply_fn


def build(config) -> Method:
    model = backbone.build_model(config, classes=config.ways)
    apply, chunk, rates = apply_fn(model), task_chunk_size(config), inner_rates(config)
    loss_fn = task_loss(config, apply)
    imaml = functools.partial(fewjax.imaml_loss, loss_fn, lam=config.imaml_lam, cg_steps=config.imaml_cg_steps,
                              cg_damping=config.imaml_cg_damping, **rates)

    def init(rng, x):
        return model.init(rng, x)["params"]

    def adapt(params, support):
        return imaml_adapt(loss_fn, params, support, lam=config.imaml_lam, inner_steps=config.eval_inner_steps,
                           **rates)

    train = functools.partial(imaml, inner_steps=config.inner_steps, diagnostics=False)
    test = functools.partial(imaml, inner_steps=config.eval_inner_steps, diagnostics=True)
    return Method("imaml", model, init, mean_gradient(train, chunk), per_task_metrics(test, chunk),
                  predictor(apply, adapt), adapt=adapt)
