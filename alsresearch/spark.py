"""Training on Spark: :class:`SparkALSModel`, Spark MLlib's implicit ALS behind the model protocol.

When the events outgrow one machine, Spark (``pyspark.ml.recommendation.ALS`` with
``implicitPrefs=True``) fits the factors; this module is the bridge, not a distributed ALS of
its own. The events are read, validated, summed per (user, item) cell and mapped to Spark's
int32 ids *in Spark*; after the fit the user and item factors (and each user's seen items, which
the model file keeps so that recommendations exclude them) are collected into numpy with the
external id maps. The result is an :class:`~alsresearch.als.ALSModel` (this class derives from
it), so ``evaluate``, ``tune``, ``promote``, ``.save()`` / ``load_model`` and ``alsresearch
serve`` take it unchanged. Its model file has the type ``"spark_als"`` and records who trained
it (:attr:`SparkALSModel.spark_info`: Spark version, master, application id, the Spark
parameters, timings); loading and serving it import nothing from pyspark (this module imports
pyspark only inside the functions that start or use Spark).

The same model, stated precisely
--------------------------------
Spark's implicit ALS minimises Hu, Koren & Volinsky's objective with ``p_ui = 1[r_ui > 0]``,
``c_ui = 1 + alpha |r_ui|``, and the regularization of each row multiplied by its number of
positive entries (ALS-WR: ``lambda n_u`` for user ``u``, ``lambda n_i`` for item ``i``). That is
:func:`alsresearch.als.objective` with ``regularization_scaling="count"`` (every stored count
is positive, so ``n_u`` is the row's number of stored cells), which is how this model reports
its loss and how it folds in new users. The parameters map as follows:

=========================== ============================= =====================================
alsresearch                 Spark ``ALS``                 note
=========================== ============================= =====================================
``factors``                 ``rank``
``iterations``              ``maxIter``                   a Spark iteration solves every item,
                                                          then every user (exactly, Cholesky)
``regularization``          ``regParam``                  lambda; Spark multiplies it by the
                                                          row's count: our ``"count"`` scaling
``alpha``                   ``alpha``                     ``c = 1 + alpha r``
``scaling="log"``           (none)                        applied before Spark sees the counts:
                                                          Spark gets ``r' = log1p(r)``, so
                                                          ``c = 1 + alpha log1p(r)``
``random_state``            ``seed``                      None draws a fresh seed (recorded)
(always)                    ``implicitPrefs=True``,
                            ``nonnegative=False``,
                            ``coldStartStrategy="drop"``
``user_blocks``             ``numUserBlocks``             partitions of the user factors
``item_blocks``             ``numItemBlocks``             partitions of the item factors
``checkpoint_interval``     ``checkpointInterval``        -1 never; needs a checkpoint dir
                                                          (see :func:`get_session`)
``intermediate_storage``    ``intermediateStorageLevel``  e.g. ``"MEMORY_AND_DISK"``
``final_storage``           ``finalStorageLevel``
(engine settings)           ``userCol="user"``,           fixed internal column names
                            ``itemCol="item"``,
                            ``ratingCol="rating"``
=========================== ============================= =====================================

The initial factors differ (Spark draws unit-norm Gaussian rows, we draw uniform ones), so the
two engines reach different, equally good factors: compare them by the objective and by ranking
metrics (tests/test_spark.py, benchmarks/bench_spark.py), not factor by factor. Spark keeps
factors in float32 and solves in float64. With the same seed, blocks and data, Spark gives the
same factors up to the order in which its shuffles deliver blocks.

Sessions
--------
One Spark session per process, created lazily by :func:`get_session` (master from the argument,
else ``$SPARK_MASTER``, else ``local[*]``; extra ``key=value`` configuration, parsed from text
by :func:`parse_conf`) and stopped at interpreter exit (:func:`stop_session`). Before Spark
starts, ``java -version`` is checked (Java 17+), and a ``spark://host:port`` master is probed
with a TCP connection; the session start and, on a cluster, a first trivial job run under a
timeout, so an unreachable master is an error, not a hang. Spark's console progress bar and
INFO logs are off unless ``verbose``. Under a local master the checkpoint directory is a
temporary directory removed when the session stops; on a cluster give a shared one
(``spark.checkpoint.dir`` in the configuration, e.g. on HDFS), or checkpointing is off.

Evaluation at Spark scale
-------------------------
:func:`evaluate_spark` ranks every test user's top-k in Spark (batches of users against the
broadcast item factors, the user's training items excluded, scored and tie-broken by the ranking
rule of :meth:`~alsresearch.base.Recommender.recommend`) and computes NDCG, HitRate, Precision, Recall, MAP,
MRR and Coverage in Spark SQL with the definitions of :mod:`alsresearch.metrics`; on the same
factors and split it agrees with :func:`alsresearch.evaluate.evaluate`.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from alsresearch.als import ALSModel, objective
from alsresearch.checks import check_choice, check_float, check_int
from alsresearch.data import Interactions, check_event_columns
from alsresearch.errors import MissingExtraError, SetupError
from alsresearch.metrics import PER_USER_METRICS

__all__ = [
    "DEFAULT_MASTER",
    "MIN_JAVA",
    "START_TIMEOUT",
    "STORAGE_LEVELS",
    "SparkALSModel",
    "SparkEvaluation",
    "SparkSetupError",
    "active_session",
    "check_java",
    "evaluate_spark",
    "get_session",
    "java_version",
    "parse_conf",
    "resolve_master",
    "stop_session",
]

DEFAULT_MASTER = "local[*]"
#: the oldest Java that pyspark 4 runs on
MIN_JAVA = 17
#: seconds allowed for the session to start (and, on a cluster, for a first trivial job)
START_TIMEOUT = 120.0
#: seconds allowed for ``java -version`` and for the TCP probe of a ``spark://`` master
PROBE_TIMEOUT = 10.0
#: Spark's storage level names accepted for the intermediate and final RDDs
STORAGE_LEVELS = (
    "MEMORY_ONLY",
    "MEMORY_ONLY_2",
    "MEMORY_AND_DISK",
    "MEMORY_AND_DISK_2",
    "MEMORY_AND_DISK_DESER",
    "DISK_ONLY",
    "DISK_ONLY_2",
    "DISK_ONLY_3",
    "OFF_HEAP",
)
_INSTALL_HINT = "pip install 'alsresearch[spark]'"
#: the largest id count Spark's ALS takes (its ids are int32)
_MAX_IDS = 2**31 - 1
#: Spark's log configuration when not verbose: warnings and errors only, minus known noise
_QUIET_LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.hadoop.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop.level = error
logger.netlib.name = dev.ludovic.netlib
logger.netlib.level = error
logger.utils.name = org.apache.spark.util.Utils
logger.utils.level = error
logger.tasks.name = org.apache.spark.scheduler.TaskSetManager
logger.tasks.level = error
"""


