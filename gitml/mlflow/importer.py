"""Copy an MLflow store into a gitml repository: ``gitml import mlflow SOURCE``.

MLflow's own client reads the source (any tracking URI it accepts), so this
module follows MLflow's meanings rather than its storage formats; gitml's
``Client``, ``Registry`` and ``Stages`` write, so the result is made of the
same commits gitml makes itself. Ids are kept (run ids, experiment ids,
version numbers), so ``runs:/<id>/...`` and ``models:/<name>/<n>`` URIs
written against MLflow resolve in gitml.

Each run is written as one commit holding its record, every metric point and
its artifacts, so an import killed at any moment leaves every run either
complete or absent, and the next import (which compares every run with what
the repository holds) carries on from there. MLflow 3 keeps a logged model's
files outside its run; they join the run's artifacts under the model's name
(where MLflow 2 kept them, so ``runs:/<id>/model`` resolves), or under
``models/<model id>`` when that path is taken.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import sqlite3
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.errors import GitmlError, InvalidInput, NotFound
from gitml.format.records import (
    Experiment,
    MetricValue,
    Run,
    latest,
    validate,
)
from gitml.tracking.entities import Metric

if TYPE_CHECKING:
    from gitml.artifacts.base import BucketStore
    from gitml.registry.stages import Stages
    from gitml.tracking.client import Client

# MLflow 2's stages that are stage branches of the same name, lowercased.
_SERVING_STAGES = ("Staging", "Production")
_HEX40 = frozenset("0123456789abcdef")
_PAGE = 1000
# Runs whose metric histories are read together: MLflow's server takes at most
# 100 run ids in one get-history-bulk request.
_BATCH = 100
# The most points that request answers; a full answer may have left some out.
_BULK_POINTS = 25000

History = dict[str, list[Metric]]  # metric key -> every point, in the source's order

Progress = Callable[[int, int], None]


@dataclass
class Counts:
    imported: int = 0
    updated: int = 0
    skipped: int = 0


@dataclass
class ImportSummary:
    """What an import wrote (or, with ``dry_run``, would write) and what it left as it was."""

    dry_run: bool = False
    experiments: Counts = field(default_factory=Counts)
    runs: Counts = field(default_factory=Counts)
    metrics: Counts = field(default_factory=Counts)  # metric points
    artifacts: Counts = field(default_factory=Counts)  # files
    models: Counts = field(default_factory=Counts)
    versions: Counts = field(default_factory=Counts)
    stages: Counts = field(default_factory=Counts)  # stage and alias assignments
    problems: list[str] = field(default_factory=list)

    def to_plain(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dry_run": self.dry_run}
        for name in ("experiments", "runs", "metrics", "artifacts", "models", "versions", "stages"):
            counts: Counts = getattr(self, name)
            out[name] = {
                "imported": counts.imported,
                "updated": counts.updated,
                "skipped": counts.skipped,
            }
        out["problems"] = list(self.problems)
        return out


def import_mlflow(
    source: str,
    client: Client,
    *,
    artifacts_from: str | None = None,
    experiments: Sequence[str] = (),
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportSummary:
    """Copy the MLflow store at ``source`` into ``client``'s repository (see the module).

    ``experiments`` (names) limits the import to those; ``artifacts_from``
    is where a store's ``mlflow-artifacts:`` locations are (the MLflow
    server's ``--artifacts-destination``); ``progress`` is called with
    (runs done, runs in all) after each run.
    """
    uri = check_source(source)
    if client.remote:
        raise InvalidInput(
            "gitml import mlflow writes to a repository directly: run it in the repository "
            "(or give its path as --tracking-uri), not through a gitml server"
        )
    mlflow = _mlflow()
    try:
        return _Importer(mlflow, uri, client, artifacts_from, dry_run).run(experiments, progress)
    except mlflow.exceptions.MlflowException as exc:
        raise GitmlError(f"MLflow store {source}: {_first_line(exc.message)}") from None


def _mlflow() -> Any:
    try:
        import mlflow
        import mlflow.exceptions
        from mlflow.store.artifact import artifact_repository_registry
    except ImportError:
        raise GitmlError(
            "importing from MLflow needs the mlflow package: pip install 'gitml[mlflow]'"
        ) from None
    del artifact_repository_registry
    return mlflow


def check_source(source: str) -> str:
    """The tracking URI for MLflow's client, once ``source`` is known to be a readable store.

    MLflow's client would create a new, empty store at a path that does not
    exist (and migrate a SQLite file that is not its own), so paths are
    checked here first and read-only.
    """
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "sqlite":
        _check_sqlite(source, parsed.path[1:] if parsed.path.startswith("//") else parsed.path)
        return source
    if parsed.scheme in ("http", "https"):
        _check_server(source)
        return source
    if parsed.scheme == "file" or parsed.scheme == "" or len(parsed.scheme) == 1:
        path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else source)
        _check_file_store(source, path)
        # MLflow 3.17 reads its file store only behind this switch ("maintenance mode").
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return path.resolve().as_uri()
    return source  # postgresql://, mysql://...: MLflow's client says what is wrong


def _check_sqlite(source: str, path: str) -> None:
    if not Path(path).is_file():
        raise NotFound(f"MLflow store {source}: no such file {path}")
    readonly = f"{Path(path).resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(readonly, uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(
            f"MLflow store {source}: {path} is not an SQLite database ({exc})"
        ) from None
    missing = {"experiments", "runs", "metrics", "alembic_version"} - tables
    if missing:
        raise InvalidInput(
            f"MLflow store {source}: {path} is an SQLite database but not MLflow's "
            f"(no table {', '.join(sorted(missing))})"
        )


def _check_server(source: str) -> None:
    url = source.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    request = urllib.request.Request(url)
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    elif user:
        secret = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(secret).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise InvalidInput(
            f"MLflow server {source} refused the request: HTTP {exc.code} {exc.reason}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InvalidInput(f"cannot reach an MLflow server at {source}: {reason}") from None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise InvalidInput(f"{source} answered, but not as an MLflow tracking server does")


def _check_file_store(source: str, path: Path) -> None:
    if not path.is_dir():
        raise NotFound(f"MLflow store {source}: no such folder {path}")
    if not (path / ".trash").is_dir() and not any(path.glob("*/meta.yaml")):
        raise InvalidInput(
            f"MLflow store {source}: {path} is not an MLflow file store "
            "(no experiment folder with a meta.yaml, no .trash)"
        )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "(no message)"


@dataclass
class _ModelPlace:
    """Where an MLflow 3 logged model's files go among its run's artifacts."""

    run_id: str
    path: str
    artifact_location: str


class _Importer:
    def __init__(
        self, mlflow: Any, uri: str, client: Client, artifacts_from: str | None, dry_run: bool
    ) -> None:
        from gitml.registry.versions import Registry

        self.mlflow = mlflow
        self.uri = uri
        self.remote = urllib.parse.urlparse(uri).scheme in ("http", "https")
        self.client = client
        self.registry = Registry(client)
        self.artifacts_from = artifacts_from
        self.summary = ImportSummary(dry_run=dry_run)
        self.dry_run = dry_run
        # mlflow-artifacts: locations are resolved against the global tracking URI.
        mlflow.set_tracking_uri(uri)
        self.mc = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.models: dict[str, _ModelPlace] = {}  # MLflow 3 model id -> its place
        self.runs: set[str] = set()  # runs of the experiments imported
        # Listed, not looked up: get_experiment("0") would create gitml's Default.
        self.here = {e.id: e for e in client.list_experiments(problems=[])}

    # -- the whole import -------------------------------------------------------

    def run(self, wanted: Sequence[str], progress: Progress | None) -> ImportSummary:
        from mlflow.entities import ViewType

        found = list(_pages(self.mc.search_experiments, view_type=ViewType.ALL, max_results=_PAGE))
        if wanted:
            names = {e.name for e in found}
            unknown = [name for name in wanted if name not in names]
            if unknown:
                raise NotFound(
                    f"MLflow store {self.uri} has no experiment named "
                    + ", ".join(repr(n) for n in unknown)
                )
            found = [e for e in found if e.name in wanted]
        ids = {e.experiment_id: self._experiment_id(e) for e in found}
        for exp in found:
            self._check_readable(exp.artifact_location, f"experiment '{exp.name}'")
        listed = []
        for exp in found:
            runs = list(
                _pages(
                    self.mc.search_runs,
                    experiment_ids=[exp.experiment_id],
                    run_view_type=ViewType.ALL,
                    max_results=_PAGE,
                    order_by=["attributes.start_time ASC"],
                )
            )
            listed.append((exp, runs))
            self.runs.update(r.info.run_id for r in runs)
        places: dict[str, list[tuple[str, _ModelPlace]]] = {}
        for exp, _runs in listed:
            self._import_experiment(exp, ids[exp.experiment_id])
            places.update(self._logged_models(exp.experiment_id))
        every = [run for _exp, runs in listed for run in runs]
        for done, (run, history) in enumerate(self._with_histories(every), 1):
            exp_id = ids[run.info.experiment_id]
            self._import_run(run, exp_id, history, places.get(run.info.run_id, []))
            if progress is not None:
                progress(done, len(every))
        self._import_models()
        return self.summary

    def _with_histories(self, runs: list[Any]) -> Iterator[tuple[Any, History]]:
        """Each run with its metric history, the next batch read while this one is written.

        Reading the source (SQL, files, HTTP) waits on I/O outside the GIL, so
        one reader thread overlaps it with the commits of the batch before.
        """
        batches = [runs[i : i + _BATCH] for i in range(0, len(runs), _BATCH)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-read") as reader:
            ahead = [reader.submit(self._histories, batch) for batch in batches[:1]]
            for n, batch in enumerate(batches):
                histories = ahead.pop().result()
                if n + 1 < len(batches):
                    ahead.append(reader.submit(self._histories, batches[n + 1]))
                for run in batch:
                    yield run, histories.get(run.info.run_id, {})

    def _histories(self, runs: list[Any]) -> dict[str, History]:
        """Every metric point of ``runs`` by run id, in as few reads as the store allows:
        one query for an SQL store, its files for a file store, bulk requests to a server."""
        store = self.mc._tracking_client.store
        sql = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
        if sql is not None and isinstance(store, sql.SqlAlchemyStore):
            return _sql_histories(store, runs)
        from mlflow.store.tracking.file_store import FileStore
        from mlflow.store.tracking.rest_store import RestStore

        if isinstance(store, FileStore):
            return _file_histories(store, runs)
        out = _rest_histories(store, runs) if isinstance(store, RestStore) else {}
        for run in runs:  # what no bulk read answered: one call per metric
            if run.info.run_id not in out:
                out[run.info.run_id] = {
                    key: [
                        Metric(key, float(m.value), int(m.timestamp), int(m.step))
                        for m in self.mc.get_metric_history(run.info.run_id, key)
                    ]
                    for key in sorted(run.data.metrics)
                }
        return out

    # -- experiments --------------------------------------------------------------

    def _experiment_id(self, exp: Any) -> str:
        """The gitml id of MLflow's experiment: its own, or that of gitml's of the same name."""
        here = self.here.get(str(exp.experiment_id))
        if here is not None and here.name == exp.name:
            return str(exp.experiment_id)
        named = self.client.get_experiment_by_name(exp.name)
        if named is not None:
            return named.id
        if here is not None:
            raise InvalidInput(
                f"MLflow experiment '{exp.name}' has id {exp.experiment_id}, which this "
                f"repository's experiment '{here.name}' has; rename one of them first"
            )
        return str(exp.experiment_id)

    def _import_experiment(self, exp: Any, exp_id: str) -> None:
        record = validate(
            Experiment,
            {
                "id": exp_id,
                "name": exp.name,
                "lifecycle_stage": exp.lifecycle_stage,
                "creation_time": exp.creation_time or exp.last_update_time or 0,
                "tags": dict(exp.tags),
            },
            where=f"MLflow experiment {exp.experiment_id}",
            path="experiment",
        )
        if exp_id != str(exp.experiment_id):
            self.summary.experiments.skipped += 1  # gitml's own experiment of that name
            return
        here = self.here.get(exp_id)
        if here == record:
            self.summary.experiments.skipped += 1
            return
        if here is None:
            self.summary.experiments.imported += 1
        else:
            self.summary.experiments.updated += 1
        if not self.dry_run:
            self.client.import_experiment(record)

    # -- runs -----------------------------------------------------------------------

    def _import_run(
        self, run: Any, exp_id: str, history: History, models: list[tuple[str, _ModelPlace]]
    ) -> None:
        info = run.info
        run_id = info.run_id
        record = self._run_record(run, exp_id, history)
        here = self._existing(run_id)
        files = self._artifact_listing(info.artifact_uri, models)
        if here is None:
            new_points, new_files = history, files
        else:
            new_points = {}
            for key, points in history.items():
                missing = _missing(points, here[1].get(key, []))
                if missing:
                    new_points[key] = missing
            known = here[2]
            new_files = {p: f for p, f in files.items() if known.get(p) != f[1]}
        count = sum(len(v) for v in new_points.values())
        self.summary.metrics.imported += count
        self.summary.metrics.skipped += sum(len(v) for v in history.values()) - count
        self.summary.artifacts.imported += len(new_files)
        self.summary.artifacts.skipped += len(files) - len(new_files)
        if here is not None and here[0] == record and not new_points and not new_files:
            self.summary.runs.skipped += 1
            return
        if here is None:
            self.summary.runs.imported += 1
        else:
            self.summary.runs.updated += 1
        if self.dry_run:
            return
        with tempfile.TemporaryDirectory(prefix="gitml-import-") as tmp:
            items = [
                (path, self._download(root, rel, Path(tmp) / str(n)))
                for n, (path, (root, _size, rel)) in enumerate(sorted(new_files.items()))
            ]
            try:
                self.client.import_run(record, new_points, items)
            except GitmlError as exc:
                raise type(exc)(f"MLflow run {run_id}: {exc}") from None

    def _run_record(self, run: Any, exp_id: str, history: dict[str, list[Metric]]) -> Run:
        info, tags = run.info, dict(run.data.tags)
        latest_values: dict[str, Any] = {}
        for key, points in history.items():
            # ``latest`` orders by (step, timestamp) first: only the points at the
            # greatest of those need its value rule (and a record each).
            last = max(((p.step, p.timestamp) for p in points), default=None)
            best: MetricValue | None = None
            for p in points:
                if (p.step, p.timestamp) == last:
                    point = MetricValue(value=p.value, step=p.step, timestamp=p.timestamp)
                    best = latest(best, point)
            if best is not None:
                latest_values[key] = best.to_plain()
        commit = tags.get("mlflow.source.git.commit", "")
        raw = {
            "id": info.run_id,
            "experiment_id": exp_id,
            "name": info.run_name or tags.get("mlflow.runName") or info.run_id,
            "status": info.status,
            "lifecycle_stage": info.lifecycle_stage,
            "start_time": info.start_time or 0,
            "end_time": info.end_time,
            "user": info.user_id or tags.get("mlflow.user") or "unknown",
            "parent_run_id": tags.get("mlflow.parentRunId"),
            "source": {
                "commit": commit if len(commit) == 40 and set(commit) <= _HEX40 else None,
                "branch": tags.get("mlflow.source.git.branch"),
            },
            "params": dict(run.data.params),
            "tags": tags,
            "metrics": latest_values,
        }
        return validate(Run, raw, where=f"MLflow run {info.run_id}", path="run")

    def _existing(self, run_id: str) -> tuple[Run, dict[str, list[Metric]], dict[str, int]] | None:
        """The run as this repository holds it: record, metric history, artifact sizes."""
        try:
            run = self.client.get_run(run_id)
        except NotFound:
            return None
        history = {key: self.client.get_metric_history(run_id, key) for key in run.metrics}
        sizes = {a.path: a.size for a in self.client.list_artifacts(run_id)}
        return run, history, sizes

    # -- artifacts --------------------------------------------------------------------

    def _check_readable(self, location: str | None, what: str) -> None:
        if (
            location
            and location.startswith("mlflow-artifacts:")
            and not self.remote
            and self.artifacts_from is None
        ):
            raise InvalidInput(
                f"{what} keeps its artifacts at {location}, which only the MLflow server "
                "that wrote them can read: import from that server's http:// URI, or give "
                "--artifacts-from with its --artifacts-destination (a folder or URI)"
            )

    def _readable(self, location: str) -> str:
        """``location`` as MLflow's artifact repositories can read it from here."""
        if location.startswith("mlflow-artifacts:") and not self.remote:
            self._check_readable(location, "a run")
            assert self.artifacts_from is not None
            rest = urllib.parse.urlparse(location).path.lstrip("/")
            return self.artifacts_from.rstrip("/") + "/" + rest
        return location

    def _artifact_listing(
        self, run_location: str, models: list[tuple[str, _ModelPlace]]
    ) -> dict[str, tuple[str, int, str]]:
        """Every artifact file to import: gitml path -> (MLflow location, size, path there)."""
        files: dict[str, tuple[str, int, str]] = {}
        root = self._readable(run_location)
        for rel, size in _walk(self._repository(root)):
            files[rel] = (root, size, rel)
        for _model_id, place in models:
            where = self._readable(place.artifact_location)
            for rel, size in _walk(self._repository(where)):
                files[f"{place.path}/{rel}"] = (where, size, rel)
        return files

    def _repository(self, location: str) -> Any:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        from gitml.artifacts import bucket_store

        # Google Cloud Storage and Azure locations are read with gitml's own clients, which
        # find credentials and emulators as an artifact_store of that URL does.
        if location.partition("://")[0].lower() in ("gs", "wasbs", "wasb", "abfss", "abfs"):
            store = bucket_store(location)
            assert store is not None
            return _BucketFolder(store)
        return get_artifact_repository(location)

    def _download(self, root: str, rel: str, into: Path) -> Path:
        into.mkdir(parents=True)
        return Path(self._repository(root).download_artifacts(rel, str(into)))

    def _logged_models(self, experiment_id: str) -> dict[str, list[tuple[str, _ModelPlace]]]:
        """MLflow 3's logged models of an experiment by run, each with its place in the run."""
        try:
            found = list(
                _pages(
                    self.mc.search_logged_models, experiment_ids=[experiment_id], max_results=100
                )
            )
        except self.mlflow.exceptions.MlflowException:
            return {}  # a store from before MLflow 3 has none
        by_run: dict[str, list[Any]] = {}
        for model in found:
            if model.source_run_id:
                by_run.setdefault(model.source_run_id, []).append(model)
        out: dict[str, list[tuple[str, _ModelPlace]]] = {}
        for run_id, models in by_run.items():
            taken: set[str] = set()
            for model in sorted(models, key=lambda m: (m.creation_timestamp or 0, m.model_id)):
                name = model.name or ""
                free = name and name not in taken and not name.startswith("models/")
                path = name if free else f"models/{model.model_id}"
                taken.add(path)
                place = _ModelPlace(run_id, path, model.artifact_location)
                self.models[model.model_id] = place
                out.setdefault(run_id, []).append((model.model_id, place))
        return out

    # -- the registry --------------------------------------------------------------------

    def _import_models(self) -> None:
        from gitml.registry.stages import Stages

        found = list(_pages(self.mc.search_registered_models, max_results=100))
        for model in sorted(found, key=lambda m: m.name):
            versions = list(
                _pages(
                    self.mc.search_model_versions,
                    filter_string=f"name = '{_quoted(model.name)}'",
                    max_results=_PAGE,
                )
            )
            sources = {}
            for version in versions:
                where = self._version_source(version)
                if isinstance(where, str):
                    self.summary.problems.append(
                        f"model '{model.name}' version {version.version}: {where}"
                    )
                    self.summary.versions.skipped += 1
                else:
                    sources[int(version.version)] = (version, where)
            if not sources:
                continue
            try:
                self._import_model(model)
            except InvalidInput as exc:
                self.summary.problems.append(f"model '{model.name}': {exc}")
                self.summary.models.skipped += 1
                self.summary.versions.skipped += len(sources)
                continue
            for number in sorted(sources):
                version, (run_id, path) = sources[number]
                self._import_version(model.name, version, run_id, path)
            aliases = {a.lower(): int(v) for a, v in (model.aliases or {}).items()}
            config = self.client.config
            extra = [a for a in aliases if a not in config.stages]
            # An alias is a stage branch the project's settings do not list yet;
            # `gitml stage` commands refuse it until they do.
            self.summary.problems += [
                f"alias '{a}' of model '{model.name}' is the stage branch gitml/{a}: list "
                f"'{a}' under 'stages' in .gitml.yaml to use gitml stage commands on it"
                for a in extra
            ]
            stages = Stages(
                self.registry, config.model_copy(update={"stages": [*config.stages, *extra]})
            )
            self._import_stages(stages, model.name, [v for v, _ in sources.values()], aliases)

    def _import_model(self, model: Any) -> None:
        try:
            here = self.registry.get_model(model.name)
        except NotFound:
            here = None
        tags = dict(model.tags or {})
        if here is None:
            self.summary.models.imported += 1
            if not self.dry_run:
                self.registry.create_model(model.name, model.description or None, tags)
            else:
                from gitml.registry.versions import check_name

                check_name(model.name)
        elif (here.description or None) != (model.description or None) or here.tags != tags:
            self.summary.models.updated += 1
            if not self.dry_run:
                self.registry.update_model(
                    model.name, description=model.description or "", set_tags=tags
                )
        else:
            self.summary.models.skipped += 1

    def _version_source(self, version: Any) -> tuple[str, str] | str:
        """(run id, path among its artifacts) of a version's files, or why there is none."""
        source = version.source or ""
        if source.startswith("models:/m-") or getattr(version, "model_id", None):
            model_id = getattr(version, "model_id", None) or source[len("models:/") :]
            place = self.models.get(model_id.rstrip("/"))
            if place is None:
                return f"its logged model {model_id} is not in an imported experiment"
            return place.run_id, place.path
        if source.startswith("runs:/"):
            run_id, _, path = source[len("runs:/") :].partition("/")
            if run_id in self.runs and path:
                return run_id, path.strip("/")
        elif version.run_id in self.runs:
            root = self.mc.get_run(version.run_id).info.artifact_uri.rstrip("/") + "/"
            if source.startswith(root):
                return version.run_id, source[len(root) :].strip("/")
        return f"its source {source} is not among the artifacts of an imported run"

    def _import_version(self, name: str, version: Any, run_id: str, path: str) -> None:
        number = int(version.version)
        tags = dict(version.tags or {})
        description = version.description or None
        try:
            here = self.registry.get_version(name, number)
        except NotFound:
            here = None
        if here is None:
            if not self.dry_run:
                try:
                    self.registry.register(
                        f"runs:/{run_id}/{path}",
                        name,
                        description=description,
                        tags=tags,
                        version=number,
                        creation_time=version.creation_timestamp,
                    )
                except InvalidInput as exc:  # no model there, a tag gitml refuses...
                    self.summary.problems.append(f"model '{name}' version {number}: {exc}")
                    self.summary.versions.skipped += 1
                    return
            self.summary.versions.imported += 1
        elif (here.description or None) != description or here.tags != tags:
            self.summary.versions.updated += 1
            if not self.dry_run:
                self.registry.update_version(
                    name, number, description=description or "", set_tags=tags
                )
        else:
            self.summary.versions.skipped += 1

    def _import_stages(
        self, stages: Stages, name: str, versions: list[Any], aliases: dict[str, int]
    ) -> None:
        """MLflow 2 stages (in the order versions entered them), then aliases, as assignments."""
        from gitml.registry.declarations import check_name as check_stage
        from gitml.registry.declarations import read_declaration

        wanted: list[tuple[str, int]] = [
            (v.current_stage.lower(), int(v.version))
            for v in sorted(versions, key=lambda v: (v.last_updated_timestamp or 0, int(v.version)))
            if v.current_stage in _SERVING_STAGES
        ]
        wanted += sorted(aliases.items())
        for stage, number in wanted:
            try:
                check_stage(stage)
                declared = read_declaration(self.client.store, stage, name)
                if declared is not None and number in [v.version for v in declared.versions]:
                    self.summary.stages.skipped += 1
                    continue
                if not self.dry_run:
                    stages.assign(name, number, stage)
                self.summary.stages.imported += 1
            except GitmlError as exc:
                self.summary.problems.append(f"model '{name}' v{number} on '{stage}': {exc}")
                self.summary.stages.skipped += 1
        archived = [int(v.version) for v in versions if v.current_stage == "Archived"]
        archive = stages.config.archive_stage
        if not archived or archive is None:
            return
        declared = read_declaration(self.client.store, archive, name)
        listed = [v.version for v in declared.versions] if declared is not None else []
        new = sorted(n for n in archived if n not in listed)
        self.summary.stages.skipped += len(archived) - len(new)
        self.summary.stages.imported += len(new)
        if new and not self.dry_run:
            stages.archive(name, new)


