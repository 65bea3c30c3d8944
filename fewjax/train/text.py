"""Text few-shot training on a pretrained BERT-family encoder: config defaults, sources and methods.

The trainer reaches this module only for text datasets (`config.dataset` in `TEXT_DATASETS`):
`fewjax.train.data.make_source` calls `make_text_source`, `fewjax.train.methods.build_method` calls
`build_text_method`. Every method starts from the pretrained encoder (`config.text.model`, a local folder or a
Hugging Face Hub name); `Method.init` returns those weights (plus a zero head where the method has one), and the
loop restores a checkpoint on top when the workdir has one.

Methods (`config.method`):

- `protonet`: prototypical network on pooled (by default L2-normalised) sentence embeddings, cosine logits
  divided by `config.temperature`; meta-trained end to end, or with `total_steps=0` the frozen pretrained
  encoder (the zero-step baseline).
- `anil`: second-order MAML of a linear head (`config.ways` classes, zero init) on the pooled features; the
  encoder learns through the meta-gradient only. The support / query features are computed once per task and
  the inner loop adapts the head on them: the same loss and gradients as `maml_loss(..., mask=head_mask(params))`
  on the whole model (tested), without re-running the encoder at every inner step.
- `fomaml`: first-order MAML of the whole encoder plus head (`config.remat` rematerialises each layer). The
  encoder's inner learning rate is `inner_lr * text.encoder_lr_scale`, the head's `inner_lr`.
- `finetune`: no meta-training (`total_steps` must be 0). Per test episode: the pretrained encoder plus a fresh
  zero head are fine-tuned on the support set for `eval_inner_steps` Adam steps (head `inner_lr`, encoder
  `inner_lr * text.encoder_lr_scale`), optionally with the L2-SP penalty `text.l2sp * ||w - w_pretrained||^2`
  (Li et al. 2018), then scored on the query set. Episodes run one after the other (`lax.map`): a vmapped batch
  of encoder copies with Adam moments would not fit in memory.

Distillation (teacher -> student): `distill_clinc150` fine-tunes a teacher classifier on the CLINC150 training
intents, distils it into a student made of its first `student_layers` layers with `fewjax.distillation_loss`,
and reports both accuracies on held-out utterances (`python bench/text_fewshot.py --distill`).

Example:
    >>> from fewjax.train.config import base_config                                    # doctest: +SKIP
    >>> c = base_config(); c.dataset, c.method = "clinc150", "protonet"                 # doctest: +SKIP
    >>> c.text.model = "../shared/models/all-MiniLM-L6-v2"; c.data_dir = "../shared/data"  # doctest: +SKIP
    >>> src = make_text_source(c, "test"); method = build_text_method(c)               # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path

import ml_collections

TEXT_DATASETS = ("clinc150", "fewrel", "text_file")
TEXT_METHODS = ("protonet", "anil", "fomaml", "finetune")
TEXT_FILE_FRACTIONS = (0.6, 0.2, 0.2)
"""dataset=text_file: the seeded share of the file's classes used for training, validation and test."""


def text_config() -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict()
    t.model = "sentence-transformers/all-MiniLM-L6-v2"  # a local folder or a Hugging Face Hub name
    t.pooling = "mean"  # mean or cls
    t.normalize = True  # L2-normalise sentence embeddings
    t.max_length = 0  # 0: the smallest bucket that fits the dataset
    t.text_column = "text"  # text_file: CSV / JSONL columns
    t.label_column = "label"
    t.class_seed = 0  # seed of the split of classes into train/val/test
    t.l2sp = 0.0  # finetune: weight of the L2-SP penalty towards the pretrained weights
    t.num_layers = 0  # > 0: keep only the first num_layers transformer layers of the pretrained encoder
    t.logit_scale = 10.0  # anil / fomaml / finetune: logits = logit_scale * features @ W + b
    t.encoder_lr_scale = 0.01  # fomaml / finetune: the encoder's inner lr is inner_lr * encoder_lr_scale
    return t


