"""facekit.recognition.cluster and facekit.album.organise: maps, clustering without labels, album organisation (issue 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facekit.album.organise import make_group_photo
from facekit.recognition.cluster import cluster_faces, clustering_scores, project, sweep_cluster_threshold


def test_clusters_match_identities_on_sample(celeb_train):
    x, y = celeb_train.embeddings, celeb_train.labels
    for method, kw, least in (("agglomerative", {}, 0.9), ("dbscan", {}, 0.7), ("hdbscan", {"min_cluster_size": 5}, 0.9)):
        labels = cluster_faces(x, method, **kw)
        assert labels.shape == y.shape and labels.dtype.kind == "i"
        s = clustering_scores(y, labels)
        assert s["ari"] > least and s["nmi"] > least, (method, s)
        assert s["n_true"] == 5 and 4 <= s["n_clusters"] <= 8, (method, s)
    # a tiny threshold leaves every face alone, a huge one merges everyone: both score ~0
    assert set(cluster_faces(x, threshold=1e-6).tolist()) == {-1}
    assert set(cluster_faces(x, threshold=4.0).tolist()) == {0}
    assert clustering_scores(y, cluster_faces(x, threshold=4.0))["ari"] == pytest.approx(0.0)
    sweep = sweep_cluster_threshold(x, y, [0.05, 1.0, 3.9])
    assert sweep[1]["ari"] > max(sweep[0]["ari"], sweep[2]["ari"])


def test_cluster_labels_sorted_by_size_and_singletons():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    x = np.vstack([c + 0.01 * rng.normal(size=(n, 16)) for c, n in zip(centres, (2, 5, 1))])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = cluster_faces(x, threshold=0.2)
    np.testing.assert_array_equal(labels, [1, 1, 0, 0, 0, 0, 0, -1])
    s = clustering_scores(np.repeat(["a", "b", "c"], (2, 5, 1)), labels)
    assert s["ari"] == pytest.approx(1.0) and s["singleton_fraction"] == pytest.approx(1 / 8)
    assert cluster_faces(np.zeros((0, 16))).shape == (0,)
    with pytest.raises(ValueError, match="method"):
        cluster_faces(x, "kmeans")


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
def test_project_shapes(method, celeb_train):
    x = celeb_train.embeddings
    p3 = project(x, method, n_components=3)
    assert p3.shape == (len(x), 3) and np.isfinite(p3).all()
    # identities stay apart on the map: each point's nearest neighbour is mostly the same person
    p = project(x, method)
    assert p.shape == (len(x), 2) and np.isfinite(p).all()
    d = ((p[:, None] - p[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(celeb_train.labels[d.argmin(1)] == celeb_train.labels) > 0.85


@pytest.fixture(scope="module")
def album_dir(tmp_path_factory, celeb_train, detector):
    """3 people x 3 single-face photos, 2 two-person "group photos", a text file.

    Each person's photos are their most typical ones (closest to their mean embedding): this
    tests the album's bookkeeping; clustering quality on all photos is tested above."""
    from PIL import Image

    from facekit.core.images import load_image

    root = tmp_path_factory.mktemp("album")
    people = ["ben_afflek", "madonna", "elton_john"]
    truth: dict[str, list[str]] = {}  # file -> people, left to right
    spare: dict[str, list[np.ndarray]] = {}
    for person in people:
        idx = np.flatnonzero(celeb_train.labels == person)
        centre = celeb_train.embeddings[idx].mean(0)
        idx = idx[np.argsort(((celeb_train.embeddings[idx] - centre) ** 2).sum(1))]
        singles = []
        for i in idx:
            img = load_image(celeb_train.paths[i])
            if len(detector.detect(img)) == 1:
                singles.append(img)
            if len(singles) == 5:
                break
        for i, img in enumerate(singles[:3]):
            name = f"IMG_{len(truth):03d}.jpg"
            Image.fromarray(img).save(root / name)
            truth[name] = [person]
        spare[person] = singles[3:]
    for a, b in (("ben_afflek", "madonna"), ("madonna", "elton_john")):
        name = f"IMG_{len(truth):03d}.jpg"
        Image.fromarray(make_group_photo([spare[a].pop(), spare[b].pop()])).save(root / name)
        truth[name] = [a, b]
    (root / "notes.txt").write_text("not a photo")
    return root, truth


