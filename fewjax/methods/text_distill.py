"""Distillation (Hinton et al. 2015) of a pretrained encoder into its first `text.student_layers` layers, on the
trainer's episodes: the student's prototypical-network logits learn the teacher's (`fewjax.distillation_loss`,
softened by `text.distill_temperature`, weighted `text.distill_alpha` against the query labels).

Params are `{"student": ..., "teacher": ...}`; the teacher is frozen by name (`FROZEN`: the outer optimizer sets
its updates to zero, `fewjax.experiment.state.outer_optimizer`) and travels with the params, so the jitted step
receives it as an argument rather than embedding 90 MB of constants. Evaluation scores the student, and reports
the teacher's accuracy on the same episodes as `teacher_accuracy`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

import fewjax
from fewjax.kernels._episodic import embed_episode
from fewjax.kernels.protonet import prototype_logits
from fewjax.methods.metric import episode_scores
from fewjax.methods.method import Method, mean_gradient, per_task_metrics
from fewjax.methods.text_backbone import text_backbone
from fewjax.models.bert import make_embed_fn
from fewjax.text.encoder import fresh_copy, truncated

FROZEN = ("teacher",)
"""Top-level params the outer optimizer leaves unchanged."""


def build(config) -> Method:
    t = config.text
    teacher = text_backbone(config)
    layers = teacher.module.config.num_hidden_layers
    if not 1 <= t.student_layers < layers:
        raise ValueError(f"config.text.student_layers={t.student_layers}: the student must be smaller than the "
                         f"{layers}-layer teacher; choose 1..{layers - 1}.")
    student_module, student_params = truncated(teacher.module, teacher.params, t.student_layers)
    student_embed = make_embed_fn(student_module, pooling=t.pooling, normalize=bool(t.normalize),
                                  pad_id=teacher.tokenizer.pad_id)
    scores = functools.partial(prototype_logits, distance=config.distance, temperature=config.temperature)

    def distill(params, task, *, ways):
        z_s, z_q = embed_episode(student_embed, params["student"], task)
        logits, _ = scores(z_s, task.support.y, z_q, slots=ways)
        t_s, t_q = embed_episode(teacher.embed, jax.lax.stop_gradient(params["teacher"]), task)
        teacher_logits, _ = scores(t_s, task.support.y, t_q, slots=ways)
        loss, metrics = fewjax.distillation_loss(logits, teacher_logits, task.query.y,
                                                 temperature=t.distill_temperature, alpha=t.distill_alpha)
        return loss, {**metrics, "loss": loss, "accuracy": jnp.mean(logits.argmax(-1) == task.query.y),
                      "teacher_accuracy": jnp.mean(teacher_logits.argmax(-1) == task.query.y)}

    def init(rng, x):
        return {"student": fresh_copy(student_params), "teacher": fresh_copy(teacher.params)}

    def predict(params, support, query_x):
        return episode_scores(student_embed, params["student"], support, query_x, method="protonet",
                              distance=config.distance, temperature=config.temperature).argmax(-1)

    return Method("distill", student_module, init, mean_gradient(functools.partial(distill, ways=config.ways)),
                  per_task_metrics(functools.partial(distill, ways=config.test_ways)), predict,
                  embed=lambda params, x: student_embed(params["student"], x))