TEXT_PRESETS = {"clinc150_5w1s": ("clinc150", 1), "clinc150_5w5s": ("clinc150", 5),
                "fewrel_5w1s": ("fewrel", 1), "fewrel_5w5s": ("fewrel", 5)}
"""Preset name -> (dataset, shots): 5-way episodes, 15 test queries per class (the usual protocol)."""


def text_preset_config(preset: str, *, config_file: str) -> ml_collections.ConfigDict:
    """The shared part of `configs/text_*.py`: dataset, episode shapes, sequence length and a CPU schedule.

    Training episodes use 5 queries per class (cheaper steps on a CPU); test episodes 15. CLINC150 utterances
    fit 32 tokens (1 of 22,500 is cut); FewRel sentences with entity markers fit 64 for 97%.
    """
    from fewjax.train.config import base_config

    if preset not in TEXT_PRESETS:
        raise ValueError(f"unknown preset {preset!r} for {config_file}; choose one of {sorted(TEXT_PRESETS)}")
    dataset, shots = TEXT_PRESETS[preset]
    c = base_config()
    c.dataset = dataset
    c.text.max_length = 32 if dataset == "clinc150" else 64
    c.ways, c.shots, c.queries = 5, shots, 5
    c.test_ways, c.test_shots, c.test_queries = 5, shots, 15
    c.meta_batch_size = 4
    c.distance, c.temperature = "cosine", 0.1
    c.optim.lr, c.optim.schedule, c.optim.grad_clip = 2e-5, "constant", 1.0
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 200, 20, 100, 100
    c.val_episodes, c.test_episodes, c.eval_batch_size = 50, 600, 10
    return c


# ---------------------------------------------------------------------------
# Pretrained encoder and tokenizer, loaded once per process.


@functools.lru_cache(maxsize=4)
def _load(model: str):
    from fewjax.models.bert import load_pretrained

    return load_pretrained(model)


def pretrained(config):
    """`(module, params, tokenizer)` of `config.text.model`, truncated to `text.num_layers`, with the config's
    dtype and remat. Loaded from disk once per process; params are shared (jax arrays are immutable)."""
    t = config.text
    if t.num_layers < 0:
        raise ValueError(f"config.text.num_layers={t.num_layers}: must be >= 0 (0 keeps every layer).")
    if t.pooling not in ("mean", "cls"):
        raise ValueError(f"config.text.pooling={t.pooling!r}: choose mean or cls.")
    module, params, tok = _load(str(t.model))
    bert_cfg = module.config
    if t.num_layers:
        if t.num_layers > bert_cfg.num_hidden_layers:
            raise ValueError(f"config.text.num_layers={t.num_layers}: {t.model} has only "
                             f"{bert_cfg.num_hidden_layers} layers; choose 1..{bert_cfg.num_hidden_layers} or 0 (all).")
        bert_cfg = dataclasses.replace(bert_cfg, num_hidden_layers=t.num_layers)
        params = {k: v for k, v in params.items() if not (k.startswith("layer_") and int(k[6:]) >= t.num_layers)}
    import jax.numpy as jnp

    dtype = jnp.bfloat16 if config.model.dtype == "bfloat16" else jnp.float32
    module = module.clone(config=bert_cfg, dtype=dtype, remat=bool(config.remat))
    return module, params, tok


# ---------------------------------------------------------------------------
# Sources.


def _text_dir(config) -> str | None:
    """`config.data_dir` (the folder holding clinc150/ and fewrel/, or its parent holding text/), else None:
    `$FEWJAX_DATA_DIR/text`."""
    if not config.data_dir:
        return None
    path = Path(config.data_dir).expanduser()
    if (path / "text").is_dir() and not (path / "clinc150").is_dir() and not (path / "fewrel").is_dir():
        path = path / "text"
    return str(path)