class _BucketFolder:
    """What the import asks of an MLflow artifact repository, over a bucket store's
    objects by name (MLflow's layout, not gitml's content addressing)."""

    def __init__(self, store: BucketStore) -> None:
        self.store = store

    def list_artifacts(self, path: str | None = None) -> list[Any]:
        from mlflow.entities import FileInfo

        # Every file below ``path`` in one listing: there is no folder to descend into.
        return [FileInfo(rel, False, size) for rel, size in self.store.objects(path or "")]

    def download_artifacts(self, artifact_path: str, dst_path: str) -> str:
        dest = Path(dst_path) / artifact_path
        self.store.fetch(artifact_path, dest)
        return str(dest)


def _sql_histories(store: Any, runs: list[Any]) -> dict[str, History]:
    """The metric points of ``runs`` from MLflow's SQL store, in one query on its own tables.

    Columns rather than ORM objects, in the order of MLflow's ``get_metric_history``
    (a NaN is stored as 0 beside ``is_nan``, as its ``to_mlflow_entity`` reads it).
    """
    from mlflow.store.tracking.dbmodels.models import SqlMetric

    out: dict[str, History] = {}
    with store.ManagedSessionMaker() as session:
        rows = (
            session.query(
                SqlMetric.run_uuid,
                SqlMetric.key,
                SqlMetric.value,
                SqlMetric.timestamp,
                SqlMetric.step,
                SqlMetric.is_nan,
            )
            .filter(SqlMetric.run_uuid.in_([r.info.run_id for r in runs]))
            .order_by(
                SqlMetric.run_uuid,
                SqlMetric.key,
                SqlMetric.timestamp,
                SqlMetric.step,
                SqlMetric.value,
            )
            .all()
        )
    for run_id, key, value, timestamp, step, is_nan in rows:
        number = math.nan if is_nan else float(value)
        out.setdefault(run_id, {}).setdefault(key, []).append(
            Metric(key, number, int(timestamp), int(step))
        )
    return out


