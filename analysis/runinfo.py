"""What was run, as a report states it: the study file, store, trials by status, seeds, budget,
metric, the code / command / machine / library versions of the newest trial (provenance), and
the trials the pruner stopped or that did not complete, and what a tracker did not record."""

from __future__ import annotations

from pathlib import Path

from .data import StudyData


def shown_url(url: str) -> str:
    """A SQLite URL under the current folder as a relative one (a committed report names no
    absolute path of the machine that wrote it); other URLs unchanged."""
    if url.startswith("sqlite:////"):
        path = Path(url.removeprefix("sqlite:///"))
        try:
            return "sqlite:///" + str(path.relative_to(Path.cwd()))
        except ValueError:
            return url
    return url


def shown_arg(arg: str) -> str:
    """One argument of the recorded command as a report shows it: a SQLite URL or a path under
    the current folder relative to it (``shown_url``); anything else as it is."""
    if arg.startswith("sqlite:"):
        return shown_url(arg)
    if arg.startswith("/"):
        try:
            return str(Path(arg).relative_to(Path.cwd()))
        except ValueError:
            return arg
    return arg


PROVENANCE_KEYS = ("vat-study", "git_commit", "git_dirty", "argv", "overrides", "cpu", "platform", "gpu", "cuda",
                   "cudnn", "torch_threads", "precision")


def provenance_lines(versions: dict) -> list[str]:
    """The report header's provenance of the study's newest trial (``vat_study.platform.provenance``):
    code, command, machine and library versions; a store written before provenance was recorded
    shows what it has."""
    v = dict(versions or {})
    if not v:
        return ["- provenance: none recorded"]
    code = f"vat-study {v.get('vat-study', '?')}"
    if v.get("git_commit"):
        code += f" (commit {str(v['git_commit'])[:12]}" + (", with uncommitted changes)" if v.get("git_dirty")
                                                           else ", clean)")
    lines = [f"- code: {code}"]
    if v.get("argv") is not None:
        lines.append("- command: `vat-study " + " ".join(shown_arg(str(a)) for a in v["argv"]) + "`"
                     + (f"; overrides {v['overrides']}" if v.get("overrides") else ""))
    machine = [f"CPU {v['cpu']}" if v.get("cpu") else None,
               f"GPU {v['gpu']}" if v.get("gpu") else ("no GPU" if "gpu" in v else None),
               f"CUDA {v['cuda']}" if v.get("cuda") else None, f"cuDNN {v['cudnn']}" if v.get("cudnn") else None,
               f"torch threads {v['torch_threads']}" if v.get("torch_threads") is not None else None,
               f"the newest trial's task.precision run as {v['precision']}" if v.get("precision") else None]
    if any(machine):
        lines.append("- machine: " + ", ".join(m for m in machine if m))
    libs = {k: x for k, x in v.items() if k not in PROVENANCE_KEYS}
    lines.append("- versions: " + ", ".join(f"{k} {x}" for k, x in libs.items()))
    return lines


def planned_configs(spec: dict) -> set[str] | None:
    """``StudySpec.planned_config_keys`` of the stored study file; None for one this code cannot
    read (an old store): then the report says nothing rather than something wrong. Only the keys
    that plan trials are read, by the schema alone: the stored spec carries the latest run's
    ``provenance`` beside them (``vat-study run`` records it there), and the checks against this
    machine (``spec_checks``: data files that exist, trackers that are installed) are the run's
    business, not the report's."""
    from vat_study.platform.spec import StudySpec

    keys = ("name", "task", "method", "search", "seeds", "metric", "probes")
    try:
        return StudySpec.model_validate({k: spec[k] for k in keys if k in spec}).planned_config_keys()
    except (ValueError, TypeError):  # SpecError is a ValueError
        return None


def pruned_lines(store, data: StudyData) -> list[str]:
    """The trials the study's pruner stopped early (a finished outcome, never redone), each with
    the step it was stopped at and the study metric there."""
    from vat_study.platform.display import pruned_text, trial_text
    from vat_study.platform.store.frames import pruned_at

    trials = data.trials
    pruned = trials[trials["status"] == "PRUNED"] if not trials.empty else trials
    if pruned.empty:
        return []
    at = pruned_at(store, data.name, data.metric)
    return ([f"Pruned trials ({len(pruned)}; stopped early by `search.optuna.pruner`: finished, not failed, never "
             "redone):", ""]
            + [f"- {trial_text(t, trials)}: {pruned_text(at.get(int(t['trial_id'])), data.metric)}"
               for _, t in pruned.iterrows()] + [""])


def failed_lines(data: StudyData) -> list[str]:
    """The trials that did not finish (FAILED), each with its failure kind and last error line."""
    from vat_study.platform.display import trial_text
    from vat_study.platform.store import failure_line

    trials = data.trials
    failed = trials[trials["status"] == "FAILED"] if not trials.empty else trials
    if failed.empty:
        return []
    kinds = failed["failure_kind"].fillna("error").value_counts().to_dict() if "failure_kind" in failed else {}
    lines = [f"Trials that did not complete ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; "
             "`vat-study run` redoes those that the study's search still holds):", ""]
    planned = planned_configs(data.spec)
    for _, t in failed.iterrows():
        lines.append(f"- {trial_text(t, trials)}: {t['status']}, " + failure_line(t.get("failure_kind"), t["error"])
                     + ("; no longer in the study's search, so not redone"
                        if planned is not None and t["config_key"] not in planned else ""))
    return lines + [""]


def run_lines(url: str, data: StudyData) -> list[str]:
    """The report's "What was run" section body (Markdown lines)."""
    from vat_study.platform.store import Store, safe_url

    trials = data.trials
    counts = trials["status"].value_counts().to_dict() if not trials.empty else {}
    seeds = sorted(trials["seed"].unique().tolist()) if not trials.empty else []
    steps = sorted(trials["steps"].dropna().unique().tolist()) if "steps" in trials else []
    search = data.spec.get("search") or {}
    kind = "optuna" if search.get("optuna") else "grid" if search else "none"
    store = Store(url)
    lines = [f"- study file: `{data.spec.get('name')}` as stored (search: {kind})",
             f"- storage: `{shown_url(safe_url(url))}`",
             f"- trials: {len(trials)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'})",
             f"- seeds: {seeds}; budget: {', '.join(str(int(s)) for s in steps) or '?'} updates per trial",
             f"- metric: {data.metric} ({data.mode})",
             *provenance_lines(store.latest_versions(data.name)), ""]
    return lines + pruned_lines(store, data) + failed_lines(data) + tracker_problem_lines(store, data)


def tracker_problem_lines(store, data: StudyData) -> list[str]:
    """What a tracker (MLflow, TensorBoard, W&B) did not record, wherever the trial ran."""
    from vat_study.platform.tracking import tracker_lines

    untracked = store.tracker_problems(data.name)
    if not untracked:
        return []
    return ["Trackers:", ""] + [f"- {line}" for line in tracker_lines(untracked, len(data.trials), most=20)] + [""]