def make_text_source(config, split: str, data_path: str | os.PathLike | None = None):
    """The `fewjax.data.ArraySource` of token ids for `split` ("train", "val", "test").

    clinc150 / fewrel: the seeded class split of `fewjax.text` (`text.class_seed`). text_file: `config.data_dir`
    is a CSV / JSONL file whose classes are split `TEXT_FILE_FRACTIONS` by `text.class_seed`. With `data_path`
    (a CSV / JSONL file), every class in that file is a test class, read with `text.text_column/label_column`.
    `text.max_length` 0 picks the smallest bucket that fits the data. Sources are cached per process.
    """
    t = config.text
    max_length = int(t.max_length) or None
    if data_path is not None:
        return _file_source(str(t.model), str(data_path), t.text_column, t.label_column, max_length)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}: choose train, val or test.")
    if config.dataset == "text_file":
        if not config.data_dir or not Path(config.data_dir).is_file():
            raise FileNotFoundError(f"config.data_dir={config.data_dir!r}: dataset text_file needs data_dir=<a .csv, "
                                    ".tsv or .jsonl file> with columns text.text_column / text.label_column.")
        return _file_split(str(t.model), str(config.data_dir), t.text_column, t.label_column, max_length,
                           int(t.class_seed), split, int(max(config.ways, config.test_ways)))
    if config.dataset not in ("clinc150", "fewrel"):
        raise ValueError(f"config.dataset={config.dataset!r}: choose one of {TEXT_DATASETS}.")
    return _named_source(config.dataset, str(t.model), _text_dir(config), max_length, int(t.class_seed), split)


@functools.lru_cache(maxsize=16)
def _named_source(dataset, model, data_dir, max_length, seed, split):
    import fewjax.text as ft

    tok = _load(model)[2]
    if dataset == "fewrel" and split == "val":
        # Offline FewRel has 16 relations (10 train, 0 val, 6 test): validation episodes come from the training
        # relations (their own seed), so checkpoint selection never sees a test relation.
        split = "train"
    if dataset == "clinc150":
        return ft.clinc150(split, tokenizer=tok, data_dir=data_dir, seed=seed, max_length=max_length)
    return ft.fewrel(split, tokenizer=tok, data_dir=data_dir, seed=seed, max_length=max_length)


@functools.lru_cache(maxsize=8)
def _file_source(model, path, text_column, label_column, max_length):
    import fewjax.text as ft

    return ft.text_file(path, tokenizer=_load(model)[2], text_column=text_column, label_column=label_column,
                        max_length=max_length)


@functools.lru_cache(maxsize=8)
def _file_split(model, path, text_column, label_column, max_length, seed, split, ways):
    import fewjax.text as ft

    full = _file_source(model, path, text_column, label_column, max_length)
    n = full.num_classes
    sizes = [int(f * n) for f in TEXT_FILE_FRACTIONS]
    sizes[0] = n - sizes[1] - sizes[2]
    if min(sizes) < ways:
        raise ValueError(f"{path} has {n} classes: split {TEXT_FILE_FRACTIONS} into train/val/test that gives "
                         f"{tuple(sizes)}, fewer than ways={ways} in some split. Use a file with at least {5 * ways} "
                         "classes, or evaluate on it with evaluate.py --data FILE instead.")
    names = ft.split_classes(full.class_names, sizes=sizes, seed=seed)[split]
    index = {name: i for i, name in enumerate(full.class_names)}
    return full.subset([index[name] for name in names])


# ---------------------------------------------------------------------------
# Methods.


