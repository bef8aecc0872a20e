"""Where a study lives and what it holds: the storage (an SQLite file under log_dir, or a server URL), the trials
that count against the budget, and the table --show and the report print.

Both storages are Optuna's RDBStorage, the one that keeps worker heartbeats: a trial whose worker stops beating
(kill -9, a lost machine) is marked failed by the next worker that starts a trial and queued again with the same
parameters (RetryHeartbeatStaleTrialCallback). The retry trains the same run folder, so it resumes from last.pt.
"""
from __future__ import annotations

import logging
import re
import statistics
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from src.errors import ConfigError

log = logging.getLogger("maskcls")
# heartbeats and their retry callback have been "experimental" since Optuna 2.8 and are what Optuna documents for
# dead workers; one warning per call would bury the trials' own lines
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

EMBEDDED = "sweeps.db"  # the default storage, in log_dir
MAX_RETRY = 3  # a trial whose worker died is queued again at most this often
CREATE_TRIES = 4  # opening a storage whose tables another worker is creating
SURPLUS = "surplus"  # user attr of a trial started after the budget was spent by other workers; it never trains
# user attrs of a sweep with trial_minutes: the training minutes predicted from the step times alone, and calibrated
# by the finished trials of the same machine (HOST); and of every finished trial, the minutes it trained
STEPS_PREDICTED, PREDICTED, HOST, TRAINED = "steps_predicted_minutes", "predicted_minutes", "host", "train_minutes"
OVER_BUDGET = "over_budget"  # user attr of a trial pruned before training: predicted over trial_minutes
MINUTES_OVER = "minutes_over_budget"  # the constraint TPE sees: predicted minutes - trial_minutes (<= 0 fits)
OVER_BUDGET_LIMIT = 10  # a study stops drawing once this many times n_trials were over trial_minutes


def storage_url(url: str, log_dir) -> str:
    return url or f"sqlite:///{(Path(log_dir) / EMBEDDED).resolve()}"


def shown_url(url: str) -> str:
    """The URL with its password hidden, for logs and run folders."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str, log_dir, grace: int, create: bool = True) -> RDBStorage:
    """The study storage with heartbeats every grace/3 seconds; a server that cannot be reached is one line.
    create=False (reading a study) refuses an embedded file that does not exist instead of making it."""
    url = storage_url(url, log_dir)
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        db = Path(url.removeprefix("sqlite:///"))
        if not create and not db.is_file():
            raise ConfigError(f"no study storage {db}: sweep.py --sweep ... --log_dir {log_dir} makes it, or give "
                              f"--storage URL")
        db.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(CREATE_TRIES):
        try:
            return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=max(1, grace // 3), grace_period=grace,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                                  max_retry=MAX_RETRY, inherit_intermediate_values=True))
        except ImportError as e:
            raise ConfigError(f"--storage {shown_url(url)}: the database driver is missing ({e}); for PostgreSQL "
                              f"pip install 'psycopg[binary]' (in requirements.txt)") from None
        except Exception as e:  # sqlalchemy raises many types for a bad URL or an unreachable server
            # workers that start together on an empty database race to create its tables: the loser tries again
            # (SQLite reports the race as an OperationalError: a table that already exists, or a locked file)
            raced = type(e).__name__ in ("IntegrityError", "ProgrammingError") or (
                url.startswith("sqlite") and type(e).__name__ == "OperationalError")
            if attempt + 1 < CREATE_TRIES and raced:
                time.sleep(1 + attempt)
                continue
            raise ConfigError(f"--storage {shown_url(url)}: cannot open the study storage "
                              f"({type(e).__name__}: {str(e).splitlines()[0]})") from None


def load_study(storage: RDBStorage, name: str) -> optuna.Study:
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        raise ConfigError(f"no study {name!r} in {shown_url(storage.url)}; studies there: "
                          f"{', '.join(names) or '(none)'}")
    return optuna.load_study(study_name=name, storage=storage)


def retried(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials whose worker died and that were queued again (their retry carries on)."""
    return {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}


