"""Beyond one machine: a two-node Ray cluster on loopback with a PostgreSQL store.

The head and a worker node are two `ray start` processes with their own CPUs, temp dirs and
process groups; the driver is `vat-study run --address`. Trials land on both nodes (the store
records each trial's Ray node); the worker node is then killed mid-study, and every trial ends
COMPLETE exactly once, through Ray's retries or a rerun. A SQLite store is refused on the
same cluster before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from ray_nodes import forget_cluster, free_port, head_address, kill_node, start_node
from helpers import tiny
from vat_study.platform.store import Store
from vat_study.platform.store.frames import metrics_frame
from vat_study.platform.results import trials_frame

CLI = [sys.executable, "-c", "import sys; sys.argv[0] = 'vat-study'; from vat_study.platform.cli import app; app()"]
# Node failure noticed within seconds, not Ray's default half a minute.
FAST_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
               "RAY_health_check_failure_threshold": "3"}


def _nodes(address: str) -> list[dict]:
    """The cluster's nodes as Ray sees them (from a separate driver process)."""
    code = ("import json, ray\n"
            "from pathlib import Path\n"
            "if (Path.home() / '.ray' / 'auth_token').is_file():  # as vat_study.platform.executors.ray_tune does\n"
            "    from ray._private.authentication.authentication_token_setup import "
            "maybe_enable_token_auth_if_token_available as f; f(warn_if_disabled=False)\n"
            "ray.init(address=%r, log_to_driver=False, logging_level='ERROR');"
            "print(json.dumps([{'id': n['NodeID'], 'alive': n['Alive'], 'port': n['NodeManagerPort']} "
            "for n in ray.nodes()]))" % address)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _study(storage: str, address: str) -> dict:
    spec = tiny("two_nodes", storage, seeds=[0, 1, 2],
                executor={"kind": "ray", "address": address, "per_trial": {"cpu": 1}, "max_failures": 3},
                search={"grid": [{"method": ["baseline", "rpt", "vat"], "eps": [0.5, 1.0]}]})  # 5 configurations (one baseline)
    # 3,000 updates: a few seconds a trial on 2 cores (at 400 a trial could start and finish between two
    # looks of a loaded machine, and no kill ever landed mid-trial)
    spec["task"].update(steps=3000, eval_every=100)
    return spec


def test_a_two_node_cluster_runs_a_study_on_postgresql_and_survives_losing_a_node(tmp_path, pg_url):
    env = {**os.environ, **FAST_HEALTH}
    head_tmp, worker_tmp = tempfile.mkdtemp(prefix="vh"), tempfile.mkdtemp(prefix="vw")  # short socket paths
    port, worker_port = free_port(), free_port()
    head = start_node(["--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={head_tmp}",
                       "--include-dashboard=false"], env)
    worker = None
    try:
        address = head_address(head)
        if "RAY_AUTH_MODE" not in env and (Path.home() / ".ray" / "auth_token").is_file():
            env["RAY_AUTH_MODE"] = "token"  # the head uses (and on a fresh machine makes) a token: so must the worker
        worker = start_node([f"--address={address}", "--num-cpus=1", f"--temp-dir={worker_tmp}",
                         f"--node-manager-port={worker_port}"], env)
        deadline = time.time() + 120
        while time.time() < deadline and worker.poll() is None and sum(n["alive"] for n in _nodes(address)) < 2:
            time.sleep(1)
        nodes = _nodes(address)
        if sum(n["alive"] for n in nodes) < 2:
            kill_node(worker)
            pytest.fail(f"the worker node did not join: {nodes}\n{worker.stdout.read()[-3000:]}")
        worker_id = next(n["id"] for n in nodes if n["port"] == worker_port)

        # SQLite on a cluster of two nodes: refused up front, nothing written
        lite = tmp_path / "lite.yaml"
        lite.write_text(yaml.safe_dump(_study(f"sqlite:///{tmp_path}/s.db", address)))
        refused = subprocess.run(CLI + ["run", str(lite), "--no-progress"], capture_output=True, text=True,
                                 timeout=300, cwd=tmp_path)
        assert refused.returncode == 2 and "storage: a SQLite file is not shared between the 2 nodes" in refused.stderr
        assert not (tmp_path / "s.db").exists()

        study = tmp_path / "pg.yaml"
        study.write_text(yaml.safe_dump(_study(pg_url, address)))
        driver = subprocess.Popen(CLI + ["run", str(study), "--no-progress"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True)
        store, deadline, killed = Store(pg_url), time.time() + 300, False
        while time.time() < deadline and driver.poll() is None:  # kill the worker node once it has
            df = trials_frame(store, "two_nodes")  # finished a trial and is running another
            mine = df[df.node == worker_id] if len(df) else df
            if len(mine) and (mine.status == "COMPLETE").any() and (mine.status == "RUNNING").any():
                on = mine[mine.status == "RUNNING"]
                steps = metrics_frame(store, "two_nodes")
                done = steps[steps.trial_id.isin(on.trial_id)].step.max() if len(steps) else 0
                if not done == done or done <= 2000:  # its last 1,000 updates still to run: the kill lands mid-trial
                    running = set(on.key)
                    kill_node(worker)
                    killed = True
                    break
            time.sleep(0.2)
        assert killed, "the worker node never ran two trials"
        # what the node was running when it died (a trial seen running may have finished between
        # that look and the kill: a dead node finishes nothing, so what is COMPLETE now was done before)
        now = trials_frame(store, "two_nodes")
        interrupted = running - set(now.key[now.status == "COMPLETE"])
        out, err = driver.communicate(timeout=600)
        print(f"driver exit {driver.returncode} after the worker node was killed")
        if driver.returncode != 0:  # Ray gave up on a trial: a rerun redoes exactly what is missing
            again = subprocess.run(CLI + ["run", str(study), "--no-progress"], capture_output=True, text=True,
                                   timeout=600, cwd=tmp_path)
            assert again.returncode == 0, again.stderr[-3000:]
        df = trials_frame(store, "two_nodes")
        assert len(df) == 15 and df.key.is_unique and set(df.status) == {"COMPLETE"}, df[["key", "status", "node"]]
        assert df.node.nunique() == 2 and worker_id in set(df.node)  # trials ran on both nodes
        assert (df[df.node != worker_id].attempts >= 1).all()
        assert interrupted, "every trial seen running on the node finished before the kill landed"
        assert (df[df.key.isin(interrupted)].attempts > 1).all()  # what the dead node was running was run again
        print(f"{len(interrupted)} trial(s) interrupted by the kill, each run again")
    finally:
        if worker is not None:
            kill_node(worker)
        kill_node(head)
        for d in (head_tmp, worker_tmp):
            shutil.rmtree(d, ignore_errors=True)
        forget_cluster(port)