def build_text_method(config):
    """The `fewjax.train.methods.Method` of `config.method` on the pretrained encoder (see the module doc)."""
    import jax
    import jax.numpy as jnp
    import optax

    import fewjax
    from fewjax.models import head_mask
    from fewjax.models.bert import init_classifier_params, make_classifier_loss_fn, make_embed_fn
    from fewjax.train.methods import Method, _inner_optimizer, _per_task, _value_and_grad
    from fewjax.types import Batch, Task

    if config.method not in TEXT_METHODS:
        raise ValueError(f"config.method={config.method!r}: text datasets support {TEXT_METHODS}.")
    if config.method == "finetune" and config.total_steps != 0:
        raise ValueError(f"config.total_steps={config.total_steps}: finetune has no meta-training (it fine-tunes "
                         "per test episode); set --config.total_steps=0.")
    t = config.text
    module, encoder_params, tok = pretrained(config)
    hidden = module.config.hidden_size
    embed_kw = dict(pooling=t.pooling, normalize=bool(t.normalize), pad_id=tok.pad_id)
    embed_fn = make_embed_fn(module, **embed_kw)

    if config.method == "protonet":
        def init(rng, x):
            return _fresh(encoder_params)

        kernel = functools.partial(fewjax.protonet_loss, embed_fn, distance=config.distance,
                                   temperature=config.temperature)
        meta_grad = _value_and_grad(functools.partial(kernel, ways=config.ways))
        return Method("protonet", module, init, meta_grad, _per_task(functools.partial(kernel, ways=config.test_ways)))

    loss_fn = make_classifier_loss_fn(module, logit_scale=float(t.logit_scale), **embed_kw)

    def head_loss(head, batch):  # a linear classifier on precomputed features
        logits = t.logit_scale * batch.x @ head["kernel"] + head["bias"]
        labels = batch.y.astype(jnp.int32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, {"loss": loss, "accuracy": (logits.argmax(-1) == labels).mean()}

    def init(rng, x):
        ways = config.test_ways if config.method == "finetune" else config.ways
        params = init_classifier_params(rng, _fresh(encoder_params), hidden_size=hidden, num_classes=ways)
        return params["encoder"] if config.method == "finetune" else params

    if config.method == "anil":
        def anil(params, task, *, steps, first_order):
            feats = embed_fn(params["encoder"], jnp.concatenate([task.support.x, task.query.x]))
            n = task.support.x.shape[0]
            feature_task = Task(Batch(feats[:n], task.support.y), Batch(feats[n:], task.query.y))
            return fewjax.maml_loss(head_loss, params["head"], feature_task, inner_steps=steps,
                                    inner_lr=config.inner_lr, first_order=first_order)

        train = functools.partial(anil, steps=config.inner_steps, first_order=False)
        test = functools.partial(anil, steps=config.eval_inner_steps, first_order=True)
        return Method("anil", module, init, _value_and_grad(train), _per_task(test))

    def group_lr(params):  # head: inner_lr; encoder: inner_lr * encoder_lr_scale
        mask = head_mask(params)
        return jax.tree.map(lambda m: config.inner_lr * (1.0 if m else t.encoder_lr_scale), mask)

    if config.method == "fomaml":
        inner_tx = _inner_optimizer(config)
        if inner_tx is not None:
            inner_tx = _grouped(lambda lr: optax.adam(lr, b1=0.0), config, t.encoder_lr_scale)

        def fomaml(params, task, *, steps):
            kw = dict(inner_optimizer=inner_tx) if inner_tx is not None else dict(inner_lr=group_lr(params))
            return fewjax.maml_loss(loss_fn, params, task, inner_steps=steps, first_order=True, remat=config.remat,
                                    **kw)

        train = functools.partial(fomaml, steps=config.inner_steps)
        test = functools.partial(fomaml, steps=config.eval_inner_steps)
        return Method("fomaml", module, init, _value_and_grad(train), _one_by_one(test))

    # finetune
    inner_tx = _grouped(optax.adam, config, t.encoder_lr_scale)

    def finetune_one(encoder, task):
        ways = config.test_ways
        params = init_classifier_params(jax.random.key(0), encoder, hidden_size=hidden, num_classes=ways)
        prior = jax.lax.stop_gradient(encoder)

        def support_loss(p, batch):
            loss, metrics = loss_fn(p, batch)
            if t.l2sp > 0:
                sq = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(p["encoder"]), jax.tree.leaves(prior)))
                loss = loss + t.l2sp * sq
            return loss, metrics

        adapted = fewjax.adapt(support_loss, params, task.support, steps=config.eval_inner_steps, optimizer=inner_tx,
                               first_order=True, remat=config.remat)
        _, metrics = loss_fn(adapted, task.query)
        metrics["support_loss_after"] = support_loss(adapted, task.support)[0]
        return metrics

    def finetune_meta_grad(params, tasks):
        raise ValueError("config.method='finetune' has no meta-gradient: set --config.total_steps=0.")

    evaluate = _one_by_one(lambda encoder, task: (None, finetune_one(encoder, task)))
    return Method("finetune", module, init, finetune_meta_grad, evaluate)


