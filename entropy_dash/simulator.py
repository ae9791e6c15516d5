"""A small numpy simulator of RL with verifiable rewards (RLVR), used as the demo's training runs.

The model
---------
*Policy.* A softmax policy with logits ``τ·θ[p, l, v]`` for every prompt ``p`` (``n_prompts``), answer
position ``l`` (``positions``) and vocabulary token ``v`` (``vocab``). A response to prompt ``p`` is one token
per position, drawn independently from ``softmax(τ·θ[p, l])``. ``θ`` is tabular (one row per prompt and
position); ``τ`` is one shared inverse temperature, the stand-in for an LLM's shared weights: as solved
prompts grow confident, ``τ`` rises and sharpens *every* prompt — unsolved ones collapse onto their wrong
favourite too, which is what makes entropy collapse globally and caps accuracy.

*Task.* Every (prompt, position) has one target token. A response is **correct iff every position holds its
target** (reward 1, else 0) — the all-or-nothing check of a math answer. ``init_skill`` ("model size") is the
initial logit bias toward the target tokens; each prompt also gets a difficulty (a lower bias) and some
(prompt, position) pairs a confident *wrong* favourite (a misconception), so weak models start with a few
prompts they almost never solve: entropy there collapses onto the wrong answer and the run hits a ceiling
below 1 — the trade the entropy–performance law describes.

*Training (GRPO).* At step t = 1..T the trainer draws ``batch_prompts`` prompts, samples ``group_size``
responses to each from the current policy, scores them, and computes group-normalised advantages
``A = (r − mean_group) / (std_group + ε)``. The policy-gradient step on the logits of every sampled token is
``g = mean_g A_g · (onehot(y_gl) − π[p, l])`` with respect to the logits, applied by the chain rule:
``θ += lr · τ · g`` and ``τ += sharpen_ratio · lr · mean_{p,l} Σ_v g·θ`` (on-policy, one update per batch, so
PPO's ratio is 1 and nothing is clipped). By default every step trains on the whole prompt set
(``batch_prompts = n_prompts``), so the logged entropy is that of the whole policy. Options, as in real
sweeps:

* ``entropy_bonus`` β adds ``β · ∇H`` (the entropy loss term of verl's actor).
* ``clip_cov`` (a fraction, 0 = off) is a Clip-Cov-like intervention: per sampled token the covariance term
  ``(log π(y) − mean log π) · (A − mean A)`` is computed over the batch and the policy-gradient update of the
  ``clip_cov`` fraction of tokens with the highest covariance is skipped (their gradient is detached).

*What is measured*, as verl logs it: at step t, ``actor/entropy`` is the mean token entropy of the rollouts
sampled at step t (the policy *before* update t) and ``critic/score/mean`` their mean reward. Validation
``val-core/<task>/acc/mean@1`` is the pass@1 of the policy on the whole prompt set — its exact expectation
``mean_p Π_l π[p, l, target]``, or with ``val_samples`` > 0 a binomial sample of that many responses per
prompt (the demo uses 4: a little evaluation noise) — evaluated before training (logged at step 0) and after update t for every t
that is a multiple of ``val_every`` (logged at step t). Validation at step s is therefore of the policy whose
entropy is logged at step s + 1 (the project's alignment rule, ``models.align``).

Everything is pure numpy and deterministic given ``seed``; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from entropy_dash.errors import ConfigError

ENTROPY_KEY = "actor/entropy"
SCORE_KEY = "critic/score/mean"
ADV_EPS = 1e-6  # verl's epsilon in the GRPO advantage denominator


def val_key(task: str) -> str:
    """verl's validation key for ``task`` (the data source), before MLflow's ``@`` → ``_at_`` rewrite."""
    return f"val-core/{task}/acc/mean@1"


@dataclass(frozen=True)
class SimConfig:
    """One simulated run. Field meanings are in the module docstring; defaults give a 1.5B-like GRPO run.

    name: run name (MLflow ``mlflow.runName``); seed: RNG seed (initial policy and sampling);
    steps: training steps T; n_prompts: size of the prompt set (train and validation);
    batch_prompts: prompts per training step; positions: tokens per response; vocab: vocabulary size;
    group_size: responses per prompt (GRPO's n); lr: step size on the logits;
    sharpen_ratio: step size of the shared inverse temperature τ, relative to lr;
    init_skill: initial logit bias toward the target tokens ("model size");
    difficulty: spread (std) of the per-prompt difficulty subtracted from that bias;
    misconception: probability that a (prompt, position) has a confidently favoured wrong token;
    misconception_strength: the logit bias of that wrong token; logit_noise: std of the random initial logits;
    entropy_bonus: coefficient β of the entropy bonus (0 = off);
    clip_cov: fraction of sampled tokens whose update is skipped by Clip-Cov (0 = off);
    val_every: validation interval in steps; val_samples: validation responses per prompt (0 = the exact
    expected accuracy, no sampling noise); task: data-source name in the validation key;
    model_size / algorithm: labels for params and tags.
    """

    name: str = "qwen-sim-1.5B-grpo"
    seed: int = 0
    steps: int = 240
    n_prompts: int = 256
    batch_prompts: int = 256
    positions: int = 4
    vocab: int = 16
    group_size: int = 8
    lr: float = 0.5
    sharpen_ratio: float = 0.15
    init_skill: float = 1.5
    difficulty: float = 1.0
    misconception: float = 0.05
    misconception_strength: float = 8.0
    logit_noise: float = 0.5
    entropy_bonus: float = 0.0
    clip_cov: float = 0.0
    val_every: int = 5
    val_samples: int = 0
    task: str = "gsm8k-sim"
    model_size: str = "1.5B"
    algorithm: str = "grpo"

    def __post_init__(self) -> None:
        positive = ("steps", "n_prompts", "batch_prompts", "positions", "group_size", "val_every")
        for f in positive:
            if getattr(self, f) < 1:
                raise ConfigError(f"SimConfig.{f} must be >= 1, got {getattr(self, f)}")
        if self.vocab < 2:
            raise ConfigError(f"SimConfig.vocab must be >= 2, got {self.vocab}")
        if self.batch_prompts > self.n_prompts:
            raise ConfigError(f"SimConfig.batch_prompts ({self.batch_prompts}) exceeds n_prompts ({self.n_prompts})")
        if not 0.0 <= self.clip_cov < 1.0:
            raise ConfigError(f"SimConfig.clip_cov is a fraction in [0, 1), got {self.clip_cov}")
        if not 0.0 <= self.misconception <= 1.0:
            raise ConfigError(f"SimConfig.misconception is a probability, got {self.misconception}")
        if self.val_samples < 0:
            raise ConfigError(f"SimConfig.val_samples must be >= 0 (0 = exact expectation), got {self.val_samples}")
        for f in ("lr", "sharpen_ratio", "entropy_bonus", "difficulty", "logit_noise"):
            if not np.isfinite(getattr(self, f)) or getattr(self, f) < 0:
                raise ConfigError(f"SimConfig.{f} must be finite and >= 0, got {getattr(self, f)}")

    @property
    def intervention(self) -> str:
        """``clip-cov``, ``entropy-bonus``, both joined by ``+``, or ``none``."""
        parts = [n for n, on in (("clip-cov", self.clip_cov > 0), ("entropy-bonus", self.entropy_bonus > 0)) if on]
        return "+".join(parts) or "none"


@dataclass(frozen=True)
class SimulatedRun:
    """A finished simulation: its config, verl-like flattened params, tags, and metric series.

    ``metrics`` maps verl's metric names (with ``@``, as verl computes them) to ``(steps, values)`` arrays.
    """

    config: SimConfig
    params: dict[str, str | float | int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def entropy(self) -> tuple[np.ndarray, np.ndarray]:
        return self.metrics[ENTROPY_KEY]

    @property
    def score(self) -> tuple[np.ndarray, np.ndarray]:
        return self.metrics[SCORE_KEY]

    @property
    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        return self.metrics[val_key(self.config.task)]


# ---------------------------------------------------------------------------------------------- policy math


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of the distributions on the last axis."""
    return -(probs * np.log(np.clip(probs, 1e-30, None))).sum(axis=-1)


def _initial_logits(cfg: SimConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Initial logits (P, L, V) and target tokens (P, L): noise + skill bias − difficulty + misconceptions.

    A misconceived prompt has one position whose favourite is a wrong token, ``misconception_strength``
    logits above the target.
    """
    p, n_pos, v = cfg.n_prompts, cfg.positions, cfg.vocab
    logits = cfg.logit_noise * rng.standard_normal((p, n_pos, v))
    target = rng.integers(0, v, size=(p, n_pos))
    bias = cfg.init_skill - cfg.difficulty * rng.standard_normal((p, 1))
    _add_at(logits, target, np.broadcast_to(bias, target.shape))
    t_logit = np.take_along_axis(logits, target[..., None], -1)[..., 0]
    wrong = (target + rng.integers(1, v, size=(p, n_pos))) % v
    confused = np.zeros((p, n_pos), dtype=bool)
    confused[np.arange(p), rng.integers(0, n_pos, size=p)] = rng.random(p) < cfg.misconception
    w_logit = np.take_along_axis(logits, wrong[..., None], -1)[..., 0]
    _add_at(logits, wrong, np.where(confused, t_logit + cfg.misconception_strength - w_logit, 0.0))
    return logits, target


def _add_at(logits: np.ndarray, tokens: np.ndarray, amount: np.ndarray) -> None:
    """``logits[..., tokens] += amount`` for one token per (prompt, position), in place."""
    cur = np.take_along_axis(logits, tokens[..., None], -1)
    np.put_along_axis(logits, tokens[..., None], cur + amount[..., None], axis=-1)


def _sample(probs: np.ndarray, group: int, rng: np.random.Generator) -> np.ndarray:
    """Tokens (B, G, L) drawn from probs (B, L, V) by inverse-CDF sampling, G responses per prompt."""
    cdf = np.cumsum(probs, axis=-1)
    cdf[..., -1] = 1.0  # guard against rounding: every draw u < 1 lands on some token
    u = rng.random((probs.shape[0], group, probs.shape[1], 1))
    return (cdf[:, None, :, :] > u).argmax(axis=-1)


def _grpo_advantages(rewards: np.ndarray) -> np.ndarray:
    """Group-normalised advantages (B, G): (r − group mean) / (group std + ε), std unbiased as in verl."""
    mean = rewards.mean(axis=1, keepdims=True)
    std = rewards.std(axis=1, ddof=1, keepdims=True) if rewards.shape[1] > 1 else np.zeros_like(mean)
    return (rewards - mean) / (std + ADV_EPS)


def _clip_cov_mask(logp: np.ndarray, adv_tok: np.ndarray, fraction: float) -> np.ndarray:
    """1 where a token's update is kept, 0 for the ``fraction`` of tokens with the highest covariance term."""
    if fraction <= 0:
        return np.ones_like(logp)
    cov = (logp - logp.mean()) * (adv_tok - adv_tok.mean())
    k = int(round(fraction * cov.size))
    if k == 0:
        return np.ones_like(logp)
    flat = cov.ravel()
    top = np.argpartition(flat, flat.size - k)[flat.size - k:]
    top = top[flat[top] > 0]  # only tokens that actually push entropy down
    mask = np.ones(flat.size)
    mask[top] = 0.0
    return mask.reshape(logp.shape)


def _policy_gradient(probs: np.ndarray, tokens: np.ndarray, adv: np.ndarray, clip_cov: float) -> np.ndarray:
    """Ascent direction (B, L, V) of the GRPO objective mean_g A_g log π(y_g) on the logits."""
    b, g, n_pos = tokens.shape
    v = probs.shape[-1]
    adv_tok = np.broadcast_to(adv[:, :, None], tokens.shape)
    logp = np.log(np.take_along_axis(probs[:, None], tokens[..., None], axis=-1)[..., 0])
    weight = adv_tok * _clip_cov_mask(logp, adv_tok, clip_cov)
    cell = (np.arange(b)[:, None, None] * n_pos + np.arange(n_pos)[None, None, :]) * v + tokens
    counts = np.bincount(cell.ravel(), weights=weight.ravel(), minlength=b * n_pos * v).reshape(b, n_pos, v)
    return (counts - weight.sum(axis=1)[..., None] * probs) / g


def _entropy_gradient(probs: np.ndarray) -> np.ndarray:
    """∇ of the entropy with respect to the logits: −π (log π + H)."""
    logp = np.log(np.clip(probs, 1e-30, None))
    h = -(probs * logp).sum(axis=-1, keepdims=True)
    return -probs * (logp + h)


def _validate(probs: np.ndarray, target: np.ndarray, samples: int, rng: np.random.Generator) -> float:
    """mean@1 on the prompt set: exact expectation when ``samples`` is 0, else the mean over ``samples``
    sampled responses per prompt (each correct with the prompt's pass probability)."""
    p_target = np.take_along_axis(probs, target[..., None], axis=-1)[..., 0]
    pass_prob = np.prod(p_target, axis=-1)
    if samples == 0:
        return float(pass_prob.mean())
    return float(rng.binomial(samples, pass_prob).sum() / (samples * pass_prob.size))


# ------------------------------------------------------------------------------------------------- the run


def simulate(config: SimConfig) -> SimulatedRun:
    """Train the tabular policy of ``config`` with GRPO and return the verl-style metric series."""
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    theta, target = _initial_logits(cfg, rng)
    tau = 1.0  # shared inverse temperature: the policy's logits are tau * theta
    steps = np.arange(1, cfg.steps + 1)
    entropy = np.empty(cfg.steps)
    score = np.empty(cfg.steps)
    val_steps = [0]
    val_rng = np.random.default_rng([cfg.seed, 1])  # own stream: validation never shifts training
    val_vals = [_validate(_softmax(tau * theta), target, cfg.val_samples, val_rng)]
    for i, t in enumerate(steps):
        idx = _batch(cfg, rng)
        probs = _softmax(tau * theta[idx])
        tokens = _sample(probs, cfg.group_size, rng)
        rewards = (tokens == target[idx][:, None, :]).all(axis=-1).astype(float)
        entropy[i] = _entropy(probs).mean()
        score[i] = rewards.mean()
        grad = _policy_gradient(probs, tokens, _grpo_advantages(rewards), cfg.clip_cov)
        if cfg.entropy_bonus > 0:
            grad = grad + cfg.entropy_bonus * _entropy_gradient(probs)
        tau_grad = float((grad * theta[idx]).sum(axis=-1).mean())
        theta[idx] += cfg.lr * tau * grad
        tau = max(tau + cfg.sharpen_ratio * cfg.lr * tau_grad, 1e-3)
        if t % cfg.val_every == 0:
            val_steps.append(int(t))
            val_vals.append(_validate(_softmax(tau * theta), target, cfg.val_samples, val_rng))
    metrics = {
        ENTROPY_KEY: (steps, entropy),
        SCORE_KEY: (steps.copy(), score),
        val_key(cfg.task): (np.asarray(val_steps, dtype=np.int64), np.asarray(val_vals)),
    }
    return SimulatedRun(config=cfg, params=verl_params(cfg), tags=run_tags(cfg), metrics=metrics)


def _batch(cfg: SimConfig, rng: np.random.Generator) -> np.ndarray | slice:
    """Indices of this step's prompts (all of them when ``batch_prompts == n_prompts``)."""
    if cfg.batch_prompts == cfg.n_prompts:
        return slice(None)
    return rng.choice(cfg.n_prompts, size=cfg.batch_prompts, replace=False)


def verl_params(cfg: SimConfig) -> dict[str, str | float | int]:
    """The run's config as verl's MLflow logger flattens it (nested keys joined by ``/``)."""
    return {
        "algorithm/adv_estimator": cfg.algorithm,
        "algorithm/norm_adv_by_std_in_grpo": True,
        "data/train_batch_size": cfg.batch_prompts,
        "data/max_response_length": cfg.positions,
        "actor_rollout_ref/model/path": f"sim/qwen-sim-{cfg.model_size}",
        "actor_rollout_ref/actor/optim/lr": cfg.lr,
        "actor_rollout_ref/actor/entropy_coeff": cfg.entropy_bonus,
        "actor_rollout_ref/actor/policy_loss/loss_mode": "clip_cov" if cfg.clip_cov > 0 else "vanilla",
        "actor_rollout_ref/actor/policy_loss/clip_cov_ratio": cfg.clip_cov,
        "actor_rollout_ref/actor/loss_agg_mode": "token-mean",
        "actor_rollout_ref/rollout/n": cfg.group_size,
        "trainer/total_training_steps": cfg.steps,
        "trainer/test_freq": cfg.val_every,
        "trainer/val_before_train": True,
        "trainer/experiment_name": cfg.name,
        "sim/seed": cfg.seed,
        "sim/n_prompts": cfg.n_prompts,
        "sim/vocab": cfg.vocab,
        "sim/init_skill": cfg.init_skill,
        "sim/difficulty": cfg.difficulty,
        "sim/misconception": cfg.misconception,
        "sim/task": cfg.task,
    }


def run_tags(cfg: SimConfig) -> dict[str, str]:
    """Tags a sweep would set: run name, algorithm, model size, intervention, and that the run is simulated."""
    return {
        "mlflow.runName": cfg.name,
        "algorithm": cfg.algorithm,
        "model_size": cfg.model_size,
        "intervention": cfg.intervention,
        "task": cfg.task,
        "simulated": "true",
    }


# ------------------------------------------------------------------------------------------------- sweeps

#: model size → (initial logit bias toward the targets, fraction of prompts with a misconception)
MODEL_SIZES: dict[str, tuple[float, float]] = {"0.5B": (3.4, 0.35), "1.5B": (3.9, 0.25), "7B": (4.4, 0.15)}


def sized(size: str, **overrides: object) -> SimConfig:
    """A ``SimConfig`` for a model size of ``MODEL_SIZES``, its name built from size, algorithm and lr."""
    if size not in MODEL_SIZES:
        raise ConfigError(f"unknown model size {size!r}: use one of {', '.join(MODEL_SIZES)}")
    skill, misconception = MODEL_SIZES[size]
    cfg = SimConfig(init_skill=skill, misconception=misconception, model_size=size, **overrides)  # type: ignore[arg-type]
    if "name" in overrides:
        return cfg
    suffix = {"none": "", "clip-cov": "-clipcov", "entropy-bonus": "-entbonus"}.get(cfg.intervention, "-clipcov-entbonus")
    return replace(cfg, name=f"qwen-sim-{size}-{cfg.algorithm}-lr{cfg.lr:g}{suffix}")


#: validation responses per prompt in the demo (1024 in all): a little sampling noise, as in a real eval
DEMO_VAL_SAMPLES = 4


def demo_sweep(steps: int = 240) -> list[SimConfig]:
    """The demo's runs: three model sizes (plain GRPO), a higher and a lower learning rate, Clip-Cov and an
    entropy bonus — each with its own seed."""
    if steps < 20:
        raise ConfigError(f"the demo sweep needs at least 20 steps, got {steps}")
    common = {"steps": steps, "val_samples": DEMO_VAL_SAMPLES}
    return [
        sized("0.5B", seed=1, **common),
        sized("1.5B", seed=2, **common),
        sized("7B", seed=3, **common),
        sized("1.5B", seed=4, lr=1.0, **common),
        sized("1.5B", seed=5, lr=0.25, **common),
        sized("1.5B", seed=6, clip_cov=0.02, **common),
        sized("1.5B", seed=7, entropy_bonus=0.01, **common),
    ]


def config_fields() -> tuple[str, ...]:
    """Names of the ``SimConfig`` fields (for CLI help and docs)."""
    return tuple(f.name for f in fields(SimConfig))
