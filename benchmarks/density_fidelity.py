"""Density fidelity of the shared diffusion core on sets with a known density.

Sets of N i.i.d. particles (N uniform in [n_min, n_max], padded to n_max) drawn from a 3-D
Gaussian mixture; the true log-density of a set is the sum of the mixture log-density over its
particles.  Under the VP kernel a Gaussian mixture stays a Gaussian mixture, so the exact score
is available in closed form.  Three measurements:

1. exact_score_*: the analytic score through ``shared.diffusion.likelihood`` (tests the ODE/divergence/
   masking code alone), compared with the exact log p(x0).
2. trained_*: a small set score net trained on CPU for ``--train-minutes``, NLL vs truth on
   held-out sets.
3. permutation_*: several permutations of the same sets, several Hutchinson estimates each.

    python -m benchmarks.density_fidelity --out density_fidelity.json [--train-minutes 8 --seed 0]
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np
import tensorflow as tf
from scipy.special import logsumexp
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from shared.diffusion.likelihood import make_ode_fn, log_likelihood
from shared.diffusion.losses import dsm_loss
from shared.diffusion.score import eps_fn_from_model
from shared.diffusion.sde import make_sde
from shared.io import atomic_write_json
from shared.layers import (LOG_TIME_DEFAULT, OUTPUT_GAIN_DEFAULT, build_set_score_net,
                           gaussian_skip_sde)


class GaussianMixture:
    """Diagonal Gaussian mixture in d dimensions with its VP-perturbed eps in closed form."""

    def __init__(self, weights, means, stds):
        self.w = np.asarray(weights, np.float64) / np.sum(weights)
        self.mu = np.asarray(means, np.float64)          # (K, d)
        self.s = np.asarray(stds, np.float64)            # (K, d)

    def sample_sets(self, rng, n_sets, n_min, n_max):
        """x (n_sets, n_max, d) zero-padded, mask (n_sets, n_max) with N ~ U{n_min..n_max}."""
        d = self.mu.shape[1]
        counts = rng.integers(n_min, n_max + 1, n_sets)
        comp = rng.choice(len(self.w), size=(n_sets, n_max), p=self.w)
        x = self.mu[comp] + self.s[comp] * rng.standard_normal((n_sets, n_max, d))
        mask = (np.arange(n_max)[None, :] < counts[:, None]).astype(np.float64)
        return x * mask[..., None], mask

    def logpdf_particles(self, x, alpha=1.0, sigma=0.0):
        """log p_t per particle (…, d) of the perturbed mixture (NumPy, float64)."""
        var = alpha ** 2 * self.s ** 2 + sigma ** 2                      # (K, d)
        diff = x[..., None, :] - alpha * self.mu                         # (…, K, d)
        comp = -0.5 * np.sum(diff ** 2 / var + np.log(2 * np.pi * var), axis=-1)
        return logsumexp(comp + np.log(self.w), axis=-1)

    def log_prob_sets(self, x, mask):
        return np.sum(self.logpdf_particles(x) * mask, axis=1)

    def eps_fn(self, sde):
        """eps(x_t, t) = −σ(t) ∇ log p_t(x_t) in TF (differentiable, t of shape (B,))."""
        mu = tf.constant(self.mu, tf.float32)
        s2 = tf.constant(self.s ** 2, tf.float32)
        logw = tf.constant(np.log(self.w), tf.float32)

        def eps_fn(x, t, mask, cond):
            alpha, sigma = sde.marginal(tf.cast(t, tf.float32))
            a = alpha[:, None, None, None]
            sg = sigma[:, None, None, None]
            var = a * a * s2 + sg * sg                                   # (B,1,K,d)
            diff = x[:, :, None, :] - a * mu                             # (B,P,K,d)
            logc = -0.5 * tf.reduce_sum(diff * diff / var + tf.math.log(var), -1) + logw
            resp = tf.nn.softmax(logc, axis=-1)[..., None]              # (B,P,K,1)
            score = -tf.reduce_sum(resp * diff / var, axis=2)
            return -sigma[:, None, None] * score
        return eps_fn


def default_mixture():
    return GaussianMixture(weights=[0.5, 0.3, 0.2],
                           means=[[-1.0, 0.0, 0.5], [1.0, 0.5, -0.5], [0.0, -1.2, 0.0]],
                           stds=[[0.5, 0.6, 0.4], [0.4, 0.5, 0.6], [0.7, 0.3, 0.5]])


def per_particle_abs_err(logp, truth, mask):
    return float(np.mean(np.abs(logp - truth) / mask.sum(1)))


def exact_score_study(gmm, sde, args, rng):
    x, mask = gmm.sample_sets(rng, args.n_eval_exact, args.n_min, args.n_max)
    truth = gmm.log_prob_sets(x, mask)
    eps_fn = gmm.eps_fn(sde)
    common = dict(rtol=args.rtol, atol=args.atol, t_eps=args.t_eps)
    t0 = time.time()
    ex = log_likelihood(eps_fn, x, mask, None, sde, divergence="exact", return_latent=True, **common)
    t_exact = time.time() - t0
    # same ODE solution but the exact p_1 instead of N(0, I): isolates the solver/divergence error
    a1, s1 = sde.marginal(1.0)
    lp1_true = np.sum(gmm.logpdf_particles(ex.latent, a1, s1) * mask, axis=1)
    ode_only = ex.logp - sde.prior_logp(ex.latent, mask) + lp1_true
    hut = [log_likelihood(eps_fn, x, mask, None, sde, divergence="hutchinson", probe="gaussian",
                          seed=args.seed * 1000 + k, **common).logp
           for k in tqdm(range(args.n_probes), desc="Hutchinson (analytic score)")]
    hut = np.stack(hut)
    rad = np.stack([log_likelihood(eps_fn, x, mask, None, sde, probe="rademacher",
                                   seed=args.seed * 1000 + 500 + k, **common).logp
                    for k in tqdm(range(args.n_probes), desc="Rademacher (analytic score)")])
    return {
        "exact_score_abs_err_per_particle": per_particle_abs_err(ex.logp, truth, mask),
        "exact_score_abs_err_per_particle_true_prior": per_particle_abs_err(ode_only, truth, mask),
        "exact_score_mean_err_per_particle": float(np.mean((ex.logp - truth) / mask.sum(1))),
        "exact_score_hutchinson_single_abs_err_per_particle":
            float(np.mean([per_particle_abs_err(h, truth, mask) for h in hut])),
        "exact_score_hutchinson_mean_abs_err_per_particle":
            per_particle_abs_err(hut.mean(0), truth, mask),
        "exact_score_rademacher_single_abs_err_per_particle":
            float(np.mean([per_particle_abs_err(h, truth, mask) for h in rad])),
        "exact_score_rademacher_mean_abs_err_per_particle":
            per_particle_abs_err(rad.mean(0), truth, mask),
        "exact_score_n_sets": int(len(x)),
        "exact_score_nfe": int(ex.nfe),
        "exact_score_seconds": round(t_exact, 2),
    }


def build_net(args):
    return build_set_score_net(3, 0, width=args.width, num_blocks=args.blocks, num_heads=args.heads,
                               ffn_dim=args.ffn_dim, time_embed_dim=args.time_embed_dim,
                               time_scale=args.time_scale, log_time=args.log_time,
                               output_gain=args.output_gain,
                               gaussian_skip=gaussian_skip_sde(args.gaussian_skip, make_sde({"name": args.sde}),
                                                               "--gaussian-skip"),
                               data_std=args.data_std)


def train_model(gmm, sde, args, rng):
    keras.utils.set_random_seed(args.seed)
    net = build_net(args)
    opt = keras.optimizers.Adam(learning_rate=args.lr)
    opt.build(net.trainable_variables)
    ema = [tf.Variable(v.value if hasattr(v, "value") else v, trainable=False)
           for v in net.trainable_variables]
    gen = tf.random.Generator.from_seed(args.seed)

    @tf.function
    def step(x, mask, lr):
        with tf.GradientTape() as tape:
            loss = dsm_loss(net, x, mask, None, sde, args.weighting, training=True, seed=gen)
        grads = tape.gradient(loss, net.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, args.clip)
        opt.learning_rate.assign(lr)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        # warm-up of the EMA decay: a plain 0.999 EMA started at the random init still holds
        # 0.999^n of it after n steps (13% after 2000 steps)
        n = tf.cast(opt.iterations, tf.float32)
        decay = tf.minimum(args.ema, (1.0 + n) / (10.0 + n))
        for e, v in zip(ema, net.trainable_variables):
            e.assign(decay * e + (1.0 - decay) * v)
        return loss

    budget = args.train_minutes * 60.0
    t0 = time.time()
    n_steps, losses = 0, []
    bar = tqdm(total=int(budget), desc="training (s)", unit="s")
    elapsed = 0.0
    while elapsed < budget:
        x, mask = gmm.sample_sets(rng, args.batch_size, args.n_min, args.n_max)
        lr = args.lr * 0.5 * (1.0 + math.cos(math.pi * min(elapsed / budget, 1.0)))
        loss = float(step(tf.constant(x, tf.float32), tf.constant(mask, tf.float32),
                          tf.constant(lr, tf.float32)))
        losses.append(loss)
        n_steps += 1
        new_elapsed = time.time() - t0
        bar.update(int(new_elapsed) - int(elapsed))
        elapsed = new_elapsed
        if n_steps % 200 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-200:]):.4f}", steps=n_steps)
    bar.close()
    for e, v in zip(ema, net.trainable_variables):
        v.assign(e)
    return net, {"train_steps": n_steps, "train_seconds": round(elapsed, 1),
                 "train_final_loss": float(np.mean(losses[-200:]))}


def trained_study(gmm, sde, net, args, rng):
    x, mask = gmm.sample_sets(rng, args.n_eval_trained, args.n_min, args.n_max)
    truth = gmm.log_prob_sets(x, mask)
    eps_fn = eps_fn_from_model(net)
    common = dict(rtol=args.rtol, atol=args.atol, t_eps=args.t_eps)
    t0 = time.time()
    res = log_likelihood(eps_fn, x, mask, None, sde, divergence=args.trained_divergence,
                         seed=args.seed, **common)
    n = mask.sum(1)
    return {
        "trained_abs_err_per_particle": per_particle_abs_err(res.logp, truth, mask),
        "trained_mean_err_per_particle": float(np.mean((res.logp - truth) / n)),
        "trained_spearman": float(spearmanr(-res.logp, -truth).correlation),
        "trained_spearman_per_particle": float(spearmanr(-res.logp / n, -truth / n).correlation),
        "trained_divergence": args.trained_divergence,
        "trained_n_sets": int(len(x)),
        "trained_nfe": int(res.nfe),
        "trained_eval_seconds": round(time.time() - t0, 1),
    }


def score_error_profile(gmm, sde, net, args, rng):
    """Where in t the trained score is wrong: per particle, E||ε̂ − ε*||² · g²/σ² on a log-t grid
    and ½ ∫ of it over [t_eps, 1] — the score-matching bound on KL(true || model) per particle."""
    x, mask = gmm.sample_sets(rng, args.profile_sets, args.n_min, args.n_max)
    x, mask = tf.constant(x, tf.float32), tf.constant(mask, tf.float32)
    eps_true, eps_net = gmm.eps_fn(sde), eps_fn_from_model(net)
    ts = np.geomspace(args.t_eps, 1.0, args.profile_points)
    gen = tf.random.Generator.from_seed(args.seed + 29)
    div_net = make_ode_fn(eps_net, sde, "exact", False)
    div_true = make_ode_fn(eps_true, sde, "exact", False)
    n_div = min(args.profile_div_sets, int(x.shape[0]))
    no_probe = tf.zeros([1, 1, 1], tf.float32)
    density, div_bias = [], []
    for t in ts:
        tt = tf.fill([x.shape[0]], tf.constant(t, tf.float32))
        alpha, sigma = sde.marginal(t)
        x_t = (alpha * x + sigma * gen.normal(x.shape)) * mask[..., None]
        err = tf.reduce_sum(tf.square(eps_net(x_t, tt, mask, None) - eps_true(x_t, tt, mask, None))
                            * mask[..., None]) / tf.reduce_sum(mask)
        density.append(float(err) * float(sde.g2(t)) / float(sigma) ** 2)
        # ∇·f̃_net − ∇·f̃_true = ½g²/σ (∇·ε̂ − ∇·ε*) on samples of p_t: where in t the ODE's
        # log-density integrand is biased (to first order, ignoring the trajectory shift)
        xs, ms, t32 = x_t[:n_div], mask[:n_div], tf.constant(t, tf.float32)
        d_net = div_net(xs, t32, ms, None, no_probe)[1]
        d_true = div_true(xs, t32, ms, None, no_probe)[1]
        div_bias.append(float(tf.reduce_sum(d_net - d_true) / tf.reduce_sum(ms)))
    density, div_bias = np.asarray(density), np.asarray(div_bias)
    kl = 0.5 * np.trapz(density * ts, np.log(ts))  # dt = t dlog t
    return {"trained_score_kl_bound_per_particle": float(kl),
            "trained_divergence_bias_per_particle": float(np.trapz(div_bias * ts, np.log(ts))),
            "trained_score_err_profile": {"t": ts.tolist(),
                                          "g2_over_sigma2_sq_err_per_particle": density.tolist(),
                                          "divergence_bias_per_particle": div_bias.tolist()}}


def permutation_study(gmm, sde, net, args, rng):
    x, mask = gmm.sample_sets(rng, args.perm_sets, args.n_max, args.n_max)  # full sets
    n_perm, n_est = args.perm_permutations, args.perm_estimates
    perms = [np.arange(args.n_max)] + [rng.permutation(args.n_max) for _ in range(n_perm - 1)]
    # batch: set s, permutation p, estimate k -> each row its own Hutchinson probe
    xs = np.stack([x[:, p] for p in perms], 1)                 # (S, Pm, P, F)
    xb = np.repeat(xs[:, :, None], n_est, axis=2).reshape(-1, args.n_max, 3)
    mb = np.ones(xb.shape[:2])
    res = log_likelihood(eps_fn_from_model(net), xb, mb, None, sde, divergence="hutchinson",
                         probe="gaussian", rtol=args.rtol, atol=args.atol, t_eps=args.t_eps,
                         seed=args.seed + 17)
    nll = -res.logp.reshape(args.perm_sets, n_perm, n_est)
    mean, std = nll.mean(-1), nll.std(-1, ddof=1)
    worst_se, worst_std = 0.0, 0.0
    for s in range(args.perm_sets):
        for i, j in itertools.combinations(range(n_perm), 2):
            delta = abs(mean[s, i] - mean[s, j])
            worst_se = max(worst_se, delta / math.sqrt(std[s, i] ** 2 / n_est + std[s, j] ** 2 / n_est))
            worst_std = max(worst_std, delta / max(std[s, i], std[s, j]))
    return {
        "permutation_max_delta_over_sigma": float(worst_se),
        "permutation_max_delta_over_estimate_std": float(worst_std),
        "permutation_sets": args.perm_sets, "permutation_permutations": n_perm,
        "permutation_estimates": n_est,
        "permutation_mean_nll": mean.tolist(), "permutation_std_nll": std.tolist(),
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="JSON file to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sde", default="vpsde", choices=["vpsde", "cosine_logsnr"])
    p.add_argument("--n-min", type=int, default=5)
    p.add_argument("--n-max", type=int, default=20)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--t-eps", type=float, default=1e-5)
    p.add_argument("--n-eval-exact", type=int, default=32, help="sets for the analytic-score study")
    p.add_argument("--n-probes", type=int, default=10, help="Hutchinson repeats (analytic score)")
    p.add_argument("--train-minutes", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--weighting", default="likelihood", choices=["standard", "likelihood"])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--ffn-dim", type=int, default=128)
    p.add_argument("--time-embed-dim", type=int, default=32)
    p.add_argument("--time-scale", type=float, default=4.0)
    p.add_argument("--log-time", action=argparse.BooleanOptionalAction, default=LOG_TIME_DEFAULT,
                   help="embed log t as well as t (small-t resolution)")
    p.add_argument("--output-gain", action=argparse.BooleanOptionalAction,
                   default=OUTPUT_GAIN_DEFAULT, help="learned per-set output gain of the time context")
    p.add_argument("--gaussian-skip", action=argparse.BooleanOptionalAction, default=True,
                   help="add the analytic ε of N(0, data_std²) data to the net's output")
    p.add_argument("--data-std", type=float, default=1.0, help="s of the Gaussian skip")
    p.add_argument("--n-eval-trained", type=int, default=64)
    p.add_argument("--trained-divergence", default="exact", choices=["exact", "hutchinson"])
    p.add_argument("--profile-points", type=int, default=16,
                   help="log-t grid of the score-error profile (0 skips it)")
    p.add_argument("--profile-sets", type=int, default=256)
    p.add_argument("--profile-div-sets", type=int, default=64,
                   help="sets for the exact-divergence bias profile")
    p.add_argument("--save-weights", type=Path, default=None,
                   help="write the trained (EMA) weights here (.weights.h5)")
    p.add_argument("--load-weights", type=Path, default=None,
                   help="skip training: evaluate these weights (same architecture flags)")
    p.add_argument("--perm-sets", type=int, default=2, help="0 skips the permutation study")
    p.add_argument("--perm-permutations", type=int, default=4)
    p.add_argument("--perm-estimates", type=int, default=10)
    p.add_argument("--skip-training", action="store_true", help="only the analytic-score study")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    gmm = default_mixture()
    sde = make_sde({"name": args.sde})
    result = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    result.update(exact_score_study(gmm, sde, args, rng))
    print(f"exact score: |Δlogp|/N = {result['exact_score_abs_err_per_particle']:.5f} "
          f"(exact divergence, headline); Hutchinson single {result['exact_score_hutchinson_single_abs_err_per_particle']:.4f}, "
          f"mean of {args.n_probes} {result['exact_score_hutchinson_mean_abs_err_per_particle']:.4f}")
    if not args.skip_training:
        if args.load_weights is not None:
            net, info = build_net(args), {"loaded_weights": str(args.load_weights)}
            net.load_weights(str(args.load_weights))
        else:
            net, info = train_model(gmm, sde, args, rng)
        result.update(info)
        if args.save_weights is not None:
            args.save_weights.parent.mkdir(parents=True, exist_ok=True)
            net.save_weights(str(args.save_weights))
        result.update(trained_study(gmm, sde, net, args, rng))
        print(f"trained: |Δlogp|/N = {result['trained_abs_err_per_particle']:.4f}, "
              f"Spearman(NLL) = {result['trained_spearman']:.4f}, "
              f"Spearman(NLL/N) = {result['trained_spearman_per_particle']:.4f}")
        if args.profile_points > 0:
            result.update(score_error_profile(gmm, sde, net, args, rng))
            print(f"score-matching KL bound per particle = "
                  f"{result['trained_score_kl_bound_per_particle']:.4f}; first-order ODE "
                  f"divergence bias = {result['trained_divergence_bias_per_particle']:+.4f}")
        if args.perm_sets > 0:
            result.update(permutation_study(gmm, sde, net, args, rng))
            print(f"permutations: max |Δ mean NLL| / SE = {result['permutation_max_delta_over_sigma']:.3f}, "
                  f"/ per-estimate std = {result['permutation_max_delta_over_estimate_std']:.3f}")
    targets = {"exact_score_abs_err_per_particle": ("<=", 0.01),
               "trained_abs_err_per_particle": ("<=", 0.1), "trained_spearman": (">=", 0.95),
               "permutation_max_delta_over_sigma": ("<=", 3.0)}
    result["targets_met"] = {k: (result[k] <= v if op == "<=" else result[k] >= v)
                             for k, (op, v) in targets.items() if k in result}
    atomic_write_json(out, result, indent=2)
    print(json.dumps(result["targets_met"]), f"-> {out}")
    return result


if __name__ == "__main__":
    main()
