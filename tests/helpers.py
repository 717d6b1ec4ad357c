"""Helpers the test modules share: a tiny study, a store filled with known numbers, IDX files,
exact Hessians and a small tanh network (``tests/`` is on sys.path: ``from helpers import ...``)."""

from __future__ import annotations

import contextlib
import copy
import gzip
import struct

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from vat_study.platform.provenance import run_provenance
from vat_study.science.objective import resolve_config
from vat_study.platform.spec import PlannedTrial, parse_spec
from vat_study.platform.store import Store

TINY_TASK = {"dataset": "digits", "hidden": [16], "steps": 6, "eval_every": 3,
             "batch": {"labeled": 16, "unlabeled": 32}, "probes": None}


def tiny(name, storage, **extra):
    task = {k: v for k, v in TINY_TASK.items() if k != "probes"}
    spec = {"name": name, "task": task, "method": {"name": "vat"}, "probes": {"rvadv": {"size": 50}},
            "search": {"grid": [{"method": ["baseline"]}, {"method": ["vat"], "eps": [0.5, 1.0]}]},
            "seeds": [0, 1], "storage": storage, "executor": {"kind": "local", "per_trial": {"cpu": 1}}}
    spec.update(extra)
    return spec


SEEDS = [0, 1, 2, 3]


def claim(store, study_id, trial, driver="tests"):
    """Claim a planned trial (``spec.PlannedTrial``) as a run does (``store.claims.claim_trial``),
    with its resolved config; the driver never registered, as if its run had been killed."""
    lease = store.claims.claim_trial(study_id, key=trial.key, config_key=trial.config_key, params=trial.params,
                                     seed=trial.seed, config=resolve_config(trial.config), driver=driver, seen=0)
    assert lease is not None, f"trial {trial.key} was claimed before"
    return lease


def fill(url, name, points, value_fn, spec_extra=None):
    """One COMPLETE trial per (params, seed) with final metrics from value_fn(params, seed)."""
    spec = parse_spec({"name": name, "task": {"dataset": "digits", "steps": 100}, "seeds": SEEDS,
                       "search": {"grid": [{k: [v] for k, v in p.items()} for p in points]},
                       **(spec_extra or {})})
    store = Store(url)
    sid = store.get_or_create_study(name, spec.model_dump(mode="json"))
    rows = []
    for p in spec.configurations():
        for seed in SEEDS:
            tid = claim(store, sid, PlannedTrial.make(spec, p, seed))
            finals, curves = value_fn(p, seed)
            for step, m in curves.items():
                store.report(tid, step, m)
            store.finish_trial(tid, finals)
            rows.append({**p, "seed": seed, **finals})
    return pd.DataFrame(rows)


def a_trial_the_grid_no_longer_holds(url):
    """Study "g" with 4 COMPLETE vat trials and one FAILED (interrupted) at eps 9, as an earlier
    grid (``wide``) planned it; returns (store, wide, narrow, lease): ``narrow`` is the grid
    without eps 9, the study file after the user removed that point."""
    fill(url, "g", [{"method": "vat"}], lambda p, s: ({"val_error": 0.1, "test_error": 0.1}, {}))
    store = Store(url)
    base = {"name": "g", "task": {"dataset": "digits", "steps": 100}, "seeds": SEEDS}
    wide = parse_spec({**base, "search": {"grid": [{"method": ["vat"]}, {"method": ["vat"], "eps": [9.0]}]}})
    narrow = parse_spec({**base, "search": {"grid": [{"method": ["vat"]}]}})
    # as vat-study run stores it: the study file's keys and the run's provenance beside them
    sid = store.get_or_create_study("g", {**wide.model_dump(mode="json"), "provenance": run_provenance()})
    lease = claim(store, sid, PlannedTrial.make(wide, {"method": "vat", "eps": 9.0}, 0))
    store.fail_trial(lease, "interrupted: stopped by the user (Ctrl-C)", kind="interrupted")
    return store, wide, narrow, lease


def write_idx(path, array, compress=False):
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype.type], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def exact_hessian_eig(model: nn.Module, x: torch.Tensor):
    """Per sample: eigenvalues (descending) and eigenvectors of H = grad grad_r D(r)|_{r=0} (Eq. 9),
    computed in float64 with torch.autograd.functional.hessian on a copy of the model."""
    m = copy.deepcopy(model).double().eval()
    out = []
    for xi_ in x.double():
        with torch.no_grad():
            p = m(xi_[None])

        def dist(r, xi_=xi_, p=p):
            q = m((xi_ + r)[None])
            return (F.softmax(p, 1) * (F.log_softmax(p, 1) - F.log_softmax(q, 1))).sum()

        h = torch.autograd.functional.hessian(dist, torch.zeros_like(xi_)).reshape(xi_.numel(), xi_.numel())
        vals, vecs = torch.linalg.eigh(h)
        out.append((vals.flip(0), vecs.flip(1)))
    return out


