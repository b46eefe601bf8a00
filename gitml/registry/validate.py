"""Validation of record files and of the records on gitml's refs.

Three levels, each reported as ``InvalidRecord`` problems naming the ref or
file, the field and the reason:

- schema: every file against its JSON Schema (``schemas.kind_of``);
- references: a record's name and number match where it lies; a declared
  version exists, is not DELETED, is the version the declaration names by
  digest, and its digest matches its run's manifest; a version's run and run
  commit exist; a stage's weights sum to 100;
- policy (``policy.PolicyCheck``): the last change of a stage branch, a
  proposal against its stage, or a stage file about to be committed.

Nothing here writes to the repository; ``tip`` views let the pre-receive hook
check refs as they will be once a push lands.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from gitml.errors import GitmlError, InvalidInput, InvalidRecord, NotARepository, NotFound
from gitml.format import config as config_file
from gitml.format import layout, readers, schemas
from gitml.format.layout import (
    EXPERIMENT_FILE,
    EXPERIMENTS,
    GITML,
    MANIFEST_FILE,
    MODEL_FILE,
    MODELS,
    PROPOSALS,
    RUN_FILE,
    RUNS,
    STAGE_NAME,
    STAGES,
    version_path,
)
from gitml.format.records import (
    ArtifactManifest,
    Config,
    Experiment,
    ModelVersion,
    RegisteredModel,
    Run,
    StageDeclaration,
    parse,
)
from gitml.git.store import Snapshot, Store
from gitml.projects.spec import MLproject, missing_environment_file
from gitml.registry import declarations
from gitml.registry.declarations import other_version
from gitml.registry.policy import PolicyCheck, Tips
from gitml.registry.versions import model_digest, model_files

_REF_FILES = {
    RUNS: (RUN_FILE, MANIFEST_FILE),
    EXPERIMENTS: (EXPERIMENT_FILE,),
}
_STAGE = re.compile(STAGE_NAME)


def load_config(store: Store) -> Config:
    """The project's settings: ``.gitml.yaml`` in the work tree, or in a bare
    repository the one committed at HEAD (its default branch); else the defaults."""
    if not store.bare:
        return config_file.load(store.root)
    head = store.tip("HEAD")
    data = store.snapshot(head).read(config_file.FILENAME) if head else None
    if data is None:
        return Config()
    return parse(Config, data, where="HEAD", path=config_file.FILENAME)


# -- files ---------------------------------------------------------------------------


def validate_files(paths: Iterable[Path]) -> list[InvalidRecord]:
    """Files whose name or place gitml knows are checked; any other file is skipped.

    A stage declaration (``models/<name>.yaml``) in the work tree of a
    repository is also checked against that repository: its weights for the
    checked-out stage branch, the versions it declares, and the policy.
    """
    problems: list[InvalidRecord] = []
    repos: dict[Path, tuple[Store, Config] | None] = {}
    for path in paths:
        if not path.is_file():
            reason = "no such file" if not path.exists() else "not a file"
            problems.append(InvalidRecord("", str(path), "(document)", reason))
            continue
        located = _locate(path, repos)
        relative = located[2] if located else _posix(path)
        kind = schemas.kind_of(relative)
        if kind is None:
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(InvalidRecord("", str(path), "(document)", exc.strerror or str(exc)))
            continue
        found = schemas.check_bytes(kind, data, where="", path=str(path))
        problems.extend(found)
        if found:
            continue
        if kind == "model-version":
            problems.extend(_version_file(path, data))
        elif kind == "MLproject":
            problems.extend(_project_file(path, data))
        elif kind == "stage" and located is not None:
            store, config, _ = located
            problems.extend(_work_tree_declaration(store, config, path, data))
    return problems


def _posix(path: Path) -> str:
    return path.as_posix()


def _locate(
    path: Path, repos: dict[Path, tuple[Store, Config] | None]
) -> tuple[Store, Config, str] | None:
    """The repository whose work tree holds ``path``, its config and the path inside it."""
    folder = path.resolve().parent
    if folder not in repos:
        try:
            store = Store.discover(folder)
        except NotARepository:
            repos[folder] = None
        else:
            repos[folder] = None if store.bare else (store, _work_tree_config(store))
    found = repos[folder]
    if found is None:
        return None
    store, config = found
    try:
        inside = path.resolve().relative_to(store.root.resolve())
    except ValueError:
        return None
    return store, config, inside.as_posix()


def _work_tree_config(store: Store) -> Config:
    """The settings a file in ``store``'s work tree is checked with.

    A stage branch's tree holds only ``models/``, so on one the settings come
    from the default branch (``origin/HEAD``, else ``main`` or ``master``).
    A malformed ``.gitml.yaml`` counts as the defaults here: the file is
    reported on its own when it is among the files checked.
    """
    try:
        if (store.root / config_file.FILENAME).exists() or _checked_out_stage(store)[0] is None:
            return config_file.load(store.root)
        for ref in ("refs/remotes/origin/HEAD", "refs/heads/main", "refs/heads/master"):
            tip = store.tip(ref)
            data = store.snapshot(tip).read(config_file.FILENAME) if tip else None
            if data is not None:
                return parse(Config, data, where=ref, path=config_file.FILENAME)
    except GitmlError:
        pass
    return Config()


def _version_file(path: Path, data: bytes) -> list[InvalidRecord]:
    version = parse(ModelVersion, data, where="", path=str(path))
    number = path.name[: -len(".yaml")]
    if str(version.version) != number:
        reason = f"{version.version} does not match the file name {path.name}"
        return [InvalidRecord("", str(path), "version", reason)]
    return []


def _project_file(path: Path, data: bytes) -> list[InvalidRecord]:
    try:
        spec = parse(MLproject, data, where="", path=str(path))
    except InvalidRecord as exc:
        return [exc]
    missing = missing_environment_file(spec, path.resolve().parent)
    return [] if missing is None else [InvalidRecord("", str(path), *missing)]


def _checked_out_stage(store: Store) -> tuple[str | None, bool]:
    """(stage, is a proposal) of the branch checked out in ``store``'s work tree."""
    dotgit = store.root / ".git"
    head_file = dotgit / "HEAD"
    if dotgit.is_file():  # a linked work tree: ".git" names its own git dir
        text = dotgit.read_text().strip()
        if text.startswith("gitdir:"):
            head_file = (store.root / text[len("gitdir:") :].strip()) / "HEAD"
    try:
        head = head_file.read_text().strip()
    except OSError:
        return None, False
    return _stage_of(head.removeprefix("ref: "))


