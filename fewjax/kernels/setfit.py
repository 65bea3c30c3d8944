"""SetFit (Tunstall et al. 2022): contrastive fine-tuning of a sentence encoder on pairs from a few labelled examples,
then a logistic-regression head on its embeddings.

`setfit_loss` is the contrastive stage in one pass: the batch's examples are embedded once and every pair `i < j`
is scored, `(cos(e_i, e_j) - [y_i == y_j])^2` (the library's CosineSimilarityLoss), with the positive and the
negative pairs weighted equally (the library samples them balanced). With one example a class there are no positive
pairs, and the loss only pushes the classes apart, as in the library (whose positives are then an example and
itself). `logistic_head` is the second stage: multinomial logistic regression with an L2 penalty on the weights
(scikit-learn's `LogisticRegression(C=1 / l2)`), solved by L-BFGS.

Example:
    >>> import jax.numpy as jnp, fewjax
    >>> batch = fewjax.Batch(x=jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), y=jnp.array([0, 0, 1]))
    >>> loss, m = fewjax.setfit_loss(lambda p, x: x, None, batch)
    >>> round(float(loss), 4), int(m["positive_pairs"]), int(m["negative_pairs"])
    (0.0031, 1, 2)
    >>> head = fewjax.logistic_head(batch.x, batch.y, classes=2, l2=1e-3)
    >>> (batch.x @ head["kernel"] + head["bias"]).argmax(-1).tolist()
    [0, 0, 1]
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fewjax.kernels._episodic import at_least_f32, normalize
from fewjax.types import Batch, EmbedFn, Params


def setfit_loss(embed_fn: EmbedFn, params: Params, batch: Batch, *, balance: bool = True, eps: float = 1e-12):
    """Cosine-similarity loss over every pair of `batch`'s examples; returns `(loss, metrics)`.

    Args:
      embed_fn: `embed_fn(params, x) -> [n, d]`.
      params: the encoder's parameters.
      batch: `Batch(x, y)` of `n >= 2` examples with integer labels `[n]`.
      balance: weigh the positive and the negative pairs equally (else every pair equally).

    Returns:
      `(loss, {"loss", "positive_pairs", "negative_pairs", "pair_accuracy"})`: `pair_accuracy` is the fraction
      of pairs on the right side of a cosine of 0.5.
    """
    n = batch.y.shape[0]
    if batch.y.ndim != 1 or n < 2:
        raise ValueError(f"setfit_loss: batch.y must be [n] labels with n >= 2 (pairs need two examples); got shape "
                         f"{batch.y.shape}.")
    e = at_least_f32(embed_fn(params, batch.x))
    e = normalize(e, eps)
    i, j = np.triu_indices(n, k=1)
    cos = jnp.sum(e[i] * e[j], axis=-1)
    same = (batch.y[i] == batch.y[j]).astype(cos.dtype)
    err = (cos - same) ** 2
    if balance:
        pos, neg = jnp.sum(same), jnp.sum(1.0 - same)
        w = jnp.where(same > 0, 1.0 / jnp.maximum(pos, 1.0), 1.0 / jnp.maximum(neg, 1.0))
        w = w / jnp.sum(w)
    else:
        w = jnp.full_like(err, 1.0 / err.shape[0])
    loss = jnp.sum(w * err)
    positives = jnp.sum(same)
    return loss, {"loss": loss, "pair_accuracy": jnp.mean((cos > 0.5) == (same > 0)), "positive_pairs": positives,
                  "negative_pairs": len(i) - positives}


def logistic_head(features: jax.Array, labels: jax.Array, *, classes: int, l2: float = 1.0, steps: int = 100) -> dict:
    """The multinomial logistic regression of `labels` on `features`: `{"kernel": [d, classes], "bias": [classes]}`.

    Minimises `sum_i CE(features_i @ kernel + bias, labels_i) + l2 / 2 * |kernel|^2` (scikit-learn's
    `LogisticRegression(C=1 / l2)`, bias unpenalised) by `steps` L-BFGS iterations (`optax.lbfgs`); jittable.
    """
    if l2 <= 0:
        raise ValueError(f"logistic_head: l2 must be > 0 (the problem has no minimum on separable data), got {l2}.")
    x = at_least_f32(features)
    onehot = jax.nn.one_hot(labels, classes, dtype=x.dtype)

    def objective(head):
        logits = x @ head["kernel"] + head["bias"]
        return -jnp.sum(onehot * jax.nn.log_softmax(logits)) + 0.5 * l2 * jnp.sum(head["kernel"] ** 2)

    head = {"kernel": jnp.zeros((x.shape[-1], classes), x.dtype), "bias": jnp.zeros((classes,), x.dtype)}
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(_, carry):
        head, state = carry
        value, grad = value_and_grad(head, state=state)
        updates, state = solver.update(grad, state, head, value=value, grad=grad, value_fn=objective)
        return optax.apply_updates(head, updates), state

    head, _ = jax.lax.fori_loop(0, steps, step, (head, solver.init(head)))
    return head
