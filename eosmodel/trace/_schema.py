"""The trace schema: the standard columns and their meaning (versioned)."""

from __future__ import annotations

SCHEMA_NAME = "eosmodel.trace"

#: Version of the on-disk format. Bump it when a column changes meaning or the file layout
#: changes; readers accept every version up to this one.
SCHEMA_VERSION = 1

#: The standard per-step columns. All are measured at the parameters w_t of step t.
#: Other columns are allowed (``test_loss``, ``test_accuracy``, toy coordinates such as ``x``).
STANDARD_COLUMNS: dict[str, str] = {
    "step": "t, the step index (integer, strictly increasing)",
    "loss": "f(w_t), the training loss (the batch loss in mini-batch runs)",
    "grad_norm_sq": "||grad f(w_t)||^2",
    "stepsize": "eta_t, the stepsize taken from w_t: w_{t+1} = w_t - eta_t g_t",
    "sharpness": "lambda_1(w_t), the top Hessian eigenvalue; NaN where not measured",
    "normalized_sharpness": "eta_t * lambda_1(w_t) (edge of stability at 2); NaN where not measured",
    "grad_curvature": (
        "g_t' H g_t / ||g_t||^2, the curvature along the step direction (<= lambda_1); NaN where not measured"
    ),
    "hvps": "Hessian-vector products spent on the sharpness estimate at this step (0 if none)",
    "wall_time": "seconds since the run started",
}

#: Prefixes of families of columns.
COLUMN_FAMILIES: dict[str, str] = {
    "sharpness_": "sharpness_j = lambda_j(w_t), the j-th largest Hessian eigenvalue (j >= 2)",
    "tuner_": "tuner diagnostics, e.g. tuner_num_trials, tuner_failed, tuner_skipped",
}

#: Names that other frameworks commonly use for the standard columns, for CSV import.
CSV_ALIASES: dict[str, str] = {
    "iteration": "step",
    "iter": "step",
    "it": "step",
    "train_loss": "loss",
    "lr": "stepsize",
    "learning_rate": "stepsize",
    "eta": "stepsize",
    "step_size": "stepsize",
    "lambda": "sharpness",
    "lambda_max": "sharpness",
    "top_eigenvalue": "sharpness",
    "eig": "sharpness",
    "grad_norm2": "grad_norm_sq",
    "grad_norm_squared": "grad_norm_sq",
}
