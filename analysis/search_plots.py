"""A search (``search.optuna``) drawn with Optuna's own plotting (``optuna.visualization.matplotlib``)
over the study's Optuna twin, the Optuna study kept in the store's database
(``vat_study/platform/executors/records.py``: one Optuna trial per configuration, its value the mean of
the study metric over the seeds, its intermediate values the per-step means).

Optimization history, parameter importances (fANOVA, seeded: the same store gives the same
figure), slice, contour and intermediate values. Configurations the pruner stopped are shown as
pruned: on the history as their last reported value (grey x), on the intermediate values as
dashed lines ending in an x; the slice and contour draw finished configurations only, and say how
many were pruned. A plot the search cannot support yet (too few configurations for importances,
one parameter for a contour) is a note, never a crash.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from .data import NotApplicable, Skip, StudyData
from .plotting import axis_label, percent, save

MIN_IMPORTANCE_CONFIGURATIONS = 5
"""Parameter importances (fANOVA: a random forest fitted to the configurations' values) from fewer
finished configurations than this are not drawn: with two points any split "explains" all the
variance (Optuna gives 0.5 / 0.5 for one configuration), so the bars would show noise as weight."""


class NoPlot(Exception):
    """A plot the search does not support yet; the message says why (shown as a note)."""


def twin(data: StudyData):
    """The study's Optuna study, read from the store's database (nothing created there)."""
    import optuna
    from optuna.storages import RDBStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = RDBStorage(data.url, skip_table_creation=True)
        return optuna.load_study(study_name=data.name, storage=storage)
    except KeyError:
        raise Skip("the store holds no Optuna study of this name (its twin is written by vat-study run)") from None
    except Exception as e:  # noqa: BLE001  an Optuna schema this Optuna cannot read: a note, not a crash
        raise Skip(f"its Optuna study could not be read ({type(e).__name__}: {e})") from None


@contextlib.contextmanager
def _optuna_style():
    """Optuna's plots set the ggplot style globally: kept to them (rcParams restored after)."""
    import matplotlib
    from optuna.exceptions import ExperimentalWarning

    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        # the contour's colour bar axes: tight_layout leaves them where Optuna put them, as intended
        warnings.filterwarnings("ignore", "This figure includes Axes that are not compatible with tight_layout")
        yield


def _figure(axes):
    return (axes.flat[0] if hasattr(axes, "flat") else axes).figure


def _pruned(study) -> list:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)) if t.intermediate_values]


def history(study, metric: str, stem: Path) -> list[Path]:
    """Optuna's optimization history, with each pruned configuration's last reported value."""
    from optuna.visualization.matplotlib import plot_optimization_history

    ax = plot_optimization_history(study)
    pruned = _pruned(study)
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="0.45", zorder=3,
                   label="pruned (its last reported value)")
        ax.legend(loc="best", fontsize=8)
    ax.set_ylabel(f"{axis_label(metric)}, mean over seeds")
    ax.set_xlabel("configuration (Optuna trial number)")
    if metric.endswith("error"):
        percent(ax)
    return save(ax.figure, stem, note="One point per configuration (Optuna trial): its mean over seeds; "
                                      "the line: the best so far")