class SparkSetupError(SetupError):
    """Spark cannot run here: Java missing or too old, an unreachable master, a session that
    did not start in time, or one already running with another master."""


# ---------------------------------------------------------------------- pyspark and Java
def _pyspark():
    """The pyspark module, or an ImportError that says how to install it."""
    try:
        with warnings.catch_warnings():
            # pyspark 4 warns at import that it does not fully support pandas 3; the bridge
            # moves only numbers and ids through Arrow, which tests/test_spark.py covers
            warnings.filterwarnings("ignore", message="PySpark does not yet fully support")
            import pyspark
            import pyspark.ml.recommendation
            import pyspark.sql
    except ImportError as exc:
        raise MissingExtraError(
            f"the Spark backend needs pyspark 4.x, which is not installed: {_INSTALL_HINT} "
            f"(and Java {MIN_JAVA}+)"
        ) from exc
    major = int(pyspark.__version__.split(".")[0])
    if major < 4:
        raise MissingExtraError(
            f"the Spark backend needs pyspark 4.x, found {pyspark.__version__}: {_INSTALL_HINT}"
        )
    return pyspark


def _java_executable() -> str | None:
    """``$JAVA_HOME/bin/java`` when JAVA_HOME is set (what Spark's launcher runs), else
    ``java`` on the PATH; None when there is none."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.is_file() else None
    return shutil.which("java")


def java_version() -> tuple[int, str]:
    """(major version, the ``java -version`` line) of the Java Spark would run.

    Raises :class:`SparkSetupError` when there is no Java or it does not answer."""
    java = _java_executable()
    if java is None:
        where = (
            f"JAVA_HOME={os.environ['JAVA_HOME']!r} has no bin/java"
            if os.environ.get("JAVA_HOME")
            else "no 'java' on the PATH and JAVA_HOME is not set"
        )
        raise SparkSetupError(
            f"Spark needs Java {MIN_JAVA}+, but none was found ({where}); install a JDK "
            f"{MIN_JAVA}+ (e.g. apt-get install openjdk-17-jre-headless) and set JAVA_HOME"
        )
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SparkSetupError(f"could not run {java} -version: {exc}") from exc
    text = proc.stderr + proc.stdout
    found = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if proc.returncode != 0 or found is None:
        raise SparkSetupError(f"{java} -version failed or printed no version: {text.strip()!r}")
    major = int(found.group(1))
    if major == 1 and found.group(2):  # "1.8.0_292" is Java 8
        major = int(found.group(2))
    return major, text.strip().splitlines()[0]


def check_java() -> int:
    """The Java major version, or :class:`SparkSetupError` when Java is missing or older than
    :data:`MIN_JAVA`."""
    major, line = java_version()
    if major < MIN_JAVA:
        raise SparkSetupError(
            f"Spark 4 needs Java {MIN_JAVA}+, found Java {major} ({line}, "
            f"{_java_executable()}); install a newer JDK and point JAVA_HOME at it"
        )
    return major


# ---------------------------------------------------------------------- the session
@dataclass
class _State:
    spark: Any = None
    master: str | None = None
    verbose: bool = False
    tmp: Path | None = None
    registered: bool = False


_STATE = _State()
_LOCK = threading.RLock()


def resolve_master(master: str | None = None) -> str:
    """The master to use: ``master``, else ``$SPARK_MASTER``, else :data:`DEFAULT_MASTER`."""
    chosen = master or os.environ.get("SPARK_MASTER") or DEFAULT_MASTER
    if not isinstance(chosen, str) or not chosen.strip():
        raise ValueError(f"the Spark master must be a non-empty string, got {chosen!r}")
    return chosen.strip()


def _is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def _local_cores(master: str) -> int:
    """The worker threads of a local master: ``local`` 1, ``local[N]`` N, ``local[*]`` all."""
    found = re.match(r"local\[(\d+|\*)", master)
    if found is None:
        return 1
    return (os.cpu_count() or 1) if found.group(1) == "*" else int(found.group(1))


def parse_conf(pairs: Iterable[str] | Mapping[str, Any] | None) -> dict[str, str]:
    """Spark configuration from ``key=value`` strings (``--spark-conf``) or a mapping: a dict
    of strings. A pair without ``=`` or with an empty key is a ValueError naming it."""
    if pairs is None:
        return {}
    if isinstance(pairs, Mapping):
        items = [(str(k), v) for k, v in pairs.items()]
    else:
        items = []
        for pair in pairs:
            key, sep, value = str(pair).partition("=")
            if not sep or not key.strip():
                raise ValueError(f"Spark configuration must be key=value, got {pair!r}")
            items.append((key.strip(), value.strip()))
    out = {}
    for key, value in items:
        if not key:
            raise ValueError("Spark configuration keys must be non-empty")
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _with_timeout(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """``fn()`` in a daemon thread; its result, its exception, or :class:`SparkSetupError`
    when it has not returned after ``seconds`` (the thread is left behind: a Spark call cannot
    be interrupted from Python)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"alsresearch-spark: {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise SparkSetupError(
            f"{what} did not finish within {seconds:g} s: is the master reachable and does "
            "it have free executors?"
        )
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _probe_master(master: str, timeout: float) -> None:
    """A TCP connection to each host:port of a ``spark://`` master URL (fails in milliseconds
    when nothing listens, where Spark itself would retry for minutes)."""
    if not master.startswith("spark://"):
        return
    for hostport in master[len("spark://") :].split(","):
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            last = f"{hostport}: {exc}"
    raise SparkSetupError(
        f"the Spark master {master} is unreachable ({last}); check the URL (--spark-master / "
        "SPARK_MASTER) and that the master is running"
    )