def is_retry(trial: FrozenTrial) -> bool:
    return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) is not None


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that spend the budget: every fresh trial (a retry takes its original's place), surplus ones and
    those over trial_minutes (never trained) aside."""
    return [t for t in trials if not is_retry(t) and not t.user_attrs.get(SURPLUS) and not t.user_attrs.get(OVER_BUDGET)]


def over_budget(trials: list[FrozenTrial]) -> int:
    return sum(1 for t in trials if t.user_attrs.get(OVER_BUDGET))


def run_name(study: str, trial: FrozenTrial | optuna.Trial) -> str:
    """The run folder of a trial: a retry trains its original's folder."""
    original = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return f"{study}-{trial.number if original is None else original:03d}"


def minutes(t: FrozenTrial) -> float | None:
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return (t.datetime_complete - t.datetime_start).total_seconds() / 60


def rows(study: optuna.Study) -> list[dict]:
    """One dict per trial that trained (surplus ones aside), best first; unfinished and pruned after the finished."""
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS)]
    gone = retried(trials)
    out = []
    for t in trials:
        state = t.state.name.lower()
        if t.number in gone:
            state = "failed, retried"
        elif t.user_attrs.get(OVER_BUDGET):
            state = "over budget"
        value = t.value if t.state == TrialState.COMPLETE else None  # a pruned trial's is one epoch's val_f1
        out.append(dict(number=t.number, state=state, value=value, params=dict(t.params),
                        run=t.user_attrs.get("run", ""), minutes=minutes(t), predicted=t.user_attrs.get(PREDICTED),
                        epochs=len(t.intermediate_values),
                        retry_of=RetryHeartbeatStaleTrialCallback.retried_trial_number(t),
                        command=t.user_attrs.get("command", "")))
    return sorted(out, key=lambda r: (r["value"] is None, -(r["value"] or 0), r["number"]))


def importances(study: optuna.Study) -> tuple[dict | None, str]:
    """optuna.importance's parameter importances, or why there are none yet."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if len(done) < 2:
        return None, f"importances need two finished trials; this study has {len(done)}"
    try:
        # named, and seeded: Optuna 5's default evaluator is PED-ANOVA, which ties every parameter on a few trials
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return optuna.importance.get_param_importances(study, evaluator=evaluator), "fANOVA over the finished trials"
    except (RuntimeError, ValueError) as e:  # one distinct value per parameter, for example
        return None, f"importances unavailable: {e}"


def pruning_summary(table: list[dict]) -> str:
    """How many trials were pruned and the time that saved, against the median finished trial; and how many the
    budget kept from training."""
    over = sum(r["state"] == "over budget" for r in table)
    return pruned_summary(table) + (f"; over trial_minutes, never trained: {over}" if over else "")


def pruned_summary(table: list[dict]) -> str:
    pruned = [r for r in table if r["state"] == "pruned" and r["minutes"] is not None]
    full = [r["minutes"] for r in table if r["state"] == "complete" and r["minutes"] is not None]
    if not pruned:
        return f"pruned: 0 of {len(table)} trials"
    ran = sum(r["minutes"] for r in pruned)
    if not full:
        return f"pruned: {len(pruned)} of {len(table)} trials, after {ran:.1f} min in all"
    saved = sum(max(statistics.median(full) - r["minutes"], 0.0) for r in pruned)
    return (f"pruned: {len(pruned)} of {len(table)} trials after {ran:.1f} min in all; at the median finished "
            f"trial's {statistics.median(full):.1f} min they would have taken {saved:.1f} min more")


def show_text(study: optuna.Study) -> str:
    table = rows(study)
    lines = [f"study {study.study_name}: {len(table)} trials, direction {study.direction.name.lower()}",
             "| trial | state | value | minutes | predicted | epochs | params | run |", "|---|---|---|---|---|---|---|---|"]
    for r in table:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        took, predicted = ("" if r[k] is None else f"{r[k]:.1f}" for k in ("minutes", "predicted"))
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
        retry = f" (retry of {r['retry_of']})" if r["retry_of"] is not None else ""
        run = "(not trained)" if r["state"] == "over budget" else r["run"]
        lines.append(f"| {r['number']}{retry} | {r['state']} | {value} | {took} | {predicted} | {r['epochs']} | "
                     f"{params} | {run} |")
    lines.append(pruning_summary(table))
    for r in table:
        if r["command"]:
            lines.append(f"trial {r['number']}: {r['command']}")
    found, how = importances(study)
    lines.append(f"importances ({how}):" if found else how)
    lines += [f"  {k}: {v:.3f}" for k, v in (found or {}).items()]
    return "\n".join(lines)
