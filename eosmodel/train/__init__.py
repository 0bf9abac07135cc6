"""Train real networks with stepsize tuners while tracking sharpness (full batch and mini-batch).

Public API:

* data, models, losses: :func:`load_dataset` / :class:`Dataset` (MNIST-1D embedded, digits,
  CIFAR-10 from local files, synthetic), :func:`make_model` / :func:`init_model` (fc, cnn, VGG11,
  ResNet), :func:`make_loss_fn` / :class:`LossFns` (MSE with the ½ convention, cross-entropy);
* configs: :data:`SCHEMA` (every key: type, default, meaning, valid range, aliases) behind
  :func:`normalize_config` (defaults and validation) and :func:`describe_config` (``eosmodel train
  --show-config``, docs/config.md); :func:`load_config` (TOML/JSON + ``table.key=value`` overrides),
  :func:`config_mismatch` (can a run directory's config be resumed with this one?),
  :data:`DEFAULTS`;
* your own data, model and initial weights: ``data.factory``/``model.factory`` =
  ``"package.module:function"`` (:func:`build_dataset`, :func:`build_model`, :func:`load_factory`),
  ``model.init_from`` = an ``.npz`` (:func:`save_params`, :func:`load_params`);
* runs: :func:`run_training` (run directory with config.json, trace.jsonl, checkpoints,
  summary.json; resumable) returning a :class:`RunResult`; :data:`EXIT_DIVERGED`;
* devices: :func:`make_data_parallel` (data parallelism over local devices).

Example (a few full-batch GD steps on synthetic data)::

    from eosmodel.train import run_training
    result = run_training({"data": {"name": "synthetic", "n_train": 64, "n_test": 32},
                           "model": {"name": "fc-tanh", "width": 16},
                           "tuner": {"preset": "armijo-jax"},
                           "train": {"steps": 20}, "sharpness": {"every": 5}}, "runs/example")
    result.trace["sharpness"], result.summary["final_train_loss"]
"""

from eosmodel.train._config import (
    DEFAULTS,
    SCHEMA,
    TUNER_ALIASES,
    apply_overrides,
    config_mismatch,
    describe_config,
    load_factory,
    load_config,
    normalize_config,
    parse_override,
    resolve_tuner,
)
from eosmodel.train._factory import build_dataset, build_model, load_params, save_params
from eosmodel.train._data import DATA_DEFAULTS, DATASETS, Dataset, load_dataset, standardize
from eosmodel.train._losses import LOSSES, LossFns, accuracy, cross_entropy, make_loss_fn, mse
from eosmodel.train._models import MODEL_DEFAULTS, MODELS, count_params, has_batch_norm, init_model, make_model
from eosmodel.train._parallel import DataParallel, make_data_parallel
from eosmodel.train._run import EXIT_DIVERGED, RunResult, load_checkpoint, run_lock, run_training, save_checkpoint

__all__ = [
    "DATASETS",
    "DATA_DEFAULTS",
    "DEFAULTS",
    "DataParallel",
    "Dataset",
    "EXIT_DIVERGED",
    "LOSSES",
    "LossFns",
    "MODELS",
    "MODEL_DEFAULTS",
    "RunResult",
    "SCHEMA",
    "TUNER_ALIASES",
    "build_dataset",
    "build_model",
    "describe_config",
    "load_factory",
    "load_params",
    "save_params",
    "accuracy",
    "apply_overrides",
    "config_mismatch",
    "count_params",
    "cross_entropy",
    "has_batch_norm",
    "init_model",
    "load_checkpoint",
    "load_config",
    "load_dataset",
    "make_data_parallel",
    "make_loss_fn",
    "make_model",
    "mse",
    "normalize_config",
    "parse_override",
    "resolve_tuner",
    "run_lock",
    "run_training",
    "save_checkpoint",
    "standardize",
]