def active_session():
    """The session :func:`get_session` started, or None."""
    return _STATE.spark


def get_session(
    master: str | None = None,
    conf: Iterable[str] | Mapping[str, Any] | None = None,
    verbose: bool = False,
    timeout: float = START_TIMEOUT,
):
    """The process's Spark session, started on first use.

    ``master``: a Spark master URL (``local[2]``, ``spark://host:7077``, ``yarn``, ``k8s://...``),
    default ``$SPARK_MASTER`` or ``local[*]`` (in a driver that ``spark-submit`` started, its
    ``--master``). ``conf``: extra configuration, ``key=value``
    strings or a mapping (see :func:`parse_conf`); it is applied last, so it overrides the
    defaults set here. ``verbose`` keeps Spark's progress bar and INFO logs. ``timeout``:
    seconds for the start (and, on a cluster, a first job) before :class:`SparkSetupError`.

    A second call returns the running session; asking it for another master raises
    :class:`SparkSetupError` (one Spark context per process: :func:`stop_session` first).
    Java missing or too old: SparkSetupError; pyspark missing: ImportError naming the extra.
    """
    extra = parse_conf(conf)
    timeout = check_float(timeout, "timeout", low=0.0, low_open=True)
    with _LOCK:
        if _STATE.spark is not None:
            wanted = resolve_master(master) if master or os.environ.get("SPARK_MASTER") else None
            if wanted is not None and wanted != _STATE.master:
                raise SparkSetupError(
                    f"a Spark session with master {_STATE.master!r} is running in this process; "
                    f"stop it (alsresearch.spark.stop_session()) before using {wanted!r}"
                )
            running = _STATE.spark.sparkContext.getConf()
            for key, value in extra.items():
                if running.get(key, None) != value:
                    _STATE.spark.conf.set(key, value)  # runtime settings; static ones raise
            return _STATE.spark
        _pyspark()
        submitted = master is None and not os.environ.get("SPARK_MASTER") and _under_spark_submit()
        if not submitted:  # else spark-submit started the JVM with its own --master
            check_java()
            master = resolve_master(master)
            _probe_master(master, min(timeout, PROBE_TIMEOUT))
        tmp = Path(tempfile.mkdtemp(prefix="alsresearch-spark-"))
        try:
            spark = _start(master, extra, verbose, timeout, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        master = spark.sparkContext.master
        _STATE.spark, _STATE.master, _STATE.verbose, _STATE.tmp = spark, master, verbose, tmp
        if not _STATE.registered:
            atexit.register(stop_session)
            _STATE.registered = True
        return spark


def _under_spark_submit() -> bool:
    """True in a driver that spark-submit started (its JVM is already running)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _start(master: str | None, extra: dict[str, str], verbose: bool, timeout: float, tmp: Path):
    """Build the session (``master`` None: the one spark-submit was given)."""
    from pyspark.sql import SparkSession

    settings = {
        "spark.app.name": "alsresearch",
        "spark.ui.showConsoleProgress": "true" if verbose else "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
    }
    if not verbose and master is not None:  # under spark-submit the JVM runs already
        log_conf = tmp / "log4j2.properties"
        log_conf.write_text(_QUIET_LOG4J2)
        settings["spark.driver.extraJavaOptions"] = (
            f"-Dlog4j2.configurationFile={log_conf.as_uri()}"
        )
    if master is not None and _is_local(master):
        # a shuffle into Spark's default 200 partitions costs more than it saves on one machine
        settings["spark.sql.shuffle.partitions"] = str(2 * _local_cores(master))
        # the workers of a local master run this interpreter (numpy, pandas and pyarrow are
        # there); a loopback address avoids a warning on hosts whose name resolves to it
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings.update(extra)
    builder = SparkSession.builder if master is None else SparkSession.builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    if not verbose:
        # pyspark warns on every Arrow conversion that it does not fully support pandas 3; the
        # bridge moves only ids and numbers through Arrow (tests/test_spark.py checks them)
        warnings.filterwarnings(
            "ignore", message="PySpark does not yet fully support", category=FutureWarning
        )
    spark = _with_timeout(builder.getOrCreate, timeout, f"starting Spark (master {master})")
    sc = spark.sparkContext
    master = sc.master
    sc.setLogLevel("INFO" if verbose else "WARN")
    if not _is_local(master):
        group = "alsresearch-startup-check"
        sc.setJobGroup(group, "a first trivial job, to see that executors answer")
        try:
            _with_timeout(lambda: spark.range(1).count(), timeout, f"a first job on {master}")
        except SparkSetupError:
            sc.cancelJobGroup(group)
            spark.stop()
            raise
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)
    checkpoint = extra.get("spark.checkpoint.dir")
    if checkpoint:
        sc.setCheckpointDir(checkpoint)
    elif _is_local(master):
        sc.setCheckpointDir(str(tmp / "checkpoints"))
    return spark


def stop_session() -> None:
    """Stop the session :func:`get_session` started (if any) and remove its temporary
    directory (checkpoints, log configuration). Registered to run at interpreter exit."""
    with _LOCK:
        spark, tmp = _STATE.spark, _STATE.tmp
        _STATE.spark = _STATE.master = _STATE.tmp = None
        if spark is not None:
            try:
                spark.stop()
            except Exception as exc:  # at exit the JVM may already be gone
                print(f"alsresearch: stopping Spark: {exc}", file=sys.stderr)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _session(session):
    return session if session is not None else get_session()


# ---------------------------------------------------------------------- events -> cells
def _is_spark_frame(obj) -> bool:
    module = type(obj).__module__ or ""
    return module.startswith("pyspark.") and type(obj).__name__ == "DataFrame"


def _read_events(spark, path, file_format: str | None):
    """A Spark DataFrame of the events file (or directory) at ``path``: Parquet, or CSV/TSV
    with a header read as text (``file_format`` or else by the suffix)."""
    text = str(path)
    has_scheme = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None
    if not has_scheme and not Path(text).exists():
        raise FileNotFoundError(f"events file not found: {text}")
    if file_format is None:
        lower = text.lower().rstrip("/")
        for suffix in (".gz", ".bz2", ".zst"):
            lower = lower.removesuffix(suffix)
        file_format = "csv" if lower.endswith((".csv", ".tsv", ".txt")) else "parquet"
    check_choice(file_format, "file_format", ("parquet", "csv"))
    if file_format == "parquet":
        return spark.read.parquet(text), True
    sep = "\t" if text.lower().rstrip("/").split(".")[-1] == "tsv" or ".tsv." in text else ","
    return spark.read.option("header", True).option("sep", sep).csv(text), False


def _bad_count_message(source: str, total: int, reasons: dict[str, int]) -> str:
    detail = "; ".join(f"{k}: {v} row(s)" for k, v in reasons.items() if v)
    return f"{source}: {sum(reasons.values())} bad row(s) of {total}. {detail}. Fix the data."


def _id_column(frame, name: str, text_rule: bool):
    """``(column expression, kind)``: the ids of column ``name`` as Spark long (``"int"``) or
    string (``"str"``) values, by the rules of :mod:`alsresearch.data`: integer columns stay
    integers; text read from a CSV file becomes integers only when every id is canonical int64
    text; string columns of a DataFrame or Parquet file stay strings; float columns must hold
    whole numbers within +-2**53."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = frame.schema[name].dataType
    col = F.col(f"`{name}`")
    if isinstance(dtype, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return col.cast("long"), "int"
    if isinstance(dtype, T.FloatType | T.DoubleType | T.DecimalType):
        value = col.cast("double")
        bad = frame.filter(
            col.isNotNull()
            & (F.isnan(value) | (value != F.round(value)) | (F.abs(value) > float(2**53)))
        ).limit(1)
        if bad.count():
            raise ValueError(
                f"id column {name!r} is float and holds values that are not whole numbers "
                "within +-2**53 (exact in float64); store ids as integers or text"
            )
        return value.cast("long"), "int"
    if isinstance(dtype, T.StringType):
        if text_rule:
            as_int = F.expr(f"try_cast(`{name}` AS BIGINT)")
            odd = frame.filter(
                col.isNotNull() & (as_int.isNull() | (as_int.cast("string") != col))
            ).limit(1)
            if odd.count() == 0:
                return as_int, "int"
        return col, "str"
    raise ValueError(f"id column {name!r} has Spark type {dtype.simpleString()}; ids must be "
                     "integers or text")  # fmt: skip


def _events_to_cells(
    spark,
    events,
    source: str,
    text_ids: bool,
    user_col: str,
    item_col: str,
    weight_col: str | None,
    event_col: str | None,
    event_weights: Mapping[str, float] | None,
):
    """``(cells, user kind, item kind)``: a DataFrame of (``user_id``, ``item_id``, ``count``)
    with one row per cell of positive count, the events validated as
    :meth:`Interactions.from_events` validates them (bad rows raise a ValueError with counts
    by reason; Spark does not number rows, so no row numbers)."""
    from pyspark.sql import functions as F

    check_event_columns(
        list(events.columns), source, event_weights,
        user_col=user_col, item_col=item_col, weight_col=weight_col, event_col=event_col,
    )  # fmt: skip
    users, user_kind = _id_column(events, user_col, text_ids)
    items, item_kind = _id_column(events, item_col, text_ids)
    bad: dict[str, Any] = {
        f"null id in {user_col!r}": F.col(f"`{user_col}`").isNull(),
        f"null id in {item_col!r}": F.col(f"`{item_col}`").isNull(),
    }
    weight = F.lit(1.0)
    if weight_col is not None:
        raw = F.col(f"`{weight_col}`")
        weight = F.expr(f"try_cast(`{weight_col}` AS DOUBLE)")
        bad[f"non-numeric value in {weight_col!r}"] = raw.isNotNull() & weight.isNull()
        bad[f"missing value in {weight_col!r}"] = raw.isNull()
        bad[f"NaN value in {weight_col!r}"] = F.isnan(weight)
        bad[f"infinite value in {weight_col!r}"] = weight.isin(float("inf"), float("-inf"))
        bad[f"negative value in {weight_col!r}"] = weight < 0
    if event_col is not None:
        kinds = F.col(f"`{event_col}`").cast("string")
        if event_weights is None:
            bad[f"null event type in {event_col!r}"] = kinds.isNull()
        else:
            for kind, value in event_weights.items():
                if not np.isfinite(value) or value < 0:
                    raise ValueError(
                        f"event_weights[{kind!r}] must be finite and >= 0, got {value}"
                    )
            pairs = [x for k, v in event_weights.items() for x in (F.lit(str(k)), F.lit(float(v)))]
            mapped = F.element_at(F.create_map(*pairs), kinds) if pairs else F.lit(None)
            known = sorted(map(str, event_weights))
            bad[f"unknown event type in {event_col!r} (known: {known})"] = (
                kinds.isNull() | mapped.isNull()
            )
            weight = weight * F.coalesce(mapped.cast("double"), F.lit(0.0))
    counts = events.agg(
        F.count(F.lit(1)).alias("total"),
        *[F.sum(F.when(cond, 1).otherwise(0)).alias(f"bad{j}") for j, cond in enumerate(bad.values())],
    ).first()  # fmt: skip
    total = int(counts["total"])
    reasons = {name: int(counts[f"bad{j}"] or 0) for j, name in enumerate(bad)}
    if any(reasons.values()):
        raise ValueError(_bad_count_message(source, total, reasons))
    if total == 0:
        raise ValueError(f"{source}: no events to build interactions from (the data is empty)")
    cells = (
        events.select(users.alias("user_id"), items.alias("item_id"), weight.alias("w"))
        .groupBy("user_id", "item_id")
        .agg(F.sum("w").alias("count"))
        .filter(F.col("count") != 0)
    )
    return cells, user_kind, item_kind


def _index_ids(spark, cells, column: str, kind: str):
    """``(ids, map)``: the distinct ids of ``cells[column]`` in sorted order (what
    ``pandas.factorize(sort=True)`` gives :meth:`Interactions.from_events`) as a numpy array,
    and a Spark DataFrame (``column``, ``idx``) numbering them 0.. in that order, made with
    ``zipWithIndex`` on the sorted distinct ids (the events never leave Spark)."""
    from pyspark.sql import types as T

    distinct = cells.select(column).distinct().orderBy(column)
    indexed = distinct.rdd.zipWithIndex().map(lambda pair: (pair[0][0], int(pair[1])))
    id_type = T.LongType() if kind == "int" else T.StringType()
    schema = T.StructType(
        [T.StructField(column, id_type, False), T.StructField("idx", T.IntegerType(), False)]
    )
    mapping = spark.createDataFrame(indexed, schema).cache()
    table = mapping.orderBy("idx").toPandas()
    if len(table) > _MAX_IDS:
        raise ValueError(f"{len(table)} distinct {column}s: more than Spark's int32 ids allow")
    values = table[column].to_numpy()
    ids = values.astype(np.int64) if kind == "int" else np.asarray(values.astype(str), dtype=str)
    return ids, mapping


# ---------------------------------------------------------------------- the model
class SparkALSModel(ALSModel):
    """Implicit ALS fitted by Spark MLlib; afterwards an :class:`ALSModel` with
    ``regularization_scaling="count"`` (see the module docstring for the parameter mapping).

    ``factors``, ``iterations``, ``alpha``, ``regularization``, ``scaling`` and
    ``random_state`` mean what they mean for :class:`ALSModel` (whose other settings, the
    solver, threads and dtype, belong to our engine: Spark solves exactly, on its executors, in
    float32 factors). ``user_blocks`` / ``item_blocks``: Spark's numUserBlocks /
    numItemBlocks (partitions; about 2-3 per executor core is Spark's advice).
    ``checkpoint_interval``: Spark's checkpointInterval (-1 never; it cuts the lineage of long
    fits and needs a checkpoint directory). ``intermediate_storage`` / ``final_storage``:
    Spark's storage levels (:data:`STORAGE_LEVELS`).

    After :meth:`fit`: ``user_factors`` / ``item_factors`` (float32, in the row and column
    order of the training data; ids Spark never saw, e.g. users without cells in an
    Interactions, get zero factors, which is what ALS gives a row without data),
    ``loss_history`` (one entry: the exact objective of the final factors, count-scaled), and
    :attr:`spark_info` (saved in the model file).
    """

    model_type = "spark_als"

    spark_info: dict[str, Any] | None

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 15,
        alpha: float = 40.0,
        regularization: float = 0.01,
        scaling: str = "raw",
        random_state: int | None = None,
        user_blocks: int = 10,
        item_blocks: int = 10,
        checkpoint_interval: int = 10,
        intermediate_storage: str = "MEMORY_AND_DISK",
        final_storage: str = "MEMORY_AND_DISK",
    ) -> None:
        super().__init__(
            factors=factors,
            iterations=iterations,
            alpha=alpha,
            regularization=regularization,
            regularization_scaling="count",
            solver="cholesky",
            scaling=scaling,
            dtype="float32",
            random_state=random_state,
        )
        self.user_blocks = check_int(user_blocks, "user_blocks", low=1)
        self.item_blocks = check_int(item_blocks, "item_blocks", low=1)
        self.checkpoint_interval = check_int(checkpoint_interval, "checkpoint_interval", low=-1)
        if self.checkpoint_interval == 0:
            raise ValueError("checkpoint_interval must be >= 1, or -1 to never checkpoint")
        self.intermediate_storage = check_choice(
            intermediate_storage, "intermediate_storage", STORAGE_LEVELS
        )
        self.final_storage = check_choice(final_storage, "final_storage", STORAGE_LEVELS)
        self.spark_info = None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"SparkALSModel({fields})"

    @classmethod
    def from_als_params(cls, params: Mapping[str, Any], **spark_options) -> SparkALSModel:
        """A SparkALSModel with the objective of ``ALSModel(**params)`` (e.g. tuning's best
        params, ``alsresearch train --params``), plus Spark's own options (``user_blocks``,
        ...). Our engine's settings (``solver``, ``cg_steps``, ``num_threads``, ``dtype``)
        have no Spark counterpart and are dropped; a ``regularization_scaling`` other than
        ``"count"`` is a ValueError (Spark always scales lambda by the row's count)."""
        params = dict(params)
        scaling = params.pop("regularization_scaling", "count")
        if scaling != "count":
            raise ValueError(
                f"Spark's ALS regularizes every row by lambda * its count "
                f"(regularization_scaling='count'); it cannot fit {scaling!r}"
            )
        params.pop("regularization_exponent", None)
        for engine_only in ("solver", "cg_steps", "num_threads", "dtype"):
            params.pop(engine_only, None)
        return cls(**params, **spark_options)

    def spark_params(self, seed: int | None = None) -> dict[str, Any]:
        """The keyword arguments of ``pyspark.ml.recommendation.ALS`` this model fits with."""
        cfg = self.config
        return {
            "rank": cfg.factors,
            "maxIter": cfg.iterations,
            "regParam": cfg.regularization,
            "alpha": cfg.alpha,
            "implicitPrefs": True,
            "nonnegative": False,
            "numUserBlocks": self.user_blocks,
            "numItemBlocks": self.item_blocks,
            "checkpointInterval": self.checkpoint_interval,
            "intermediateStorageLevel": self.intermediate_storage,
            "finalStorageLevel": self.final_storage,
            "coldStartStrategy": "drop",
            "seed": cfg.random_state if seed is None else seed,
            "userCol": "user",
            "itemCol": "item",
            "ratingCol": "rating",
        }

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X,
        callback: Callable[[int, ALSModel], bool | None] | None = None,
        show_progress: bool = False,
        *,
        user_col: str = "user_id",
        item_col: str = "item_id",
        weight_col: str | None = None,
        event_col: str | None = None,
        event_weights: Mapping[str, float] | None = None,
        file_format: str | None = None,
        session=None,
    ) -> SparkALSModel:
        """Fit on Spark, then collect the factors into numpy.

        ``X``: an :class:`~alsresearch.data.Interactions` (or scipy sparse counts) whose id
        space the model keeps; or events, read by Spark itself: a Spark DataFrame, or the path
        (or URI) of a Parquet or CSV/TSV file or directory (``file_format`` ``"parquet"`` /
        ``"csv"``, else by suffix). Events take the column options of
        :meth:`Interactions.from_events` (``user_col``, ``item_col``, ``weight_col``,
        ``event_col``, ``event_weights``) and its checks (bad rows, such as negative counts,
        raise a ValueError with counts by reason; no events at all too); their ids keep their
        type (see :func:`_id_column`) and are sorted as ``from_events`` sorts them.

        ``session``: a SparkSession, default :func:`get_session`'s. ``callback(iterations,
        model)`` runs once, after the fit (Spark does not stop between iterations), so a
        pruning callback sees one value. ``show_progress`` prints what was done and how long
        it took to stderr.
        """
        _pyspark()
        from pyspark.ml.recommendation import ALS

        spark = _session(session)
        start = time.perf_counter()
        if isinstance(X, Interactions) or sp.issparse(X):
            data = X if isinstance(X, Interactions) else Interactions(X)
            if data.nnz == 0:
                raise ValueError(f"the interactions have no stored cell (shape {data.shape})")
            ratings, local, source = (
                self._ratings_from_interactions(spark, data),
                data,
                "Interactions",
            )
            user_ids, item_ids = data.user_ids, data.item_ids
        else:
            if _is_spark_frame(X):
                events, text_ids, source = X, False, "Spark DataFrame"
            elif isinstance(X, str | Path):
                events, parquet = _read_events(spark, X, file_format)
                text_ids, source = not parquet, str(X)
            else:
                raise TypeError(
                    "SparkALSModel.fit takes Interactions, scipy sparse counts, a Spark "
                    f"DataFrame or the path of an events file, got {type(X).__name__}"
                )
            cells, user_kind, item_kind = _events_to_cells(
                spark, events, source, text_ids, user_col, item_col, weight_col, event_col,
                event_weights,
            )  # fmt: skip
            cells = cells.cache()
            if cells.limit(1).count() == 0:
                raise ValueError(f"{source}: every cell's weights sum to 0: no interactions left")
            user_ids, user_map = _index_ids(spark, cells, "user_id", user_kind)
            item_ids, item_map = _index_ids(spark, cells, "item_id", item_kind)
            ratings = self._ratings_from_cells(cells, user_map, item_map)
            local = None
        prepared = time.perf_counter() - start

        seed = self.config.random_state
        if seed is None:
            seed = int(np.random.default_rng().integers(2**62))
        params = self.spark_params(seed)
        if show_progress:
            print(f"Spark ALS: data ready in {prepared:.1f} s; fitting {params}", file=sys.stderr)
        t0 = time.perf_counter()
        fitted = ALS(**params).fit(ratings)
        fit_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        U = _collect_factors(fitted.userFactors, len(user_ids), self.config.factors)
        V = _collect_factors(fitted.itemFactors, len(item_ids), self.config.factors)
        if local is None:
            local = _collect_seen(ratings, user_ids, item_ids)
        collect_seconds = time.perf_counter() - t0
        cfg = self.config
        if source == "Interactions":
            loss = objective(local, U, V, cfg.alpha, cfg.regularization, cfg.scaling, "count")
        else:
            loss = _spark_objective(ratings, U, V, cfg.alpha, cfg.regularization)
        for frame in (ratings, fitted.userFactors, fitted.itemFactors):
            frame.unpersist()

        self.user_factors, self.item_factors = U, V
        self._yty = None
        self._screen = None
        self._user_mean_weight = 1.0
        self._set_training_data(local)
        self.loss_history = [loss]
        sc = spark.sparkContext
        self.spark_info = {
            "trained_by": "spark",
            "spark_version": spark.version,
            "master": sc.master,
            "app_id": sc.applicationId,
            "als_params": params,
            "source": source,
            "n_cells": int(local.nnz),
            "prepare_seconds": prepared,
            "fit_seconds": fit_seconds,
            "collect_seconds": collect_seconds,
        }
        if show_progress:
            print(
                f"Spark ALS: fit {fit_seconds:.1f} s, collect {collect_seconds:.1f} s, "
                f"loss {loss:.6g}",
                file=sys.stderr,
            )
        if callback is not None:
            callback(cfg.iterations, self)
        return self

    def _ratings_from_interactions(self, spark, data: Interactions):
        """Spark's (user, item, rating) rows from the CSR counts, ``log1p`` applied for
        ``scaling="log"``."""
        m = data.matrix
        counts = np.log1p(m.data) if self.config.scaling == "log" else m.data
        frame = pd.DataFrame(
            {
                "user": np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr)),
                "item": m.indices.astype(np.int32),
                "rating": counts.astype(np.float64),
            }
        )
        return spark.createDataFrame(frame).cache()

    def _ratings_from_cells(self, cells, user_map, item_map):
        from pyspark.sql import functions as F

        count = F.col("count")
        rating = F.log1p(count) if self.config.scaling == "log" else count
        return (
            cells.join(user_map, "user_id")
            .withColumnRenamed("idx", "user")
            .join(item_map.withColumnRenamed("idx", "item"), "item_id")
            .select("user", "item", rating.cast("double").alias("rating"))
            .cache()
        )

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "factors": cfg.factors,
            "iterations": cfg.iterations,
            "alpha": cfg.alpha,
            "regularization": cfg.regularization,
            "scaling": cfg.scaling,
            "random_state": cfg.random_state,
            "user_blocks": self.user_blocks,
            "item_blocks": self.item_blocks,
            "checkpoint_interval": self.checkpoint_interval,
            "intermediate_storage": self.intermediate_storage,
            "final_storage": self.final_storage,
        }

    def get_state(self) -> dict[str, np.ndarray]:
        state = super().get_state()
        state["spark"] = np.array(json.dumps(self.spark_info or {}, sort_keys=True))
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        super().set_state(state)
        info = state.get("spark")
        self.spark_info = json.loads(str(info)) if info is not None else None


