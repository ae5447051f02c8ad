"""Files attached to a study (the report, the front plot) in Optuna's artifact store, where
optuna-dashboard shows them.

The store is an :class:`optuna.artifacts.FileSystemArtifactStore` folder: ``--artifacts DIR``;
else ``$NASCONV_ARTIFACTS_DIR``; else ``artifacts/`` beside a SQLite database file; else
``studies/artifacts`` in the current folder (the weights folder's rule). The artifacts' metadata
lives in the study database, so a dashboard given the same folder lists and serves them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna

from nasconv.errors import StorageError
from nasconv.paths import os_problem
from nasconv.storage.database import parse_url

ARTIFACTS_DIR_ENV = "NASCONV_ARTIFACTS_DIR"


def artifacts_dir(storage: str, explicit: str | None = None) -> Path:
    """Where the artifacts of studies in ``storage`` are kept (see the module's rule)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ARTIFACTS_DIR_ENV):
        return Path(os.environ[ARTIFACTS_DIR_ENV]).expanduser()
    url = parse_url(storage)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).expanduser().parent / "artifacts"
    return Path("studies") / "artifacts"


def artifact_store(folder: Path, *, create: bool = False) -> Any:
    """The file-system store in ``folder`` (made when ``create``); None when it does not exist."""
    from optuna.artifacts import FileSystemArtifactStore

    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot make the artifact folder: {os_problem(exc, folder)}") from None
    return FileSystemArtifactStore(str(folder)) if folder.is_dir() else None


def attach(study: optuna.Study, folder: Path, files: list[tuple[str, str]]) -> list[str]:
    """Upload each ``(path, mimetype)`` as an artifact of ``study``; their artifact ids."""
    from optuna.artifacts import upload_artifact

    store = artifact_store(folder, create=True)
    ids = []
    for path, mimetype in files:
        try:
            ids.append(upload_artifact(artifact_store=store, file_path=path, study_or_trial=study, mimetype=mimetype))
        except OSError as exc:
            raise StorageError(f"cannot store the artifact {Path(path).name}: {os_problem(exc, folder)}") from None
    return ids
