"""Bayesian optimisation on Optuna, for pruning and bitwidth search.

A study lives in a relational storage: by default an embedded SQLite file in the build
directory (so an interrupted run resumes where it stopped), or any URL given with
``--storage`` that many worker processes, on one machine or many, share. ``workers`` local
processes each pull trials until the study holds ``trials`` finished ones; Optuna's storage
hands out trial numbers, so the workers' trials are disjoint.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import time
from pathlib import Path

DB = "optuna.db"


@contextlib.contextmanager
def one_torch_thread():
    """Train with one intra-op thread. The networks searched and pruned are small (digits/TFC
    MLPs): PyTorch's thread pool costs more in synchronisation than it gains on them, and on a
    busy machine (several study workers, other jobs) it is many times slower; parallelism
    comes from ``workers`` processes instead."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(Path(out) / DB).resolve()}"


def _storage(url: str):
    import warnings

    import optuna

    # heartbeats (and constraints) are marked experimental; a build log wants no warning
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    # A heartbeat lets a resumed run fail trials a killed worker left running.
    return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120)


def check_storage(url: str):
    """Open the storage (before any work, so a bad --storage fails first)."""
    try:
        return _storage(url)
    except Exception as e:  # SQLAlchemy raises many kinds on a bad URL or unreachable server
        from compiler.errors import TaperError

        raise TaperError(f"--storage {url}: cannot open ({type(e).__name__}: {e})") from None


def open_study(name: str, url: str, directions: list[str], seed: int, constrained: bool):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Constraints are set per trial (trial.set_constraint); the sampler reads them.
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    storage = check_storage(url)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        directions=directions,
        sampler=sampler,
        load_if_exists=True,
    )


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _worker(
    objective_ref: str, args: dict, name, url, directions, seed, constrained, n, callbacks=()
):
    """One worker process: pull trials until the study holds ``n`` finished ones."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    module, func = objective_ref.split(":")
    objective = getattr(importlib.import_module(module), func)
    study = open_study(name, url, directions, seed, constrained)
    if _finished(study) >= n:
        return

    def run_one(trial):
        trial.set_user_attr("worker_pid", os.getpid())
        return objective(trial, **args)

    with one_torch_thread():
        study.optimize(
            run_one,
            callbacks=[
                MaxTrialsCallback(n, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                *callbacks,
            ],
            n_trials=n,
        )


def run(
    objective_ref: str,
    args: dict,
    name: str,
    url: str,
    directions: list[str],
    trials: int,
    workers: int = 1,
    seed: int = 0,
    constrained: bool = False,
    quiet: bool = False,
    label: str = "trials",
):
    """Run the study to ``trials`` finished trials with ``workers`` local processes; returns it.

    ``objective_ref`` is ``"module:function"``, called as ``function(trial, **args)`` in each
    worker (so workers can be separate processes).
    """
    study = open_study(name, url, directions, seed, constrained)
    wargs = (objective_ref, args, name, url, directions, seed, constrained, trials)
    if workers <= 1:
        with _progress(study, trials, quiet, label) as bar:
            _worker(*wargs, callbacks=[bar.update])
        return study
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=wargs) for _ in range(workers)]
    for p in procs:
        p.start()
    with _progress(study, trials, quiet, label, poll=procs):
        pass
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode]
    if bad:
        from compiler.errors import TaperError

        raise TaperError(f"{len(bad)} of {workers} study workers failed (exit codes {bad})")
    return study


class _progress:
    """A rich progress bar over the study's finished trials (polled from the storage)."""

    def __init__(self, study, total: int, quiet: bool, label: str, poll=None) -> None:
        self.study, self.total, self.quiet, self.label, self.poll = study, total, quiet, label, poll

    def __enter__(self):
        if self.quiet:
            return self
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress(
            f"[bold]{self.label}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        )
        self.bar.start()
        self.task = self.bar.add_task("", total=self.total, completed=_finished(self.study))
        if self.poll is not None:
            while any(p.is_alive() for p in self.poll):
                self.update(self.study)
                time.sleep(1.0)
        return self

    def update(self, study, trial=None) -> None:
        if not self.quiet:
            self.bar.update(self.task, completed=min(_finished(study), self.total))

    def __exit__(self, *exc) -> None:
        if not self.quiet:
            self.bar.update(self.task, completed=min(_finished(self.study), self.total))
            self.bar.stop()


def best_feasible(study):
    """The best complete trial whose constraint holds (single objective), or None."""
    from optuna.trial import TrialState

    ok = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if all(c <= 0 for c in t.constraints.values())
    ]
    if not ok:
        return None
    return min(ok, key=lambda t: t.value)