def test_album_puts_each_persons_photos_together(album_dir, tmp_path):
    from facekit.album.organise import SINGLETONS, organise_album

    root, truth = album_dir
    album = organise_album(root, progress=False)
    assert [s.path.endswith("notes.txt") for s in album.skipped] == [True]
    # ground truth per face: files list their people left to right
    face_truth = []
    for i, f in enumerate(album.faces):
        name = f.path.rsplit("/", 1)[1]
        same_photo = sorted((j for j, g in enumerate(album.faces) if g.path == f.path),
                            key=lambda j: album.faces[j].face.box[0])
        face_truth.append(truth[name][same_photo.index(i)] if len(same_photo) == len(truth[name]) else None)
    assert None not in face_truth, "each photo's faces should be found exactly"
    face_truth = np.array(face_truth)
    groups = {album.name_of(i) for i in range(len(album.faces))}
    assert SINGLETONS not in groups and len(groups) == 3
    for person in set(face_truth.tolist()):  # one group per person, holding only that person
        got = {album.name_of(i) for i in np.flatnonzero(face_truth == person)}
        assert len(got) == 1, (person, got)
        members = album.faces_of(got.pop())
        assert set(face_truth[members].tolist()) == {person}
    # the group photos appear under both people
    people = album.people
    group_files = [n for n, ps in truth.items() if len(ps) == 2]
    for n in group_files:
        assert sum(any(p.endswith(n) for p in paths) for paths in people.values()) == 2
    out = album.export(tmp_path / "sorted", mode="symlink")
    assert sorted(d.name for d in out.iterdir()) == sorted(people)
    assert sum(len(list(d.iterdir())) for d in out.iterdir()) == sum(len(v) for v in people.values())
    assert "notes.txt" in album.listing()


def test_album_names_groups_with_an_identifier(album_dir, celeb_train):
    from facekit.album.organise import organise_album
    from facekit.recognition.identify import FaceIdentifier

    root, truth = album_dir
    m = celeb_train.labels != "madonna"
    ident = FaceIdentifier().fit(celeb_train.embeddings[m], celeb_train.labels[m])
    album = organise_album(root, progress=False, identifier=ident)
    assert sorted(album.people) == ["ben_afflek", "elton_john", "person_01"]
    assert all("madonna" in truth[p.rsplit("/", 1)[1]] for p in album.people["person_01"])


def test_album_export_is_safe(album_dir, tmp_path):
    """Issue 13: colliding names get unique names, a non-empty destination is refused unless merging
    (nothing overwritten), every path stays inside, an export inside the album is left out of the scan."""
    import shutil

    from facekit.album.organise import organise_album

    root = tmp_path / "album"  # this test adds files: a copy, not the module's album
    shutil.copytree(album_dir[0], root)
    album = organise_album(root, progress=False)
    some = album.faces[0].path
    sub = root / "2019"
    sub.mkdir()
    shutil.copy(root / "notes.txt", sub / "notes.txt")
    twin = sub / Path(some).name  # same person, same file name, different bytes
    Image.open(some).save(twin, quality=70)
    again = organise_album(root, progress=False)
    dest = root / "sorted"  # inside the album folder
    out = again.export(dest)
    files = [p for p in out.rglob("*") if p.is_file()]
    stem = Path(some).stem
    assert any(p.name == f"{stem} (2).jpg" for p in files)  # the twin got a unique name
    assert all(out.resolve() in p.resolve().parents for p in files)
    assert sum(len(v) for v in again.people.values()) == len([p for p in files if p.suffix == ".jpg"])
    with pytest.raises(FileExistsError, match="not empty"):
        again.export(dest)
    n = len(files)
    again.export(dest, merge=True)  # same photos: nothing added, nothing overwritten
    assert len([p for p in out.rglob("*") if p.is_file()]) == n
    rescan = organise_album(root, progress=False)
    assert not any("sorted" in Path(f.path).parts for f in rescan.faces)  # the export is not re-scanned
    with pytest.raises(ValueError, match="min_face_size"):
        organise_album(root, progress=False, min_face_size=float("nan"))
