"""Filling the face store: enrol a folder of labelled photos, and share people as a checked file.

Taught in notebook 04. :func:`enrol_folder` enrols ``root/<name>/*.jpg`` (the largest face of
each photo is that person), reporting every photo it did not use, with each person's consent
note and its date when given (as the webcam form records it); running it again adds only what is
new (a face is stored once per person, model and photo). :func:`export_store` /
:func:`import_store` move people between stores as ``.npz`` arrays + JSON (format
``facekit.FaceStoreExport`` version 1, no pickle, 0600, written atomically, never over an
existing file unless asked); import checks every value and only ever adds. An export is a
derived file (:mod:`facekit.core.origin`): it records its store and generation, ``forget``
rewrites it without the person, and an export of a store on this machine that has changed
since is refused on import (people may have been forgotten since).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from facekit.core.exchange import (FileFormatError, check_embeddings, check_labels, check_threshold, read_npz,
    write_npz)
from facekit.core.names import InvalidNameError, check_name
from facekit.core.origin import Origin, StaleFileError, origin_problem, store_stamp
from facekit.store.records import PhotoSource, UnknownPersonError, model_fingerprint

__all__ = ["EnrolReport", "ImportReport", "enrol_faceset", "enrol_folder", "export_store", "import_store",
           "EXPORT_FORMAT", "EXPORT_VERSION"]

#: the store these functions work on, named without importing it (facekit.store.db imports this module)
FaceStore_ = "facekit.store.db.FaceStore"

EXPORT_FORMAT = "facekit.FaceStoreExport"
EXPORT_VERSION = 1
_FIX = "pass a file written by FaceStore.export() (or `facekit export`)"


@dataclass
class EnrolReport:
    """What an enrolment did: ``added`` new faces per person, ``already`` faces that were stored
    before (re-runs), ``skipped`` photos not used with the reason, and the ``faceset`` itself."""

    added: dict[str, int]
    already: int
    skipped: list = field(default_factory=list)
    faceset: object = None

    def summary(self) -> str:
        new = ", ".join(f"{n} +{k}" for n, k in sorted(self.added.items())) or "nobody new"
        return (f"enrolled: {new}; {self.already} face(s) were already in the store; "
                f"{len(self.skipped)} photo(s) not used")


@dataclass
class ImportReport:
    """What an import added: new faces per person, faces already present, the file's people."""

    added: dict[str, int]
    already: int
    people: list[str]


def _count(store: FaceStore_) -> dict[str, int]:
    return {p.name: p.faces for p in store.people()}


def enrol_faceset(store: FaceStore_, faceset, model=None, *, consent: str | dict[str, str] | None = None) -> EnrolReport:
    """Add every photo of a :class:`facekit.data.folders.FaceSet` (embedded) to ``store``, each face
    with its photo's path, sha256 and box. ``model``: the embedder (or its fingerprint) that made
    ``faceset.embeddings``. ``consent``: the note recorded with each person (one text for all, or
    ``{name: text}``), dated, as the webcam form records it; None records none (a person keeps the
    note they had). Idempotent: a photo already enrolled for that person is not added twice."""
    from facekit.core.cache import sha256sum

    if faceset is None or not hasattr(faceset, "labels"):
        raise TypeError(f"enrol_faceset takes a FaceSet (facekit.data.folders.load_folder(root)), not "
                        f"{type(faceset).__name__}. Fix: for a folder use enrol_folder(store, root); for "
                        "embeddings use store.add_faces(name, embeddings, model=...)")
    if faceset.embeddings is None:
        raise ValueError("enrol_faceset needs embeddings: load the folder with embed=True")
    fp = model_fingerprint(model)
    before = _count(store)
    labels = [check_name(v) for v in faceset.labels.tolist()]
    for name in sorted(set(labels)):
        idx = [i for i, v in enumerate(labels) if v == name]
        src = [PhotoSource(str(Path(faceset.paths[i]).resolve()), sha256sum(faceset.paths[i]),
                           tuple(float(v) for v in faceset.faces[i].box)) for i in idx]
        note = consent.get(name) if isinstance(consent, dict) else consent
        store.add_faces(name, faceset.embeddings[idx], model=fp, sources=src, consent=note)
    after = _count(store)
    added = {n: after[n] - before.get(n, 0) for n in set(labels) if after[n] > before.get(n, 0)}
    return EnrolReport(added, len(labels) - sum(added.values()), list(faceset.skipped), faceset)


