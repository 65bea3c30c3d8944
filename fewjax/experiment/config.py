"""The configuration every training run shares, and its validation.

Config files in `configs/` call `base_config()` and set what their benchmark needs; `train.py` loads them with
`ml_collections.config_flags` (`--config configs/omniglot_protonet.py:5w1s --config.total_steps=100`). The
config is locked: an override of a key that does not exist fails with the key's name, and a value of the wrong
type fails with the key and the expected type. `validate` then checks values against each other, before any
data is read or anything compiles.
"""
from __future__ import annotations

import functools

import ml_collections

from fewjax.kernels import DISTANCES
from fewjax.methods import METHODS, PER_TASK_WEIGHTS, TEXT_METHODS
from fewjax.models.conv import CONV_GRADS
from fewjax.models.conv4 import POOLS
from fewjax.models.norm import NORMS
from fewjax.placement import EVAL_MEMORY_MB
from fewjax.text.datasets import TEXT_DATASETS

class FlagError(ValueError):
    """A flag value that cannot work (the message names the flag as the user typed it)."""


DATASETS = ("omniglot", "image_folder", "sinusoid") + TEXT_DATASETS
SCHEDULES = ("constant", "step", "cosine", "linear")
MODELS = ("conv4", "resnet12", "mlp")
INNER_OPTIMIZER_METHODS = {"image": ("maml", "fomaml", "anil", "reptile"),
                           "text": ("fomaml", "finetune", "setfit", "prompt")}
"""The methods that accept `inner_optimizer="adam"`: the others' inner loop is SGD, or absent. (Text finetune, setfit
and prompt adapt with Adam whatever its value, as their presets say.)"""
TEXT_KEY_METHODS = {"l2sp": ("finetune",), "logit_scale": ("anil", "fomaml", "finetune", "prompt"),
                    "encoder_lr_scale": ("fomaml", "finetune"), "student_layers": ("distill",),
                    "distill_temperature": ("distill",), "distill_alpha": ("distill",), "setfit_head": ("setfit",),
                    "head_l2": ("setfit",), "prompt_length": ("prompt",), "prompt_init": ("prompt",)}