def _collect_factors(frame, n_rows: int, k: int) -> np.ndarray:
    """Spark's (id, features) factor rows as an ``(n_rows, k)`` float32 array (rows Spark
    never saw stay zero), through Arrow."""
    table = frame.toPandas()
    out = np.zeros((n_rows, k), dtype=np.float32)
    if len(table):
        rows = table["id"].to_numpy(dtype=np.int64)
        out[rows] = np.stack(table["features"].to_numpy()).astype(np.float32)
    return out


def _collect_seen(ratings, user_ids: np.ndarray, item_ids: np.ndarray) -> Interactions:
    """The training cells as an Interactions of ones (which items each user has, what the
    model file keeps), collected as int32 pairs: 8 bytes per cell on the driver."""
    pairs = ratings.select("user", "item").toPandas()
    rows = pairs["user"].to_numpy(dtype=np.int64)
    cols = pairs["item"].to_numpy(dtype=np.int64)
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(user_ids), len(item_ids)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return Interactions(m, user_ids, item_ids)


def _spark_objective(ratings, U: np.ndarray, V: np.ndarray, alpha: float, lam: float) -> float:
    """:func:`alsresearch.als.objective` (count scaling) of factors ``U``, ``V`` on Spark's
    rating rows (``rating`` already log-scaled if need be), the observed cells summed in Spark:
    ``trace(U^T U V^T V) + sum_obs [c (1 - s)^2 - s^2] + lambda (sum_u n_u |u|^2 + sum_i n_i
    |v|^2)``, ``s = u . v``, rows without cells regularized by lambda."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spark = ratings.sparkSession
    U64, V64 = U.astype(np.float64), V.astype(np.float64)
    schema = T.StructType(
        [
            T.StructField("row", T.IntegerType(), False),
            T.StructField("f", T.ArrayType(T.DoubleType()), False),
        ]
    )

    def frame(F_: np.ndarray, name: str):
        pdf = pd.DataFrame({"row": np.arange(len(F_), dtype=np.int32), "f": list(F_)})
        return spark.createDataFrame(pdf, schema).withColumnRenamed("row", name)

    users, items = frame(U64, "user").withColumnRenamed("f", "fu"), frame(V64, "item")
    joined = ratings.join(users, "user").join(items.withColumnRenamed("f", "fi"), "item")
    s = F.aggregate(F.zip_with("fu", "fi", lambda a, b: a * b), F.lit(0.0), lambda a, b: a + b)
    c = 1.0 + alpha * F.col("rating")
    observed = joined.select((c * (1.0 - s) ** 2 - s**2).alias("part")).agg(F.sum("part"))
    observed = float(observed.first()[0] or 0.0)
    n_user = ratings.groupBy("user").count().toPandas()
    n_item = ratings.groupBy("item").count().toPandas()
    lam_u = np.full(len(U), lam)
    lam_u[n_user["user"].to_numpy()] = lam * n_user["count"].to_numpy()
    lam_i = np.full(len(V), lam)
    lam_i[n_item["item"].to_numpy()] = lam * n_item["count"].to_numpy()
    penalty = float(
        np.einsum("ij,ij->i", U64, U64) @ lam_u + np.einsum("ij,ij->i", V64, V64) @ lam_i
    )
    return float(np.sum((U64.T @ U64) * (V64.T @ V64)) + observed + penalty)


# ---------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class SparkEvaluation:
    """What :func:`evaluate_spark` measured: ``metrics`` as :func:`alsresearch.evaluate.
    evaluate` names them (``"ndcg@10"``, ...; means over evaluated users, coverage over the
    union of their lists), ``n_users`` evaluated, the catalogue size ``n_items``, and
    ``per_user``: a Spark DataFrame (``user_id``, ``n_test``, ``recommended`` item indices,
    one column per per-user metric), left in Spark."""

    k: int
    metrics: dict[str, float]
    n_users: int
    n_items: int
    per_user: Any = field(repr=False)


def _cells_frame(spark, data, user_col: str, item_col: str, what: str):
    """A Spark DataFrame (``user_id``, ``item_id``) of ``data``'s cells: an Interactions'
    stored cells, or a Spark DataFrame's rows (every row a cell; duplicates are one cell)."""
    if isinstance(data, Interactions):
        m = data.matrix
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        pdf = pd.DataFrame({"user_id": data.user_ids[rows], "item_id": data.item_ids[m.indices]})
        return spark.createDataFrame(pdf)
    if not _is_spark_frame(data):
        raise TypeError(
            f"{what} must be a Spark DataFrame or an Interactions, got {type(data).__name__}"
        )
    missing = [c for c in (user_col, item_col) if c not in data.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; available: {list(data.columns)}")
    return data.select(
        data[f"`{user_col}`"].alias("user_id"), data[f"`{item_col}`"].alias("item_id")
    )


def _id_map(spark, ids: np.ndarray, name: str):
    from pyspark.sql import types as T

    id_type = T.LongType() if ids.dtype.kind == "i" else T.StringType()
    schema = T.StructType(
        [T.StructField(name, id_type, False), T.StructField("idx", T.IntegerType(), False)]
    )
    values = ids.astype(np.int64) if ids.dtype.kind == "i" else ids.astype(str).astype(object)
    pdf = pd.DataFrame({name: values, "idx": np.arange(len(ids), dtype=np.int32)})
    return spark.createDataFrame(pdf, schema), id_type


def _top_k_batches(item_factors: np.ndarray, k: int):
    """The function ``mapInPandas`` runs on batches of users (``key``, ``f`` user factors or
    null, ``seen`` item indices): each user's top-``k`` item indices by the ranking rule of
    :meth:`ALSModel.score_rows` (float64 dot products rounded to float32; ties to the lower
    item index, as :func:`alsresearch.topk.topk` breaks them), seen items excluded.
    Self-contained (numpy and pandas only), so executors need not have alsresearch
    installed."""

    def run(batches):
        import numpy
        import pandas

        V = item_factors.value.astype(numpy.float64)
        n_items = len(V)
        for batch in batches:
            b = len(batch)
            Ub = numpy.zeros((b, V.shape[1]), dtype=numpy.float64)
            for r, f in enumerate(batch["f"]):
                if f is not None:
                    Ub[r] = numpy.asarray(f, dtype=numpy.float32)
            scores = (Ub @ V.T).astype(numpy.float32)
            for r, seen in enumerate(batch["seen"]):
                if seen is not None and len(seen):
                    scores[r, numpy.asarray(seen, dtype=numpy.int64)] = -numpy.inf
            lists = []
            width = min(k, n_items)
            for r in range(b):
                row = scores[r]
                if width < n_items:
                    threshold = numpy.partition(row, n_items - width)[n_items - width]
                    candidates = numpy.flatnonzero(row >= threshold)
                else:
                    candidates = numpy.arange(n_items)
                candidates = candidates[row[candidates] > -numpy.inf]
                order = numpy.lexsort((candidates, -row[candidates]))[:width]
                lists.append(candidates[order].astype(numpy.int32))
            yield pandas.DataFrame({"key": batch["key"], "recommended": lists})

    return run


def evaluate_spark(
    model, train, test, k: int = 10, *, user_col: str = "user_id", item_col: str = "item_id",
    session=None,
) -> SparkEvaluation:  # fmt: skip
    """Top-``k`` metrics of a fitted factor model, computed in Spark.

    ``model``: any fitted model with factors (:class:`SparkALSModel`, :class:`ALSModel`).
    ``train`` and ``test``: Spark DataFrames of cells with the model's external ids in
    ``user_col`` / ``item_col`` (every row is a cell, other columns are ignored), or
    Interactions (sent to Spark). As :func:`alsresearch.evaluate.evaluate` does: the evaluated
    users are the users with a test cell; each one's top ``k`` over the model's catalogue, their
    ``train`` items excluded, is scored against their test items (binary relevance; test items
    the model does not know count as relevant and are never recommended); a test user the
    model does not know ranks from zero factors, as a user without training cells does in the
    model's own id space. NDCG, HitRate, Precision, Recall, MAP and MRR are means over the
    users of the per-user values of :mod:`alsresearch.metrics` (computed here in Spark SQL),
    Coverage the share of the catalogue in the union of the lists.

    The item factors are broadcast to the executors (they were collected on the driver after
    the fit, so they fit in memory); users are ranked in Arrow batches on the executors.
    """
    _pyspark()
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spark = _session(session)
    k = check_int(k, "k", low=1, high=100_000)
    for name in ("user_factors", "item_factors", "user_ids", "item_ids"):
        if not hasattr(model, name):
            raise TypeError(
                f"evaluate_spark needs a fitted factor model (ALSModel, SparkALSModel); "
                f"{type(model).__name__} has no {name}"
            )
    U = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    V = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    n_items = len(V)
    user_map, user_type = _id_map(spark, np.asarray(model.user_ids), "user_id")
    item_map, item_type = _id_map(spark, np.asarray(model.item_ids), "item_id")

    def known(frame, what):
        cells = _cells_frame(spark, frame, user_col, item_col, what)
        return cells.select(
            F.col("user_id").cast(user_type).alias("user_id"),
            F.col("item_id").cast(item_type).alias("item_id"),
        ).distinct()

    train_cells = known(train, "train")
    test_cells = known(test, "test")
    test_idx = test_cells.join(item_map, "item_id", "left")  # idx null: unknown (cold) item
    relevant = test_idx.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n_test"),
        F.collect_list("idx").alias("relevant"),  # nulls dropped: never recommended anyway
    )
    seen = (
        train_cells.join(item_map, "item_id")
        .groupBy("user_id")
        .agg(F.collect_list("idx").alias("seen"))
    )
    factor_schema = T.StructType(
        [
            T.StructField("uidx", T.IntegerType(), False),
            T.StructField("f", T.ArrayType(T.FloatType()), False),
        ]
    )
    factors = spark.createDataFrame(
        pd.DataFrame({"uidx": np.arange(len(U), dtype=np.int32), "f": list(U)}), factor_schema
    )
    users = (
        relevant.join(user_map, "user_id", "left")
        .withColumnRenamed("idx", "uidx")
        .join(factors, "uidx", "left")
        .join(seen, "user_id", "left")
        .withColumn("key", F.monotonically_increasing_id())
        .cache()
    )
    broadcast = spark.sparkContext.broadcast(V)
    out_schema = T.StructType(
        [
            T.StructField("key", T.LongType(), False),
            T.StructField("recommended", T.ArrayType(T.IntegerType()), False),
        ]
    )
    lists = users.select("key", "f", "seen").mapInPandas(_top_k_batches(broadcast, k), out_schema)
    ranked = users.select("key", "user_id", "n_test", "relevant").join(lists, "key")

    kk = F.lit(k)
    cap = F.least(kk, F.col("n_test"))
    hit = F.transform("recommended", lambda x: F.array_contains("relevant", x))
    scored = ranked.withColumn("hit", hit).withColumn("hits", F.size(F.filter("hit", lambda h: h)))
    # sum_i rel_i / log2(i + 1), i the 1-based rank
    dcg = F.aggregate(
        F.transform("hit", lambda h, j: F.when(h, 1.0 / F.log2(j + 2.0)).otherwise(0.0)),
        F.lit(0.0),
        lambda acc, x: acc + x,
    )
    idcg = F.aggregate(
        F.sequence(F.lit(1), cap), F.lit(0.0), lambda acc, j: acc + 1.0 / F.log2(j + 1.0)
    )
    # sum_i rel_i * (relevant in the top i) / i, walking the list with (hits so far, rank, sum)
    start = F.struct(F.lit(0).alias("c"), F.lit(0).alias("i"), F.lit(0.0).alias("s"))

    def step(acc, h):
        c = acc["c"] + F.when(h, 1).otherwise(0)
        i = acc["i"] + 1
        s = acc["s"] + F.when(h, c / i.cast("double")).otherwise(0.0)
        return F.struct(c.alias("c"), i.alias("i"), s.alias("s"))

    ap = F.aggregate("hit", start, step, lambda acc: acc["s"])
    first = F.array_position("hit", True)
    per_user = scored.select(
        "user_id",
        "n_test",
        "recommended",
        (dcg / idcg).alias("ndcg"),
        F.when(F.col("hits") > 0, 1.0).otherwise(0.0).alias("hit_rate"),
        (F.col("hits") / kk).alias("precision"),
        (F.col("hits") / cap).alias("recall"),
        (ap / cap).alias("map"),
        F.when(first > 0, 1.0 / first).otherwise(0.0).alias("mrr"),
    ).cache()
    names = list(PER_USER_METRICS)
    summary = per_user.agg(
        F.count(F.lit(1)).alias("n_users"), *[F.avg(n).alias(n) for n in names]
    ).first()
    shown = per_user.select(F.explode("recommended").alias("i")).agg(F.countDistinct("i")).first()
    n_users = int(summary["n_users"])
    metrics = {f"{n}@{k}": float(summary[n]) if n_users else float("nan") for n in names}
    metrics[f"coverage@{k}"] = float(shown[0]) / n_items if n_users else float("nan")
    users.unpersist()
    broadcast.unpersist()
    return SparkEvaluation(
        k=k, metrics=metrics, n_users=n_users, n_items=n_items, per_user=per_user
    )
