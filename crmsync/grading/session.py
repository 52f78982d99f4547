"""The Spark session a grading runs in, with the errors a person can act on: PySpark missing, Java missing, a
master that does not answer."""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import TYPE_CHECKING

from crmsync.errors import ConfigError
from crmsync.grading.settings import SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

INSTALL_HINT = 'pip install "crmsync[spark]"'
JAVA_HINT = "install Java 17 or later (e.g. apt-get install default-jre-headless) or set JAVA_HOME"


def java_available() -> bool:
    """Whether a ``java`` the Spark launcher would start is there (``$JAVA_HOME/bin/java``, else on ``PATH``)."""
    home = os.environ.get("JAVA_HOME")
    if home:
        return os.access(os.path.join(home, "bin", "java"), os.X_OK)
    return shutil.which("java") is not None


def check_installed(cfg: SparkSettings) -> None:
    """Refuse to start without PySpark, or (for a local master, which runs Spark in a JVM here) without Java.

    Raises:
        ConfigError: naming what is missing, with the command that installs it.
    """
    if importlib.util.find_spec("pyspark") is None:
        raise ConfigError("grading.engine = 'spark' needs PySpark, which is not installed", hint=INSTALL_HINT)
    if not java_available():
        raise ConfigError("grading.engine = 'spark' needs Java, which is not installed here", hint=JAVA_HINT)


def spark_session(cfg: SparkSettings, timezone: str) -> SparkSession:
    """The active Spark session, else a new one for ``cfg`` (master, conf). Times without a zone in the lake are read
    in ``timezone`` (``sync.timezone``), as the connectors read them.

    Raises:
        ConfigError: PySpark or Java missing, or the session cannot start (the master's message).
    """
    check_installed(cfg)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.conf.set("spark.sql.session.timeZone", timezone)
        return active
    builder = SparkSession.builder.master(cfg.master).appName(cfg.app_name)
    builder = builder.config("spark.ui.showConsoleProgress", "false")  # no bars in crmsync's output
    for key, value in cfg.conf_values().items():
        builder = builder.config(key, value)
    builder = builder.config("spark.sql.session.timeZone", timezone)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the launcher's errors are of several kinds (Py4J, PySpark runtime, OS)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"grading.spark: Spark did not start at master {cfg.master!r}: {first}",
            hint="check grading.spark.master and grading.spark.conf; " + JAVA_HINT,
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    return session