"""`config.text` keys that only some text methods read: another method with a non-default value is an error."""


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.method = "protonet"
    c.dataset = "omniglot"
    c.data_dir = ""  # "" = $FEWJAX_DATA_DIR, else the user cache (downloads Omniglot there)
    c.split = "vinyals"  # omniglot: "vinyals", "lake" or "lake_rotations" (fewjax.experiment.data.OMNIGLOT_SPLITS)
    c.image_size = 28
    # Training augmentation: small random affine distortions of every training image (Lake-style one-shot work).
    c.augment = ml_collections.ConfigDict()
    c.augment.affine = False
    c.augment.max_rotation = 10.0  # degrees
    c.augment.max_shear = 0.3
    c.augment.max_scale = 0.2  # scales in [1 - max_scale, 1 + max_scale]
    c.augment.max_shift = 2.0  # pixels
    # ... and for photos (fewjax.data.augment), applied after the crop in this order: crop, affine, flip, jitter.
    c.augment.resized_crop = False  # a random crop (area, aspect 3/4..4/3) resized back to image_size
    c.augment.crop_min_scale = 0.08  # the crop's smallest area, as a fraction of the image (largest: 1)
    c.augment.flip = False  # horizontal flip with probability 1/2
    c.augment.color_jitter = 0.0  # brightness, contrast and saturation strength (RGB); 0 = off
    c.within_alphabet = False  # omniglot test episodes: all classes from one alphabet, support/query drawers differ
    c.train_within_alphabet = 0.0  # omniglot: the share of training episodes whose classes all come from one alphabet
    c.transductive = True  # MAML family, Reptile: queries share batch statistics at evaluation (False: each query
    #                        with the support set alone, Nichol et al.'s non-transductive protocol)
    c.seed = 0

    c.ways, c.shots, c.queries = 5, 1, 15  # training episodes
    c.test_ways, c.test_shots, c.test_queries = 5, 1, 15  # validation and test episodes
    c.meta_batch_size = 32  # global: split over all devices of all processes (must divide by their number)
    c.fsdp = 1  # > 1 splits large parameters (and their optimizer state) over groups of this many devices
    # Which training classes a task draws: "uniform", or "adaptive": in proportion to a moving average of the losses of
    # the tasks each class was in (fewjax.data.task_sampling; kept in the checkpoints, so a resume is bit-exact):
    # p = (1 - floor) * softmax(loss / temperature) + floor / classes; decay weighs a class's old estimate.
    c.task_sampling = "uniform"
    c.task_sampling_decay = 0.9
    c.task_sampling_temperature = 1.0  # in loss units: a class `temperature` harder is drawn e times as often
    c.task_sampling_floor = 0.1  # the share of draws kept uniform, so that no class starves (1 = uniform)

    c.total_steps = 1000
    c.steps_per_call = 1  # training steps per jitted call (lax.scan); the host syncs between calls
    c.log_every = 50
    c.eval_every = 500
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
    c.early_stop_patience = 0  # stop after this many validations without a new best (Snell et al.); 0 = off
    c.val_episodes = 200
    c.test_episodes = 600
    c.eval_batch_size = 50
    c.eval_memory_mb = EVAL_MEMORY_MB  # episodes per evaluation call are cut until one call's planned memory fits (per device)
    c.test_resume_file = ""  # the final test's scores so far, so a cut test continues; "": WORKDIR/test_progress.npz
    c.published = ""  # the published result of this setting, printed and recorded beside the measured accuracy
    c.published_setting = ""  # "5w1s": the test ways and shots `published` is for (any other test setting drops it)

    c.model = ml_collections.ConfigDict()
    c.model.name = "conv4"  # conv4 or resnet12 (images: resnet12 reads image folders as RGB), mlp (sinusoid)
    c.model.hidden = 64  # conv4: filters per layer; resnet12: the first block's width (64 -> 64-160-320-640)
    c.model.norm = "batch"
    c.model.pool = "max"
    c.model.dtype = "float32"  # "bfloat16": mixed precision (compute in bf16, params and loss in f32)
    c.model.conv_grad = "auto"  # "xla", "matmul" (weight gradient as matrix products), "auto" (matmul on CPU)

    c.inner_steps = 1  # MAML family and Reptile
    c.inner_lr = 0.4
    c.eval_inner_steps = 3
    c.inner_optimizer = "sgd"  # sgd or adam (Reptile: Adam, beta1 = 0); text finetune, setfit, prompt: Adam always
    c.inner_batch_size = 0  # Reptile's training inner steps: 0 full-batch, B on mini-batches of B (inner_minibatches)
    c.eval_inner_batch_size = 0  # Reptile's test-time inner steps: 0 on the whole support set, B on mini-batches of B
    c.inner_state = "per_task"  # Reptile's inner optimizer state: per_task (fresh), carried (fewjax.methods.reptile)
    c.remat = False
    # iMAML (Rajeswaran et al. 2019): proximal strength lambda of the inner problem, conjugate-gradient iterations
    # for the implicit meta-gradient, and damping of that linear system (see fewjax.imaml_loss).
    c.imaml_lam = 2.0
    c.imaml_cg_steps = 5
    c.imaml_cg_damping = 0.0
    # MAML++ (Antoniou et al. 2019), method "mamlpp": each of the paper's changes is a switch (fewjax.methods.mamlpp);
    # the fifth, cosine annealing of the outer learning rate, is optim.schedule="cosine" with optim.min_lr.
    c.mamlpp = ml_collections.ConfigDict()
    c.mamlpp.multi_step_loss = True  # the query loss after every inner step, weights annealed to the last step
    c.mamlpp.msl_epochs = 10  # ... over this many epochs; after them only the last step's loss counts
    c.mamlpp.epoch_steps = 500  # meta-steps per epoch of the paper's schedules (its annealing moves once per epoch)
    c.mamlpp.first_order_epochs = 0  # derivative-order annealing: first order for this many epochs; 0 = off
    c.mamlpp.per_step_bn = True  # batch-norm weights and biases per inner step (meta-learned, not adapted)
    c.mamlpp.lslr = True  # learned per-layer, per-step inner learning rates, initialised at inner_lr
    # How a device runs its tasks: "vmap" (all at once), "scan" (one at a time, gradients summed: memory of one
    # task), "auto" ("scan" on CPU for methods whose tasks get their own adapted weights, else "vmap").
    c.task_loop = "auto"

    c.distance = "sqeuclidean"  # protonet: sqeuclidean or cosine
    c.matching_distance = "cosine"  # matching networks' attention: cosine (Vinyals et al.) or sqeuclidean
    c.temperature = 1.0  # protonet/matching logits are divided by it

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adam"  # adam or sgd (Reptile's outer step)
    c.optim.lr = 1e-3
    c.optim.schedule = "constant"  # constant, step (x decay_rate every decay_every), cosine, linear (to min_lr)
    c.optim.min_lr = 0.0  # where cosine and linear end after total_steps
    c.optim.decay_every = 2000
    c.optim.decay_rate = 0.5
    c.optim.grad_clip = 0.0  # global-norm clipping; 0 = off
    c.ema_decay = 0.0  # > 0 keeps a moving average of the params, validated alongside (val_ema_*); the best
    # checkpoint and the final test use the raw params: evaluate.py --ema tests the average
    c.text = text_config()  # used when dataset is one of TEXT_DATASETS
    return c