def _fresh(params):
    """A copy: the training step donates its state, and the cached pretrained weights must survive it."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(jnp.array, params)


def _one_by_one(kernel):
    """Per-task metrics `{name: [B]}` with tasks taken one after the other (`lax.map`): a method that adapts the
    whole encoder per task would otherwise hold B encoder copies (and their optimizer states) at once."""
    import jax

    def evaluate(params, tasks):
        return jax.lax.map(lambda task: kernel(params, task)[1], tasks)

    return evaluate


def _grouped(make_tx, config, encoder_lr_scale):
    """An optax transformation over `adapt`'s list of adapted leaves: `make_tx(inner_lr)` for the head's leaves
    (the last two: the params dict sorts "encoder" before "head", and the head holds bias and kernel),
    `make_tx(inner_lr * encoder_lr_scale)` for the encoder's."""
    import optax

    def labels(leaves):
        return ["encoder"] * (len(leaves) - 2) + ["head"] * 2

    return optax.multi_transform({"head": make_tx(config.inner_lr),
                                  "encoder": make_tx(config.inner_lr * encoder_lr_scale)}, labels)


# ---------------------------------------------------------------------------
# Distillation recipe.


def distill_clinc150(*, model: str, data_dir: str | None = None, teacher_steps: int = 200,
                     student_steps: int = 200, student_layers: int = 2, batch_size: int = 32,
                     teacher_lr: float = 5e-5, student_lr: float = 1e-4, head_lr: float = 1e-2,
                     temperature: float = 4.0, alpha: float = 0.9, logit_scale: float = 10.0, max_length: int = 32,
                     held_out: int = 30, seed: int = 0) -> dict:
    """Teacher -> student distillation on the 50 CLINC150 training intents; returns both accuracies.

    The teacher (all layers of `model`, mean-pooled, a linear head over 50 intents) is fine-tuned with Adam for
    `teacher_steps` batches of `batch_size` utterances on all but the last `held_out` utterances of each intent.
    The student is the teacher's pretrained first `student_layers` layers plus a fresh head, trained for
    `student_steps` batches on `fewjax.distillation_loss(student, teacher, labels, temperature, alpha)`.
    Accuracy is measured on the `held_out` utterances per intent (never trained on). The student's same-budget
    baseline (`student_ce`: the same student trained on hard labels only) shows what distillation adds.

    Returns:
      `{"teacher_accuracy", "student_accuracy", "student_ce_accuracy", "teacher_layers", "student_layers",
      "teacher_seconds", "student_seconds", ...}`.

    Example:
        >>> distill_clinc150(model="../shared/models/all-MiniLM-L6-v2", data_dir="../shared/data/text",
        ...                  teacher_steps=2, student_steps=2)["student_layers"]              # doctest: +SKIP
        2
    """
    import jax
    import numpy as np
    import optax

    import fewjax
    from fewjax.models.bert import init_classifier_params, make_classifier_loss_fn, make_embed_fn
    from fewjax.types import Batch

    module, params, tok = _load(str(model))
    src = _named_source("clinc150", str(model), data_dir, max_length, 0, "train")
    xs, ys = [], []
    for c in range(src.num_classes):
        xs.append(src.class_examples(c))
        ys.append(np.full(len(xs[-1]), c, np.int32))
    train_x = np.concatenate([x[:-held_out] for x in xs]); train_y = np.concatenate([y[:-held_out] for y in ys])
    test_x = np.concatenate([x[-held_out:] for x in xs]); test_y = np.concatenate([y[-held_out:] for y in ys])
    classes = src.num_classes
    rng = np.random.default_rng(seed)
    batches = [rng.integers(0, len(train_x), batch_size) for _ in range(max(teacher_steps, student_steps))]

    def classifier(n_layers):
        cfg = dataclasses.replace(module.config, num_hidden_layers=n_layers)
        m = module.clone(config=cfg)
        enc = {k: v for k, v in params.items() if not (k.startswith("layer_") and int(k[6:]) >= n_layers)}
        p = init_classifier_params(jax.random.key(seed), enc, hidden_size=cfg.hidden_size, num_classes=classes)
        embed = make_embed_fn(m, pad_id=tok.pad_id)
        logits = lambda p, x: logit_scale * embed(p["encoder"], x) @ p["head"]["kernel"] + p["head"]["bias"]  # noqa
        return p, logits, make_classifier_loss_fn(m, pad_id=tok.pad_id, logit_scale=logit_scale)

    def optimizer(lr):
        return optax.multi_transform({"encoder": optax.adam(lr), "head": optax.adam(head_lr)},
                                     lambda p: {k: k for k in p})

    def train(p, loss, steps, lr, soft_targets=None):
        tx = optimizer(lr)

        @jax.jit
        def step(p, s, x, y, aux):
            (_, m), g = jax.value_and_grad(loss, has_aux=True)(p, x, y, aux)
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s, m

        s, start = tx.init(p), time.perf_counter()
        for i in range(steps):
            x, y = train_x[batches[i]], train_y[batches[i]]
            p, s, _ = step(p, s, x, y, None if soft_targets is None else soft_targets(x))
        jax.block_until_ready(p)
        return p, time.perf_counter() - start

    def accuracy(p, logits):
        f = jax.jit(logits)
        preds = np.concatenate([np.asarray(f(p, test_x[i:i + 256]).argmax(-1)) for i in range(0, len(test_x), 256)])
        return float((preds == test_y).mean())

    teacher, t_logits, t_loss = classifier(module.config.num_hidden_layers)
    teacher, t_sec = train(teacher, lambda p, x, y, _: t_loss(p, Batch(x, y)), teacher_steps, teacher_lr)
    student0, s_logits, s_loss = classifier(student_layers)
    teacher_logits = jax.jit(t_logits)

    def kd_loss(p, x, y, soft):
        return fewjax.distillation_loss(s_logits(p, x), soft, y, temperature=temperature, alpha=alpha)

    student, s_sec = train(student0, kd_loss, student_steps, student_lr, lambda x: teacher_logits(teacher, x))
    student_ce, ce_sec = train(student0, lambda p, x, y, _: s_loss(p, Batch(x, y)), student_steps, student_lr)
    return {
        "teacher_accuracy": accuracy(teacher, t_logits), "student_accuracy": accuracy(student, s_logits),
        "student_ce_accuracy": accuracy(student_ce, s_logits),
        "teacher_layers": module.config.num_hidden_layers, "student_layers": student_layers,
        "teacher_steps": teacher_steps, "student_steps": student_steps, "batch_size": batch_size,
        "temperature": temperature, "alpha": alpha, "classes": classes, "held_out_per_class": held_out,
        "test_utterances": int(len(test_x)), "teacher_seconds": t_sec, "student_seconds": s_sec,
        "student_ce_seconds": ce_sec,
    }
