"""The MAML family on a classifier (or regressor) backbone: MAML (Finn et al. 2017), first-order MAML, Meta-SGD
(Li et al. 2017: per-parameter inner rates, meta-learned) and ANIL (Raghu et al. 2020: only the head adapts)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

import fewjax
from fewjax.methods import backbone
from fewjax.methods.method import Method, inner_optimizer, mean_gradient, per_task_metrics, task_chunk_size
from fewjax.models import apply_fn, head_mask


def task_loss(config, apply):
    """The per-example loss the inner loop fits: cross-entropy, or squared error for sinusoid regression."""
    return (fewjax.regression_loss if config.dataset == "sinusoid" else fewjax.classification_loss)(apply)


def inner_rates(config) -> dict:
    """`adapt`'s `lr` / `optimizer` keywords from the config (plain SGD at inner_lr, or Adam with beta1 = 0)."""
    tx = inner_optimizer(config)
    return dict(inner_lr=None if tx else config.inner_lr, inner_optimizer=tx)


def build(config) -> Method:
    model = backbone.build_model(config, classes=config.ways)
    apply, chunk = apply_fn(model), task_chunk_size(config)
    loss_fn = task_loss(config, apply)
    rates = inner_rates(config)

    def init(rng, x):
        params = model.init(rng, x)["params"]
        if config.method == "metasgd":
            return {"model": params, "lr": jax.tree.map(lambda p: jnp.full_like(p, config.inner_lr), params)}
        return params

    def split(params):  # the model's params and the inner-loop keywords (Meta-SGD: its learned rates)
        if config.method == "metasgd":
            return params["model"], {**rates, "inner_lr": params["lr"]}
        return params, rates

    def maml(params, task, *, steps, first_order, diagnostics):
        model_params, kw = split(params)
        mask = head_mask(model_params) if config.method == "anil" else None
        return fewjax.maml_loss(loss_fn, model_params, task, inner_steps=steps, first_order=first_order,
                                remat=config.remat, mask=mask, diagnostics=diagnostics, **kw)

    def adapt(params, support):
        model_params, kw = split(params)
        mask = head_mask(model_params) if config.method == "anil" else None
        return fewjax.adapt(loss_fn, model_params, support, steps=config.eval_inner_steps, lr=kw["inner_lr"],
                            optimizer=kw["inner_optimizer"], mask=mask)

    # The training step skips maml_loss's diagnostics (two extra forward passes, ~25% of a MAML step);
    # evaluation keeps them, so the accuracy before adaptation is reported there.
    train = functools.partial(maml, steps=config.inner_steps, first_order=config.method == "fomaml",
                              diagnostics=False)
    test = (functools.partial(maml, steps=config.eval_inner_steps, first_order=True, diagnostics=True)
            if config.transductive else non_transductive_metrics(apply, adapt))
    return Method(config.method, model, init, mean_gradient(train, chunk), per_task_metrics(test, chunk),
                  predictor(apply, adapt, transductive=config.transductive), adapt=adapt)


def query_logits(apply, params, support_x, query_x, *, transductive: bool = True):
    """Logits `[n_q, ways]` of the queries. Transductive: one batch of all queries, so batch statistics are theirs
    together. Not transductive (Nichol et al. 2018): each query in a batch of the support set and itself alone, its
    logits from the last row, so no query's statistics reach another's prediction."""
    if transductive:
        return apply(params, query_x)
    return jax.vmap(lambda xq: apply(params, jnp.concatenate([support_x, xq[None]]))[-1])(query_x)


def non_transductive_metrics(apply, adapt):
    """`(params, task) -> (loss, {"loss", "accuracy"})` of the adapted params with `query_logits(transductive=False)`."""
    def metrics(params, task):
        logits = query_logits(apply, adapt(params, task.support), task.support.x, task.query.x, transductive=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, task.query.y).mean()
        return loss, {"loss": loss, "accuracy": jnp.mean(logits.argmax(-1) == task.query.y)}

    return metrics


def predictor(apply, adapt, *, transductive: bool = True):
    """`predict(params, support, query_x)` of an adapting method: adapt on the support set, classify the queries."""
    def predict(params, support, query_x):
        return query_logits(apply, adapt(params, support), support.x, query_x, transductive=transductive).argmax(-1)

    return predict