def text_config() -> ml_collections.ConfigDict:
    """`config.text`: the pretrained encoder and how text runs use it (read when dataset is a text dataset)."""
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
    t.student_layers = 2  # distill: the student is the pretrained encoder's first student_layers layers
    t.distill_temperature = 4.0  # distill: softmax temperature of the teacher's and student's episode logits
    t.distill_alpha = 0.9  # distill: weight of the soft (teacher) term; 1 - alpha weighs the labels
    t.setfit_head = "logistic"  # setfit: "logistic" (regression on the fine-tuned embeddings) or "prototype"
    t.head_l2 = 1.0  # setfit: the logistic head's L2 penalty (scikit-learn's C = 1 / head_l2)
    t.label_names = False  # every metric method: each class's name (its words) as one more support example
    t.support_filter = 0.0  # protonet: > 0 drops support examples this cosine-similar to an earlier one (0 = off)
    t.prompt_length = 8  # prompt: soft prompt vectors inserted after [CLS] (the encoder stays frozen)
    t.prompt_init = "vocab"  # prompt: "vocab" (frequent words' embeddings) or "random"; meta-learned if total_steps > 0
    return t


TEXT_PRESETS = {"clinc150_5w1s": ("clinc150", 1), "clinc150_5w5s": ("clinc150", 5),
                "fewrel_5w1s": ("fewrel", 1), "fewrel_5w5s": ("fewrel", 5)}
"""Preset name -> (dataset, shots): 5-way episodes, 15 test queries per class (the usual protocol)."""


PRESET_MAX_LENGTH = {"clinc150": 32, "fewrel": 64}
"""Tokens per text in the presets: CLINC150 utterances fit 32 (1 of 22,500 is cut), FewRel sentences with entity
markers fit 64 for 97%."""


def text_preset_config(preset_name: str, *, config_file: str) -> ml_collections.ConfigDict:
    """The shared part of `configs/text_*.py`: dataset, episode shapes, sequence length and a CPU schedule.

    Training episodes use 5 queries per class (cheaper steps on a CPU); test episodes 15; sequences are
    `PRESET_MAX_LENGTH` tokens.
    """
    dataset, shots = preset(preset_name, TEXT_PRESETS, config_file)
    c = base_config()
    c.dataset = dataset
    c.text.max_length = PRESET_MAX_LENGTH[dataset]
    c.ways, c.shots, c.queries = 5, shots, 5
    c.test_ways, c.test_shots, c.test_queries = 5, shots, 15
    c.meta_batch_size = 4
    c.distance, c.temperature = "cosine", 0.1
    c.optim.lr, c.optim.schedule, c.optim.grad_clip = 2e-5, "constant", 1.0
    c.total_steps, c.log_every, c.eval_every, c.checkpoint_every = 200, 20, 100, 100
    c.val_episodes, c.test_episodes, c.eval_batch_size = 50, 600, 10
    return c


