"""Prototypical networks (Snell et al. 2017) and matching networks (Vinyals et al. 2016) on an image backbone."""
from __future__ import annotations

import functools

import jax.numpy as jnp

import fewjax
from fewjax.kernels._episodic import embed_episode
from fewjax.kernels.matching import matching_probabilities
from fewjax.kernels.protonet import prototype_logits
from fewjax.methods import backbone
from fewjax.methods.method import Method, mean_gradient, per_task_metrics, task_chunk_size
from fewjax.models import apply_fn
from fewjax.types import Batch, Task


def build(config) -> Method:
    model = backbone.build_model(config, classes=None)
    embed = apply_fn(model)
    chunk = task_chunk_size(config)
    kernel = fewjax.protonet_loss if config.method == "protonet" else fewjax.matching_loss
    distance = config.distance if config.method == "protonet" else config.matching_distance
    loss = functools.partial(kernel, embed, temperature=config.temperature, distance=distance)

    def init(rng, x):
        return model.init(rng, x)["params"]

    def predict(params, support, query_x):
        return episode_scores(embed, params, support, query_x, method=config.method, distance=distance,
                              temperature=config.temperature).argmax(-1)

    return Method(config.method, model, init, mean_gradient(functools.partial(loss, ways=config.ways), chunk),
                  per_task_metrics(functools.partial(loss, ways=config.test_ways), chunk), predict, embed=embed)


def episode_scores(embed, params, support: Batch, query_x, *, method: str, distance: str, temperature: float,
                   near_duplicate_threshold: float | None = None):
    """Class scores `[n_query, n_support]` of one episode (slots without support examples score -inf / 0).

    `near_duplicate_threshold` (ProtoNet): see `fewjax.protonet_loss`."""
    query = Batch(query_x, support.y[:1].repeat(query_x.shape[0]))
    z_s, z_q = embed_episode(embed, params, Task(support, query))
    slots = support.x.shape[0]
    if method == "matching":
        return matching_probabilities(z_s, support.y, z_q, slots=slots, temperature=temperature, distance=distance)
    logits, present = prototype_logits(z_s, support.y, z_q, slots=slots, distance=distance, temperature=temperature,
                                       near_duplicate_threshold=near_duplicate_threshold)
    return jnp.where(present[None, :], logits, -jnp.inf)
