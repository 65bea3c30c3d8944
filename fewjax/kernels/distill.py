"""Knowledge distillation (Hinton, Vinyals & Dean 2015).

`loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)`.
The `T^2` factor keeps the soft term's gradient scale independent of the temperature. The teacher's logits are
treated as constants.

Example:
    >>> import jax.numpy as jnp, fewjax
    >>> s = jnp.array([[2.0, 0.0]]); t = jnp.array([[2.0, 0.0]])
    >>> loss, m = fewjax.distillation_loss(s, t, None, temperature=4.0, alpha=1.0)
    >>> round(float(loss), 6)
    0.0
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def distillation_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array | None,
    *,
    temperature: float,
    alpha: float,
):
    """Distillation loss of `student_logits` [n, c] towards `teacher_logits` [n, c] (and hard `labels` [n]).

    Returns:
      `(loss, metrics)` with `loss`, `soft_loss` (the T^2-scaled KL), and with labels `hard_loss` and `accuracy`.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"distillation_loss: student logits {student_logits.shape} and teacher logits "
            f"{teacher_logits.shape} must have the same shape."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distillation_loss: alpha={alpha} must lie in [0, 1].")
    if temperature <= 0:
        raise ValueError(f"distillation_loss: temperature={temperature} must be positive.")
    if labels is None and alpha != 1.0:
        raise ValueError("distillation_loss: labels=None needs alpha=1.0 (no hard-label term).")
    teacher = jax.lax.stop_gradient(teacher_logits)
    log_p_t = jax.nn.log_softmax(teacher / temperature, axis=-1)
    log_p_s = jax.nn.log_softmax(student_logits / temperature, axis=-1)
    kl = jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
    soft = temperature**2 * jnp.mean(kl)
    metrics = {"soft_loss": soft}
    loss = alpha * soft
    if labels is not None:
        hard = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(student_logits, labels))
        loss = loss + (1.0 - alpha) * hard
        metrics.update(hard_loss=hard, accuracy=jnp.mean(jnp.argmax(student_logits, -1) == labels))
    metrics["loss"] = loss
    return loss, metrics