def _file_histories(store: Any, runs: list[Any]) -> dict[str, History]:
    """The metric points of ``runs`` read from MLflow's file store as it lays them out:
    ``<experiment>/<run>/metrics/<key>``, a line per point parsed by MLflow's own reader.

    MLflow's ``get_metric_history`` looks for the run's folder among every
    experiment's on each call; the run's experiment is known here.
    """
    out: dict[str, History] = {}
    experiments: dict[str, Path] = {}
    for run in runs:
        info = run.info
        if info.experiment_id not in experiments:
            found = store._get_experiment_path(info.experiment_id, assert_exists=True)
            experiments[info.experiment_id] = Path(found)
        folder = experiments[info.experiment_id] / info.run_id / "metrics"
        history: History = {}
        for key in sorted(run.data.metrics):
            lines = (folder / key).read_text().splitlines()
            history[key] = [
                Metric(key, float(m.value), int(m.timestamp), int(m.step))
                for m in (
                    store._get_metric_from_line(info.run_id, key, line, info.experiment_id)
                    for line in lines
                    if line.strip()
                )
            ]
        out[info.run_id] = history
    return out


def _rest_histories(store: Any, runs: list[Any]) -> dict[str, History]:
    """The metric points of ``runs`` from an MLflow server, one request per metric key for
    up to 100 runs (its ``get-history-bulk``); runs left out when the server has no such
    route, or when an answer was cut at its limit."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    endpoint = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
    out: dict[str, History] = {r.info.run_id: {} for r in runs}
    keys = sorted({key for r in runs for key in r.data.metrics})
    for key in keys:
        having = sorted(r.info.run_id for r in runs if key in r.data.metrics)
        try:
            response = http_request(
                store.get_host_creds(),
                endpoint,
                "GET",
                params={"run_id": having, "metric_key": key, "max_results": _BULK_POINTS},
            )
            points = verify_rest_response(response, endpoint).json().get("metrics", [])
        except MlflowException:
            return {}
        if len(points) >= _BULK_POINTS:
            for run_id in having:
                out.pop(run_id, None)
            continue
        for point in points:
            if point["run_id"] in out:
                out[point["run_id"]].setdefault(key, []).append(
                    Metric(key, float(point["value"]), int(point["timestamp"]), int(point["step"]))
                )
    return out


def _pages(search: Callable[..., Any], **arguments: Any) -> Iterator[Any]:
    """Every item of a paged MLflow listing: ``search(**arguments, page_token=...)``."""
    token: str | None = None
    while True:
        page = search(**arguments, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _walk(repository: Any, path: str | None = None) -> Iterator[tuple[str, int]]:
    """(path, size) of every file below ``path`` of an MLflow artifact repository."""
    for info in repository.list_artifacts(path):
        if info.is_dir:
            yield from _walk(repository, info.path)
        else:
            yield info.path, int(info.file_size or 0)


def _missing(points: list[Metric], here: list[Metric]) -> list[Metric]:
    """The points of ``points`` that ``here`` lacks, counted as a multiset.

    A point is known by its step, timestamp and the repr of its value: NaN is
    not equal to itself, so it could never be found as a float, and its repr
    is always ``nan``. (Built inline: this runs for every point on a re-import.)
    """
    have = Counter([(p.step, p.timestamp, repr(p.value)) for p in here])
    out = []
    for p in points:
        key = (p.step, p.timestamp, repr(p.value))
        if have[key]:
            have[key] -= 1
        else:
            out.append(p)
    return out


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")