OMNIGLOT_PRESETS = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1), "20w5s": (20, 5)}
"""The Vinyals-split test settings every Omniglot config accepts, as (ways, shots)."""


def omniglot_presets(config_file: str, *, extra: dict | None = None):
    """Decorator of a `configs/omniglot_*.py` config, `fill(c, preset, ways, shots, **kwargs) -> c`, that makes
    its `get_config(preset="5w1s", **kwargs)`.

    `c` arrives as `base_config()` with the preset's ways and shots for training and testing and 15 queries per
    class; the presets are the four Vinyals settings, `lake` (20-way 1-shot; Lake's protocol is applied after
    `fill`) and the config's `extra` ones. An unknown preset is one error listing them.
    """
    def wrap(fill):
        @functools.wraps(fill)
        def get_config(name: str = "5w1s", **kwargs):
            ways, shots = preset(name, {**OMNIGLOT_PRESETS, **LAKE_PRESET, **(extra or {})}, config_file)
            c = base_config()
            c.ways = c.test_ways = ways
            c.shots = c.test_shots = shots
            c.queries = c.test_queries = 15
            c = fill(c, name, ways, shots, **kwargs)
            return lake_protocol(c) if name == "lake" else c

        return get_config

    return wrap


def preset(name: str, presets: dict, config_file: str):
    """`presets[name]`, or one clear error listing the presets of `config_file`."""
    if name not in presets:
        raise ValueError(f"unknown preset {name!r} for {config_file}; choose one of {sorted(presets)}")
    return presets[name]


LAKE_PRESET = {"lake": (20, 1)}
"""The preset name every Omniglot config accepts for Lake et al.'s (2015) one-shot challenge (see `lake_protocol`)."""