def _stage_of(ref: str) -> tuple[str | None, bool]:
    """(stage, is a proposal) a branch name stands for; (None, False) for any other ref."""
    if ref.startswith(PROPOSALS):
        stage = ref[len(PROPOSALS) :].split("/", 1)[0]
        return (stage, True) if _STAGE.match(stage) else (None, False)
    if ref.startswith(STAGES):
        stage = ref[len(STAGES) :]
        return (stage, False) if _STAGE.match(stage) and "/" not in stage else (None, False)
    return None, False


def _work_tree_declaration(
    store: Store, config: Config, path: Path, data: bytes
) -> list[InvalidRecord]:
    stage, proposal = _checked_out_stage(store)
    model = path.name[: -len(".yaml")]
    checker = Validator(store, config)
    problems = checker.declaration("", str(path), data, stage or "", model)
    if problems or stage is None or stage not in config.stages:
        return problems
    declared = parse(StageDeclaration, data, where="", path=str(path))
    base = store.tip(declarations.branch(stage)) if proposal else store.tip("HEAD")
    before = _declared_at(store, base, stage, model)
    author = None if proposal else store.identity.decode("utf-8", "replace")
    return checker.policy.change(stage, model, before, declared, author, where="")


def _declared_at(
    store: Store, commit: str | None, stage: str, model: str
) -> StageDeclaration | None:
    if commit is None:
        return None
    try:
        return declarations.declaration_at(store.snapshot(commit), stage, model)
    except GitmlError:
        return None  # a malformed declaration before the change declared nothing


# -- refs ----------------------------------------------------------------------------


def validate_refs(store: Store, config: Config | None = None) -> list[InvalidRecord]:
    """Every run, experiment, model, stage branch and proposal in ``store``."""
    checker = Validator(store, config if config is not None else load_config(store))
    return checker.all_refs()


def validate_ref(store: Store, name: str, config: Config | None = None) -> list[InvalidRecord]:
    """One ref (a stage or proposal branch, a model or run ref) or a commit, by name."""
    checker = Validator(store, config if config is not None else load_config(store))
    return checker.named(name)