def tanh_mlp(dim=5, hidden=8, classes=3, seed=1):
    torch.manual_seed(seed)
    first = nn.Linear(dim, hidden)
    with torch.no_grad():  # one input direction dominates the first layer: a skewed spectrum
        first.weight[:, 0] *= 6.0
    return nn.Sequential(first, nn.Tanh(), nn.Linear(hidden, classes))


@contextlib.contextmanager
def optuna_dashboard(url: str):
    """optuna-dashboard serving the store ``url`` on a free loopback port; yields ``get(path)``,
    which returns the JSON the dashboard's API answers at ``path`` (after waiting up to 60 s for
    it to start). Stopped at the end."""
    import json
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    import pytest

    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("optuna-dashboard is not installed (it is in the dev extra: pip install -e '.[dev]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, url, "--host", "127.0.0.1", "--port", str(port), "--server", "wsgiref", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def get(path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310  loopback only
            return json.loads(r.read())

    try:
        deadline = time.time() + 60
        while True:
            try:
                get("/api/studies")
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    err = proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no answer in 60 s"
                    pytest.fail(f"optuna-dashboard did not answer: {err}")
                time.sleep(0.3)
        yield get
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def optuna_search_store(url, name, n_complete, n_pruned, seeds=(0, 1), sampler="tpe"):
    """A finished Optuna search (eps and alpha log-uniform, K a choice) as `vat-study run` leaves
    it: the vat-study trials in the store and the Optuna twin beside them (records.configuration_record
    turned into Optuna trials, as search.py tells them). ``n_pruned`` configurations were stopped
    by the pruner: the first seed of each finished (with the lowest error of all), the others
    stopped after their first evaluation. Returns the StudySpec."""
    import math

    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from vat_study.platform.executors.records import configuration_record
    from vat_study.platform.executors.search import open_study

    spec = parse_spec({"name": name, "task": {"dataset": "digits", "steps": 300, "eval_every": 100},
                       "seeds": list(seeds), "storage": url, "metric": {"name": "val_error", "mode": "min"},
                       "search": {"optuna": {"sampler": sampler, "n_trials": n_complete + n_pruned, "pruner": "median",
                                             "space": {"eps": {"type": "log_uniform", "low": 0.1, "high": 10.0},
                                                       "alpha": {"type": "log_uniform", "low": 0.1, "high": 10.0},
                                                       "power_iterations": {"type": "choice", "choices": [1, 2]}}}}})
    store = Store(url)
    sid = store.get_or_create_study(name, spec.model_dump(mode="json"))
    study = open_study(spec)
    dists = {"eps": FloatDistribution(0.1, 10.0, log=True), "alpha": FloatDistribution(0.1, 10.0, log=True),
             "power_iterations": CategoricalDistribution([1, 2])}
    rng = np.random.default_rng(0)
    for i in range(n_complete + n_pruned):
        params = {"eps": float(np.exp(rng.uniform(math.log(0.1), math.log(10.0)))),
                  "alpha": float(np.exp(rng.uniform(math.log(0.1), math.log(10.0)))), "power_iterations": [1, 2][i % 2]}
        pruned = i >= n_complete
        for seed in seeds:
            t = PlannedTrial.make(spec, params, seed)
            lease = store.claims.claim_trial(sid, key=t.key, config_key=t.config_key, params=t.params, seed=seed,
                                             config=resolve_config(t.config), driver="tests", seen=0, optuna_number=i)
            stopped = pruned and seed != seeds[0]  # its first seed finished (and looks best), the next was stopped
            err = 0.01 if pruned and not stopped else 0.03 + 0.01 * abs(math.log(params["eps"])) + 0.004 * seed \
                + 0.2 * pruned
            for step in (100,) if stopped else (100, 200, 300):
                store.report(lease, step, {"val_error": err + 0.02 * (300 - step) / 100})
            if stopped:
                store.prune_trials(sid, [{"key": t.key, "config_key": t.config_key, "params": t.params, "seed": seed,
                                          "config": resolve_config(t.config)}])
            else:
                store.finish_trial(lease, {"val_error": err, "test_error": err + 0.002})
        rec = configuration_record(spec, store, sid, params)
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
            value=None if pruned else rec["value"], params=params, distributions=dists,
            intermediate_values=rec["intermediate"] or {100: err + 0.04}, user_attrs=rec["user_attrs"]))
    return spec