def lake_protocol(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Lake's challenge: train on the 30 background alphabets only; test 20-way 1-shot within one alphabet.

    Each test episode takes 20 characters of one evaluation alphabet, the support drawn by one person and the 20
    queries (one per character) by another. Published errors: people 4.5%, BPL 3.3%, Siamese convnet 8.0%.
    """
    c.split, c.within_alphabet = "lake", True
    c.test_ways, c.test_shots, c.test_queries = 20, 1, 1
    return c


NON_TRANSDUCTIVE_METHODS = ("maml", "fomaml", "metasgd", "anil", "reptile")
"""Methods that evaluate each query with the support set alone when `config.transductive` is False."""


def validate(c: ml_collections.ConfigDict) -> None:
    """Raises one ValueError naming the key, the value and the fix."""

    def need(ok, key, value, fix):
        if not ok:
            raise ValueError(f"config.{key}={value!r}: {fix}")

    need(c.dataset in DATASETS, "dataset", c.dataset, f"choose one of {DATASETS}")
    if c.dataset in TEXT_DATASETS:
        need(c.method in TEXT_METHODS, "method", c.method, f"text datasets support {tuple(TEXT_METHODS)}")
    else:
        need(c.method in METHODS, "method", c.method, f"choose one of {tuple(METHODS)}"
             + (f" ({c.method} is for text datasets {TEXT_DATASETS})" if c.method in TEXT_METHODS else ""))
    need(0.0 <= c.text.support_filter < 1.0, "text.support_filter", c.text.support_filter,
         "pass a cosine similarity in (0, 1) above which a support example is a near-duplicate, or 0 for off")
    need(c.text.support_filter == 0 or (c.method == "protonet" and c.dataset in TEXT_DATASETS), "text.support_filter",
         c.text.support_filter, "support filtering is for text ProtoNet (method protonet on a text dataset); set 0")
    if c.method == "setfit":
        need(c.text.setfit_head in ("logistic", "prototype"), "text.setfit_head", c.text.setfit_head,
             "choose logistic or prototype")
        need(c.text.head_l2 > 0, "text.head_l2", c.text.head_l2, "must be > 0 (the logistic head's L2 penalty)")
        need(c.test_shots * c.test_ways >= 2, "test_shots", c.test_shots,
             "setfit needs two support examples to make a pair")
    for key in ("distance", "matching_distance"):
        need(c[key] in DISTANCES, key, c[key], f"choose one of {DISTANCES}")
    need(c.optim.schedule in SCHEDULES, "optim.schedule", c.optim.schedule, f"choose one of {SCHEDULES}")
    need(c.optim.name in ("adam", "sgd"), "optim.name", c.optim.name, "choose adam or sgd")
    need(c.inner_optimizer in ("sgd", "adam"), "inner_optimizer", c.inner_optimizer, "choose sgd or adam")
    need(c.model.dtype in ("float32", "bfloat16"), "model.dtype", c.model.dtype, "choose float32 or bfloat16")
    need(c.model.conv_grad in ("auto",) + CONV_GRADS, "model.conv_grad", c.model.conv_grad,
         f"choose one of {('auto',) + CONV_GRADS}")
    need(c.task_loop in ("auto", "vmap", "scan"), "task_loop", c.task_loop, "choose auto, vmap or scan")
    for key in ("total_steps", "early_stop_patience"):
        need(c[key] >= 0, key, c[key], "must be >= 0")
    for key in ("ways", "shots", "queries", "test_ways", "test_shots", "test_queries", "meta_batch_size",
                "steps_per_call", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
                "val_episodes", "test_episodes", "eval_batch_size", "fsdp"):
        need(c[key] >= 1, key, c[key], "must be >= 1")
    need(c.total_steps % c.steps_per_call == 0 or c.total_steps == 0, "steps_per_call", c.steps_per_call,
         f"must divide total_steps={c.total_steps}")
    for key in ("log_every", "eval_every", "checkpoint_every"):
        need(c[key] % c.steps_per_call == 0, key, c[key], f"must be a multiple of steps_per_call={c.steps_per_call}")
    if c.method == "finetune":
        need(c.total_steps == 0, "total_steps", c.total_steps,
             "finetune has no meta-training (it fine-tunes per test episode); set --config.total_steps=0")
    if c.method in PER_TASK_WEIGHTS:
        need(c.inner_steps >= 1, "inner_steps", c.inner_steps, "must be >= 1 for this method")
        need(c.eval_inner_steps >= 1, "eval_inner_steps", c.eval_inner_steps, "must be >= 1")
        if c.dataset != "sinusoid":
            need(c.test_ways == c.ways, "test_ways", c.test_ways,
                 f"{c.method} has a {c.ways}-way head: test_ways must equal ways={c.ways}")
    if c.dataset == "sinusoid":
        need(c.method in PER_TASK_WEIGHTS, "method", c.method,
             "sinusoid regression needs a MAML-family method or reptile")
    if c.inner_batch_size:
        need(c.method == "reptile", "inner_batch_size", c.inner_batch_size,
             "inner mini-batches are Reptile's (method=reptile); set 0 for full-batch inner steps")
        inner_examples = c.ways * (c.shots + c.queries) if c.dataset != "sinusoid" else c.inner_batch_size
        need(1 <= c.inner_batch_size <= inner_examples, "inner_batch_size", c.inner_batch_size,
             f"must lie in [1, {inner_examples}] (a training task's ways * (shots + queries) examples), or 0")
    if c.eval_inner_batch_size:
        need(c.method == "reptile", "eval_inner_batch_size", c.eval_inner_batch_size,
             "test-time inner mini-batches are Reptile's (method=reptile); set 0 for steps on the whole support set")
        support = c.test_ways * c.test_shots
        need(1 <= c.eval_inner_batch_size <= support, "eval_inner_batch_size", c.eval_inner_batch_size,
             f"must lie in [1, {support}] (a test episode's test_ways * test_shots support examples), or 0")
    need(c.inner_state in ("per_task", "carried"), "inner_state", c.inner_state, "choose per_task or carried")
    if c.inner_state == "carried":
        need(c.method == "reptile" and c.inner_optimizer == "adam", "inner_state", c.inner_state,
             "only Reptile with inner_optimizer=adam carries an inner optimizer state; use per_task")
    if c.method == "imaml":
        need(c.imaml_lam > 0, "imaml_lam", c.imaml_lam, "must be > 0 (the proximal strength lambda)")
        need(c.imaml_cg_steps >= 0, "imaml_cg_steps", c.imaml_cg_steps, "must be >= 0 (0: first-order approximation)")
        need(c.imaml_cg_damping >= 0, "imaml_cg_damping", c.imaml_cg_damping, "must be >= 0")
    if c.method == "mamlpp":
        need(c.eval_inner_steps == c.inner_steps or not (c.mamlpp.per_step_bn or c.mamlpp.lslr), "eval_inner_steps",
             c.eval_inner_steps, "MAML++ learns batch-norm weights and inner rates per inner step (mamlpp.per_step_bn, "
             f"mamlpp.lslr): set eval_inner_steps = inner_steps = {c.inner_steps}")
        for key in ("msl_epochs", "epoch_steps"):
            need(c.mamlpp[key] >= 1, f"mamlpp.{key}", c.mamlpp[key], "must be >= 1")
        need(c.mamlpp.first_order_epochs >= 0, "mamlpp.first_order_epochs", c.mamlpp.first_order_epochs,
             "must be >= 0 (0: second order from the start)")
        need(c.inner_optimizer == "sgd", "inner_optimizer", c.inner_optimizer,
             "MAML++'s inner loop is SGD at its (learned) per-step rates: use sgd")
    need(0.0 <= c.optim.min_lr <= c.optim.lr, "optim.min_lr", c.optim.min_lr, f"must lie in [0, optim.lr={c.optim.lr}]")
    need(0.0 <= c.ema_decay < 1.0, "ema_decay", c.ema_decay, "must lie in [0, 1)")
    need(c.task_sampling in ("uniform", "adaptive"), "task_sampling", c.task_sampling, "choose uniform or adaptive")
    if c.task_sampling == "adaptive":
        need(c.dataset != "sinusoid", "task_sampling", c.task_sampling,
             "sinusoid regression has no classes to weight: use task_sampling=uniform")
        need(c.method != "finetune", "task_sampling", c.task_sampling,
             "finetune has no meta-training (total_steps=0), so no training tasks to sample: use task_sampling=uniform")
        need(0.0 <= c.task_sampling_decay < 1.0, "task_sampling_decay", c.task_sampling_decay, "must lie in [0, 1)")
        need(c.task_sampling_temperature > 0, "task_sampling_temperature", c.task_sampling_temperature, "must be > 0")
        need(0.0 <= c.task_sampling_floor <= 1.0, "task_sampling_floor", c.task_sampling_floor,
             "must lie in [0, 1] (the share of draws kept uniform)")
    need(c.transductive or (c.method in NON_TRANSDUCTIVE_METHODS and c.dataset not in ("sinusoid",) + TEXT_DATASETS),
         "transductive", c.transductive, f"non-transductive evaluation is for image classification with "
         f"{NON_TRANSDUCTIVE_METHODS} (text encoders normalise each example alone, so their queries never share "
         "statistics); leave it True")
    need(0.0 <= c.train_within_alphabet <= 1.0, "train_within_alphabet", c.train_within_alphabet,
         "pass the share of training episodes drawn within one alphabet, in [0, 1]")
    need(not c.train_within_alphabet or c.dataset == "omniglot", "train_within_alphabet", c.train_within_alphabet,
         "episodes within one alphabet need Omniglot's alphabets: set it to 0 for other datasets")
    need(not c.within_alphabet or c.dataset == "omniglot", "within_alphabet", c.within_alphabet,
         "within-alphabet episodes need dataset=omniglot (Lake's protocol; train with split=lake on the background "
         "alphabets only)")
    need(not c.within_alphabet or c.split.startswith("lake"), "within_alphabet", c.within_alphabet,
         f"Lake's test draws from the evaluation alphabets, unrotated, of a run trained with split=lake; split="
         f"{c.split!r} tests on rotated characters (and may train on evaluation alphabets): use split=lake, or "
         "within_alphabet=False")
    need(c.model.name in MODELS, "model.name", c.model.name, f"choose one of {MODELS}")
    need(c.model.hidden >= 1, "model.hidden", c.model.hidden, "must be >= 1")
    need(c.model.norm in NORMS, "model.norm", c.model.norm, f"choose one of {NORMS}")
    need(c.model.pool in POOLS, "model.pool", c.model.pool, f"choose one of {POOLS}")
    if c.dataset == "sinusoid":
        need(c.model.name == "mlp", "model.name", c.model.name, "sinusoid regression runs on the mlp")
        need(c.test_ways == c.ways, "test_ways", c.test_ways,
             f"sinusoid regression has no classes; leave test_ways = ways = {c.ways}")
        need(c.model.dtype == "float32", "model.dtype", c.model.dtype, "the sinusoid mlp computes in float32")
    elif c.dataset not in TEXT_DATASETS:
        need(c.model.name != "mlp", "model.name", c.model.name, "the mlp is for sinusoid regression; images need "
             "conv4 or resnet12")
        need(c.model.pool == "max" or c.model.name == "conv4", "model.pool", c.model.pool,
             f"{c.model.name} pools with max-pooling only; model.pool=stride is conv4's")
        smallest = 1 if c.model.name == "conv4" and c.model.pool == "stride" else 16
        need(c.image_size >= smallest, "image_size", c.image_size,
             f"{c.model.name} halves the image four times; below {smallest} pixels no feature is left: use >= "
             f"{smallest}" + (" (or model.pool=stride)" if c.model.name == "conv4" else ""))
        need(c.split == "vinyals" or c.dataset == "omniglot", "split", c.split,
             "the split names Omniglot's alphabets; other datasets ignore it: leave vinyals")
    adapting = INNER_OPTIMIZER_METHODS["text" if c.dataset in TEXT_DATASETS else "image"]
    need(c.inner_optimizer == "sgd" or c.method in adapting, "inner_optimizer", c.inner_optimizer,
         f"{c.method} does not read it (its inner loop, if it has one, is plain SGD); only {adapting} take Adam "
         "here: leave sgd")
    if c.dataset in TEXT_DATASETS:
        need(c.text.max_length == 0 or 2 <= c.text.max_length <= 512, "text.max_length", c.text.max_length,
             "tokens per text, in [2, 512] (BERT's positions), or 0 to fit the data")
        need(c.text.logit_scale > 0, "text.logit_scale", c.text.logit_scale, "must be > 0")
        defaults = text_config()
        for key, readers in TEXT_KEY_METHODS.items():
            need(c.text[key] == defaults[key] or c.method in readers, f"text.{key}", c.text[key],
                 f"only {readers} read it and {c.method} would ignore it: leave the default {defaults[key]!r}")
    need(not c.augment.affine or (c.model.name in ("conv4", "resnet12") and c.dataset not in TEXT_DATASETS),
         "augment.affine", c.augment.affine, "is for images")
    need(0 <= c.augment.max_scale < 1, "augment.max_scale", c.augment.max_scale, "must lie in [0, 1)")
    for key in ("max_rotation", "max_shear", "max_shift"):
        need(c.augment[key] >= 0, f"augment.{key}", c.augment[key], "must be >= 0")
    for key in ("resized_crop", "flip", "color_jitter"):
        need(not c.augment[key] or (c.model.name in ("conv4", "resnet12") and c.dataset not in TEXT_DATASETS),
             f"augment.{key}", c.augment[key], "is for images")
    need(0 < c.augment.crop_min_scale <= 1, "augment.crop_min_scale", c.augment.crop_min_scale,
         "must lie in (0, 1] (the crop's smallest area as a fraction of the image)")
    need(c.augment.color_jitter >= 0, "augment.color_jitter", c.augment.color_jitter, "must be >= 0 (0 = off)")
    need(c.augment.color_jitter == 0 or c.dataset != "omniglot", "augment.color_jitter", c.augment.color_jitter,
         "is for RGB photos; Omniglot is grayscale: set it to 0")