class Validator:
    """Checks records in one repository, as ``tip`` says its refs are."""

    def __init__(self, store: Store, config: Config, *, tip: Tips | None = None) -> None:
        self.store = store
        self.config = config
        self.tip: Tips = tip or store.tip
        self.policy = PolicyCheck(store, config, tip=self.tip)
        self._references: dict[tuple[str, int], str | None] = {}
        self._digests: dict[tuple[str, str], str | None] = {}
        self._versions: dict[tuple[str, int], ModelVersion | None] = {}

    # -- whole refs ----------------------------------------------------------------

    def all_refs(self) -> list[InvalidRecord]:
        problems: list[InvalidRecord] = []
        for prefix in (RUNS, EXPERIMENTS, MODELS):
            for ref, commit in sorted(self.store.refs(prefix).items()):
                problems.extend(self.ref(ref, commit))
        for ref, commit in sorted(self.store.refs(STAGES).items()):
            problems.extend(self.ref(ref, commit))
        return problems

    def named(self, name: str) -> list[InvalidRecord]:
        """``name`` resolved as git would (full ref, branch, ``refs/gitml/…``) or a commit."""
        for ref in (name, f"refs/heads/{name}", f"{GITML}{name}", f"refs/remotes/{name}"):
            if ref.startswith("refs/") and (commit := self.store.tip(ref)) is not None:
                branch = ref.split("/", 3)[3] if ref.startswith("refs/remotes/") else ""
                if branch.startswith("gitml/"):
                    # origin/gitml/production is checked as gitml/production would be
                    return self.ref("refs/heads/" + branch, commit, name)
                return self.ref(ref, commit)
        try:
            commit = self.store.resolve(name)  # HEAD, a tag, a (short) sha
        except NotFound:
            raise NotFound(
                f"no ref or commit '{name}': give a branch (gitml/<stage>), "
                "a refs/gitml/ ref or a commit sha"
            ) from None
        return self.ref(self._guess_ref(commit, name), commit, name)

    def _guess_ref(self, commit: str, name: str) -> str:
        """The ref a bare commit belongs on, from its trailers (gitml writes them) or tree."""
        info = self.store.commit_info(commit)
        trailers = dict(layout.trailers(info.message))
        stage = trailers.get(layout.STAGE)
        if stage is not None:
            return PROPOSALS + f"{stage}/{commit}"  # checked against the stage, as a PR would be
        if layout.MODEL in trailers:
            return MODELS + trailers[layout.MODEL]
        if layout.RUN in trailers:
            return RUNS + trailers[layout.RUN]
        raise InvalidInput(
            f"commit {name} has no Gitml-Stage, Gitml-Model or Gitml-Run trailer; "
            "name the ref instead (gitml/<stage>, refs/gitml/models/<name>, ...)"
        )

    def ref(
        self, ref: str, commit: str, where: str | None = None, *, policy: bool = True
    ) -> list[InvalidRecord]:
        """The records at ``commit`` as the content of ``ref``; for a stage branch also
        the policy of its last change, for a proposal the policy against its stage."""
        where = where or ref
        if ref.startswith((RUNS, EXPERIMENTS)):
            return self._run_or_experiment(ref, commit, where)
        if ref.startswith(MODELS):
            return self.model_ref(ref[len(MODELS) :], commit, where)
        stage, proposal = _stage_of(ref)
        if stage is None:
            if ref.startswith(STAGES):
                reason = "not a stage branch: use gitml/<stage> or gitml/proposals/<stage>/<name>"
                return [InvalidRecord(where, "(branch)", "(ref)", reason)]
            return []
        if stage not in self.config.stages:
            reason = (
                f"'{stage}' is not one of this project's stages ({', '.join(self.config.stages)}); "
                "list it under 'stages' in .gitml.yaml"
            )
            return [InvalidRecord(where, "(branch)", "(ref)", reason)]
        problems = self.stage_tree(where, self.store.snapshot(commit), stage)
        if problems or not policy:
            return problems
        if proposal:
            base = self.tip(declarations.branch(stage))
            return self.tree_policy(where, stage, base, commit, author=None)
        info = self.store.commit_info(commit)
        parent = info.parents[0] if info.parents else None
        return self.tree_policy(where, stage, parent, commit, author=info.author)

    def _run_or_experiment(self, ref: str, commit: str, where: str) -> list[InvalidRecord]:
        prefix = RUNS if ref.startswith(RUNS) else EXPERIMENTS
        snap = self.store.snapshot(commit)
        problems: list[InvalidRecord] = []
        for name in _REF_FILES[prefix]:
            data = snap.read(name)
            if data is None:
                if name != MANIFEST_FILE:
                    problems.append(InvalidRecord(where, name, "(document)", "file is missing"))
                continue
            found = schemas.check_bytes(schemas.KINDS[name], data, where=where, path=name)
            problems.extend(found)
            if found or name == MANIFEST_FILE:
                continue
            record: Run | Experiment = (
                parse(Run, data, where=where, path=name)
                if prefix == RUNS
                else parse(Experiment, data, where=where, path=name)
            )
            if record.id != ref[len(prefix) :]:
                reason = f"'{record.id}' does not match the ref name"
                problems.append(InvalidRecord(where, name, "id", reason))
        return problems

    # -- models --------------------------------------------------------------------

    def model_ref(self, name: str, commit: str, where: str) -> list[InvalidRecord]:
        snap = self.store.snapshot(commit)
        problems: list[InvalidRecord] = []
        data = snap.read(MODEL_FILE)
        if data is None:
            problems.append(InvalidRecord(where, MODEL_FILE, "(document)", "file is missing"))
        else:
            found = schemas.check_bytes("registered-model", data, where=where, path=MODEL_FILE)
            problems.extend(found)
            if not found:
                model = parse(RegisteredModel, data, where=where, path=MODEL_FILE)
                if model.name != name:
                    reason = f"'{model.name}' does not match the ref name"
                    problems.append(InvalidRecord(where, MODEL_FILE, "name", reason))
        for entry, is_dir, sha in sorted(snap.listdir(layout.VERSIONS_DIR)):
            path = f"{layout.VERSIONS_DIR}/{entry}"
            if is_dir or schemas.kind_of(path) != "model-version":
                reason = "not a version file: expected versions/<n>.yaml, n from 1"
                problems.append(InvalidRecord(where, path, "(document)", reason))
                continue
            problems.extend(self._version(name, path, self.store.read_blob(sha), where))
        return problems

    def _version(self, name: str, path: str, data: bytes, where: str) -> list[InvalidRecord]:
        found = schemas.check_bytes("model-version", data, where=where, path=path)
        if found:
            return found
        version = parse(ModelVersion, data, where=where, path=path)
        problems: list[InvalidRecord] = []

        def problem(field: str, reason: str) -> None:
            problems.append(InvalidRecord(where, path, field, reason))

        if version.name != name:
            problem("name", f"'{version.name}' does not match the ref name")
        if path != version_path(version.version):
            problem("version", f"{version.version} does not match the file name")
        run_tip = self.tip(RUNS + version.run_id)
        if run_tip is None:
            problem("run_id", f"no run {version.run_id} (ref {RUNS}{version.run_id})")
            return problems
        if not self.store.has_object(version.run_commit):
            problem("run_commit", f"commit {version.run_commit} is not in the repository")
            return problems
        if not self._in_run(run_tip, version.run_commit):
            problem(
                "run_commit",
                f"commit {version.run_commit} is not in the history of run {version.run_id}",
            )
            return problems
        reason = self._digest_problem(version, run_tip)
        if reason is not None:
            problem("digest", reason)
        return problems

    def _in_run(self, tip: str, commit: str) -> bool:
        """Whether ``commit`` is one of the run's own commits (first parents, down to the code)."""
        for info in self.store.history(tip, stop=lambda _: False):
            if info.sha == commit:
                return True
            if self.store.snapshot(info.sha).lookup(RUN_FILE) is None:
                return False  # walked out of the run into its code
        return False

    def _digest_problem(self, version: ModelVersion, run_tip: str) -> str | None:
        key = (run_tip, version.model_path)
        if key not in self._digests:
            data = self.store.snapshot(run_tip).read(MANIFEST_FILE)
            try:
                listed = (
                    parse(ArtifactManifest, data, where=RUNS + version.run_id, path=MANIFEST_FILE)
                    if data is not None
                    else ArtifactManifest()
                )
            except InvalidRecord as exc:
                self._digests[key] = None
                return f"the run's manifest is invalid ({exc})"
            self._digests[key] = model_digest(model_files(listed.artifacts, version.model_path))
        digest = self._digests[key]
        if digest is None or digest == version.digest:
            return None
        return (
            f"the files under '{version.model_path}' of run {version.run_id} do not match "
            f"the registered digest ({digest} != {version.digest})"
        )

    # -- stages --------------------------------------------------------------------

    def stage_tree(self, where: str, snap: Snapshot, stage: str) -> list[InvalidRecord]:
        problems: list[InvalidRecord] = []
        for entry, is_dir, sha in sorted(snap.listdir(layout.DECLARATIONS_DIR)):
            path = f"{layout.DECLARATIONS_DIR}/{entry}"
            model = None if is_dir else layout.declared_model(entry)
            if model is None:
                reason = "not a declaration: expected models/<name>.yaml"
                problems.append(InvalidRecord(where, path, "(document)", reason))
                continue
            problems.extend(self.declaration(where, path, self.store.read_blob(sha), stage, model))
        return problems

    def declaration(
        self, where: str, path: str, data: bytes, stage: str, model: str
    ) -> list[InvalidRecord]:
        """Schema, model name, weights (for ``stage``; '' when unknown) and references."""
        found = schemas.check_bytes("stage", data, where=where, path=path)
        if found:
            return found
        declared = parse(StageDeclaration, data, where=where, path=path)
        problems: list[InvalidRecord] = []
        if declared.model != model:
            mismatch = f"'{declared.model}' does not match the file name {model}.yaml"
            problems.append(InvalidRecord(where, path, "model", mismatch))
        weights = declarations.weights_problem(declared, stage, self.config)
        if weights is not None:
            problems.append(InvalidRecord(where, path, "versions", weights))
        for i, served in enumerate(declared.versions):
            reason = self.reference_problem(declared.model, served.version)
            if reason is not None:
                problems.append(InvalidRecord(where, path, f"versions.{i}.version", reason))
                continue
            version = self._versions.get((declared.model, served.version))
            if version is not None:
                reason = other_version(stage, declared.model, served, version)
            if reason is not None:
                problems.append(InvalidRecord(where, path, f"versions.{i}.digest", reason))
        return problems

    def reference_problem(self, model: str, number: int) -> str | None:
        """Why ``models:/<model>/<number>`` cannot be served, or None."""
        key = (model, number)
        if key in self._references:
            return self._references[key]
        reason: str | None = None
        model_tip = self.tip(MODELS + model)
        data = self.store.snapshot(model_tip).read(version_path(number)) if model_tip else None
        if model_tip is None:
            reason = f"no registered model '{model}' ({MODELS}{model})"
        elif data is None:
            reason = f"model '{model}' has no version {number}"
        else:
            try:
                version = readers.parse_version(data, model, number)
            except InvalidRecord as exc:
                version = None
                reason = f"version {number} of '{model}' is invalid: {exc}"
            self._versions[key] = version
            if version is not None and version.status == "DELETED":
                reason = f"version {number} of '{model}' was deleted"
            elif version is not None:
                run_tip = self.tip(RUNS + version.run_id)
                if run_tip is None:
                    reason = f"version {number} of '{model}': its run {version.run_id} is missing"
                else:
                    digest = self._digest_problem(version, run_tip)
                    if digest is not None:
                        reason = f"version {number} of '{model}': {digest}"
        self._references[key] = reason
        return reason

    def tree_policy(
        self, where: str, stage: str, base: str | None, commit: str, *, author: str | None
    ) -> list[InvalidRecord]:
        """The policy for every model ``commit``'s tree declares differently from ``base``'s."""
        after = declarations.declarations(self.store, stage, commit)
        try:
            before = declarations.declarations(self.store, stage, base) if base else {}
        except GitmlError:
            before = {}  # a malformed tree before: everything counts as new
        problems: list[InvalidRecord] = []
        for model in sorted(after.keys() | before.keys()):
            old, new = before.get(model), after.get(model)
            if old != new:
                problems.extend(self.policy.change(stage, model, old, new, author, where=where))
        return problems

    def stage_commits(self, ref: str, stage: str, commits: list[str]) -> list[InvalidRecord]:
        """The policy for each of ``commits`` (oldest first), with its own author."""
        problems: list[InvalidRecord] = []
        for commit in commits:
            info = self.store.commit_info(commit)
            parent = info.parents[0] if info.parents else None
            where = f"{ref}@{commit[:12]}"
            try:
                problems.extend(self.tree_policy(where, stage, parent, commit, author=info.author))
            except InvalidRecord as exc:
                problems.append(exc)  # a malformed intermediate declaration
        return problems