def enrol_folder(store: FaceStore_, root: str | os.PathLike, *, model=None, verbose: bool = True,
                 consent: str | dict[str, str] | None = None, **load_kw) -> EnrolReport:
    """Enrol ``root/<name>/*.jpg`` into ``store``: :func:`facekit.data.folders.load_folder` (which
    reports photos in the root, in sub-sub-folders, unreadable or without a face) then
    :func:`enrol_faceset`. ``model``: registry name or :class:`~facekit.embedding.embedder.Embedder`;
    ``consent``: each person's consent note (one text, or ``{name: text}``; see :func:`enrol_faceset`)."""
    from facekit.data.folders import load_folder
    from facekit.embedding.embedder import get_embedder

    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"enrol_folder takes one folder (root/<name>/*.jpg), not {type(root).__name__}. Fix: "
                        "for photos of one person use `facekit enrol NAME PHOTO...` or store.add_faces(name, "
                        "embeddings) with facekit.extract_faces(photo)")

    embedder = load_kw.pop("embedder", None)
    if embedder is None:
        embedder = model if hasattr(model, "embed") else get_embedder(model or "facenet128")
    fs = load_folder(root, embedder=embedder, verbose=verbose, **load_kw)
    report = enrol_faceset(store, fs, embedder, consent=consent)
    if verbose:
        print(report.summary())
    return report


def export_store(store: FaceStore_, path: str | os.PathLike, names: Sequence[str] | None = None, *,
                 overwrite: bool = False) -> Path:
    """Write ``names`` (default: everyone) with their faces of every model to ``path`` (``.npz``
    added if missing). Photo paths are not exported. The file records the store and its
    generation (a derived file: ``forget`` rewrites it without the person). Returns the path."""
    from facekit.store.derived import derived_write

    path = Path(path).expanduser()
    if path.suffix != ".npz" and not path.is_dir():  # a folder gets write_npz's clear error
        path = path.with_name(path.name + ".npz")
    if path.is_dir():
        return write_npz(path, {}, {}, what="export .npz")  # raises IsADirectoryError naming the fix
    gen = store.generation
    people = {p.name: p for p in store.people()}
    keep = sorted(people) if names is None else sorted({check_name(n) for n in names})
    missing = [n for n in keep if n not in people]
    if missing:
        raise UnknownPersonError(f"{missing} not in {store.path}. Fix: check the spelling (store.people())")
    origin = store.origin()
    meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported": time.time(),
            "people": [{"name": n, "added": people[n].added, "consent": people[n].consent} for n in keep],
            "models": [], "origin": origin.as_json(), "names_asked": names is not None}
    if origin.generation != gen:
        raise StaleFileError(f"{path}: not written: the store changed while it was read. Fix: export again")
    arrays = {}
    for i, fp in enumerate(sorted(store.models())):
        x, labels, _, g = store.snapshot(fp)
        if g != gen:
            raise StaleFileError(f"{path}: not written: the store changed while it was read. Fix: export again")
        m = np.isin(np.asarray(labels, dtype=str), keep) if len(labels) else np.zeros(0, bool)
        if not m.any():
            continue
        meta["models"].append({"fingerprint": fp, "dim": int(x.shape[1]), "faces": int(m.sum()),
                               "embeddings": f"emb_{i}", "labels": f"labels_{i}"})
        arrays[f"emb_{i}"] = x[m]
        arrays[f"labels_{i}"] = np.asarray(labels, dtype=str)[m]
    with derived_write(store, path, "export", gen):
        return write_npz(path, meta, arrays, overwrite=overwrite, what="export .npz")