def importances(study, metric: str, stem: Path) -> list[Path]:
    """Optuna's parameter importances (fANOVA, seed 0) over the finished configurations."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_param_importances

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < MIN_IMPORTANCE_CONFIGURATIONS:
        raise NoPlot(f"{len(done)} finished configuration(s): too few for parameter importances "
                     f"(drawn from {MIN_IMPORTANCE_CONFIGURATIONS} on)")
    if not _varied(done):
        raise NoPlot("no parameter takes two values among the finished configurations")
    ax = plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    return save(ax.figure, stem, note=f"fANOVA importance of each parameter for {metric} (mean over seeds), "
                                      f"over {len(done)} finished configurations")


def slice_plot(study, metric: str, stem: Path) -> list[Path]:
    from optuna.visualization.matplotlib import plot_slice

    axes = plot_slice(study, target_name=f"{metric}, mean over seeds")
    n = len(_pruned(study))
    return save(_figure(axes), stem, tight=False,  # the panels share Optuna's colour bar: its layout kept
                note="Each finished configuration's mean over seeds against each parameter; colour: the order in "
                     "which the search ran them" + (f"; {n} pruned configuration(s) have no final value and are not "
                                                    "drawn" if n else ""))


def _varied(done) -> list[str]:
    """The parameters that take two or more values among the trials ``done``."""
    return sorted(p for p in {k for t in done for k in t.params} if len({repr(t.params.get(p)) for t in done}) > 1)


def contour(study, metric: str, stem: Path) -> list[Path]:
    """Optuna's contour over the two most important parameters (fANOVA, where importances are
    drawn), else the first two that vary: one readable panel rather than a grid of every pair."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_contour

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = _varied(done)
    if len(varied) < 2:
        raise NoPlot("needs two parameters that take two or more values among the finished configurations")
    why = "the two that vary"
    if len(varied) > 2 and len(done) >= MIN_IMPORTANCE_CONFIGURATIONS:
        ranked = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), params=varied)
        varied, why = list(ranked)[:2], "the two most important (fANOVA)"
    elif len(varied) > 2:
        why = f"the first two of the {len(varied)} that vary"
    ax = plot_contour(study, params=varied[:2], target_name=f"{metric}, mean over seeds")
    return save(_figure(ax), stem, note=f"{metric} (mean over seeds) interpolated between the finished "
                                        f"configurations (the points), over {why} of the parameters")


def intermediate(study, metric: str, stem: Path) -> list[Path]:
    """Optuna's intermediate values, each pruned configuration dashed and ending in an x."""
    from matplotlib.lines import Line2D
    from optuna.visualization.matplotlib import plot_intermediate_values

    if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        raise NoPlot("no configuration reported intermediate values")
    ax = plot_intermediate_values(study)
    pruned = {f"Trial{t.number}" for t in _pruned(study)}
    for line in ax.get_lines():
        if line.get_label() in pruned:
            line.set_linestyle("--")
            x, y = line.get_data()
            ax.plot([x[-1]], [y[-1]], marker="x", color=line.get_color(), markersize=8, linestyle="none")
    handles = [Line2D([], [], color="0.3", marker=".", label="finished configuration")]
    if pruned:
        handles.append(Line2D([], [], color="0.3", linestyle="--", marker="x", label="pruned (x: the step it stopped)"))
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.set_xlabel(axis_label("step"))
    ax.set_ylabel(f"{axis_label(metric)}, mean over seeds")
    if metric.endswith("error"):
        percent(ax)
    return save(ax.figure, stem, note="One line per configuration (Optuna trial): the mean over its seeds at each "
                                      "evaluation, as the pruner saw it")


PLOTS = [("optuna_history", "Optimization history", history),
         ("optuna_importances", "Parameter importances", importances),
         ("optuna_slice", "Slice", slice_plot),
         ("optuna_contour", "Contour", contour),
         ("optuna_intermediate", "Intermediate values", intermediate)]
"""(file stem, title, draw(study, metric, stem) -> paths): Optuna's plots, in the report's order."""


def section(r) -> str:
    """The report section (``report.ARTIFACTS``): ``r`` is the ``report.Report`` being written."""
    if not ((r.data.spec.get("search") or {}).get("optuna")):
        raise NotApplicable("not an Optuna search")
    study = twin(r.data)
    if not study.get_trials(deepcopy=False):
        raise Skip("its Optuna study has no configuration yet")
    parts, notes = [], []
    for stem, title, draw in PLOTS:
        try:
            with _optuna_style():
                parts.append(f"### {title}\n\n" + r.figure(draw(study, r.data.metric, r.out / stem)))
        except NoPlot as e:
            notes.append(f"- {title}: not drawn: {e}.")
    head = (f"Optuna's plots (`optuna.visualization.matplotlib`) of the study's Optuna twin (`optuna.load_study("
            f"study_name=\"{r.data.name}\", storage=...)`, the same database; optuna-dashboard opens it too): one Optuna "
            "trial per configuration, its value the mean of the study metric over its seeds.")
    return "\n\n".join([head, *parts, *(["\n".join(notes)] if notes else [])])