def import_store(store: FaceStore_, path: str | os.PathLike) -> ImportReport:
    """Check an exported file completely (format and version, names, consent notes, finite unit
    embeddings of one width per model, labels of listed people), then add its people and faces.
    Nothing in ``store`` is replaced; re-importing adds nothing. Raises :class:`FileFormatError`."""
    meta, arrays = read_npz(path, EXPORT_FORMAT, EXPORT_VERSION, _FIX)
    where = str(path)
    _check_export_origin(meta, where)
    people, models = meta.get("people"), meta.get("models")
    if not isinstance(people, list) or not isinstance(models, list):
        raise FileFormatError(f"{where}: metadata lacks 'people' or 'models' lists. Fix: {_FIX}")
    consent: dict[str, str | None] = {}
    for p in people:
        if not isinstance(p, dict) or not isinstance(p.get("consent"), (str, type(None))):
            raise FileFormatError(f"{where}: bad person entry {str(p)[:80]}. Fix: {_FIX}")
        try:
            consent[check_name(p.get("name"))] = p.get("consent")
        except InvalidNameError as exc:
            raise FileFormatError(f"{where}: {exc}") from None
    check_threshold(meta.get("threshold"), where)
    batches = []
    for m in models:
        if not isinstance(m, dict) or not isinstance(m.get("fingerprint"), str) or \
                m.get("embeddings") not in arrays or m.get("labels") not in arrays:
            raise FileFormatError(f"{where}: bad model entry {str(m)[:120]}. Fix: {_FIX}")
        fp = model_fingerprint(m["fingerprint"])
        x = check_embeddings(arrays[m["embeddings"]], f"{where} [{fp}]", m.get("dim"))
        labels = check_labels(arrays[m["labels"]], len(x), f"{where} [{fp}]")
        stray = sorted(set(labels) - set(consent))
        if stray:
            raise FileFormatError(f"{where}: faces of {stray[:3]} who are not in its people list. Fix: {_FIX}")
        batches.append((fp, x, labels))
    dims = store.model_dims()
    for fp, x, _ in batches:  # checked before anything is added: nothing half imported
        if fp in dims and dims[fp] != x.shape[1]:
            raise FileFormatError(f"{where}: its {fp!r} faces have {x.shape[1]} dimensions, but the store "
                                  f"{store.path} holds {dims[fp]}-D faces of that model. Fix: {_FIX} by the same model")
    before = _count(store)
    for name in consent:
        if name not in before:
            store.add_person(name, consent[name])
    n_file = 0
    for fp, x, labels in batches:
        lab = np.asarray(labels)
        for name in sorted(set(labels)):
            store.add_faces(name, x[lab == name], model=fp, sources="import")
        n_file += len(x)
    after = _count(store)
    added = {n: after[n] - before.get(n, 0) for n in consent if after.get(n, 0) > before.get(n, 0)}
    return ImportReport(added, n_file - sum(added.values()), sorted(consent))


def _check_export_origin(meta: dict, where: str) -> None:
    """An export whose store is on this machine is read only while that store is at the export's
    generation (``forget`` rewrites the exports it knows of; a copy it could not reach, made
    before a change, is refused). An export from elsewhere (its store not here) is read as is."""
    try:
        origin = Origin.from_json(meta.get("origin"))
    except ValueError as exc:
        raise FileFormatError(f"{where}: {exc}. Fix: {_FIX}") from None
    if origin is None:
        return
    try:
        stamp = store_stamp(origin.store_path)
    except OSError:
        return
    if stamp is None or stamp[0] != origin.store_id:
        return  # its store is not on this machine (or was replaced): a file from elsewhere
    why = origin_problem(origin, stamp)
    if why:
        raise StaleFileError(f"{where}: an export of {origin.store_path} that is out of date: {why}; people may "
                             "have been forgotten since. Fix: export again (store.export(path, overwrite=True) or "
                             "`facekit export PATH --force`)")
