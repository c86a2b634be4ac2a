"""The leakage audit: the distance and nearest-neighbour search, and the audit stage on tiny data
split both ways (the seed's leaky random split is caught, the source split is clean)."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import yaml
from test_stages import run_data_stages, run_stage

from blastcell import audit

ROOT = Path(__file__).resolve().parents[1]


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.random(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_an_exact_duplicate_is_at_distance_zero():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    refs = audit.descriptors(images, 8)
    assert refs.shape == (6, 8**3)
    np.testing.assert_allclose(np.linalg.norm(refs.toarray(), axis=1), 1)
    index, distance = audit.nearest(audit.descriptors(images[[4, 1]], 8), [refs])
    assert index.tolist() == [4, 1]
    assert distance == pytest.approx([0, 0], abs=1e-12)


def test_batching_the_references_gives_the_same_answer():
    rng = np.random.default_rng(1)
    queries, refs = unit_rows(rng, 20, 48), unit_rows(rng, 101, 48)
    one_shot = audit.nearest(queries, [refs])
    expected = 1 - queries @ refs.T
    assert one_shot[0].tolist() == expected.argmin(axis=1).tolist()
    np.testing.assert_allclose(one_shot[1], expected.min(axis=1), atol=1e-12)
    for size in (1, 7, 50):
        batches = (refs[i : i + size] for i in range(0, 101, size))
        index, distance = audit.nearest(queries, batches)
        assert index.tolist() == one_shot[0].tolist()
        np.testing.assert_allclose(distance, one_shot[1], atol=1e-12)
    sparse = audit.nearest(scipy.sparse.csr_array(queries), [scipy.sparse.csr_array(refs)])
    assert sparse[0].tolist() == one_shot[0].tolist()


def test_equal_distances_go_to_the_first_reference_however_batched():
    refs = np.eye(4)[[0, 1, 1, 2]]  # references 1 and 2 are the same
    query = np.eye(4)[[1]]
    for size in (1, 2, 4):
        index, _ = audit.nearest(query, [refs[i : i + size] for i in range(0, 4, size)])
        assert index.tolist() == [1]


def test_no_references_leave_every_query_unmatched():
    index, distance = audit.nearest(np.zeros((2, 4)), [])
    assert index.tolist() == [-1, -1]
    assert np.isinf(distance).all()


def picture(rng: np.random.Generator, n_colours: int = 12) -> np.ndarray:
    """A (1, 32, 32, 3) image of pixels drawn from its own palette of dark colours."""
    palette = rng.integers(0, 100, (n_colours, 3), dtype=np.uint8)
    return palette[rng.integers(0, n_colours, (1, 32, 32))]


def test_a_flipped_turned_and_padded_copy_is_near_only_without_its_fill():
    rng = np.random.default_rng(2)
    image, other = picture(rng), picture(rng)
    copy = np.rot90(image[:, :, ::-1], 1, axes=(1, 2)).copy()  # flipped and turned
    copy[:, :6] = 125  # a strip of fill, as a shift leaves
    assert audit.fill_mask(copy, (125, 125, 125))[0].sum() == 7 * 32  # and its seam
    distance = {}
    for fill in [(125, 125, 125), None]:
        refs = audit.descriptors(np.concatenate([other, copy]), 8, fill)
        index, distance[fill] = audit.nearest(audit.descriptors(image, 8, fill), [refs])
        assert index.tolist() == [1]
    assert distance[(125, 125, 125)][0] < 0.001 < 0.05 < distance[None][0]
    other_distance = audit.nearest(audit.descriptors(image, 8), [audit.descriptors(other, 8)])[1]
    assert other_distance[0] > 0.5


def _tiny_params(tmp_path: Path, split: str) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["synthesize"].update(n_blast=8, n_not_blast=8, image_size=128)
    raw["augment"]["copies"] = 2
    raw["prepare"].update(image_size=64, split=split)
    # Smaller images have noisier colour histograms, so larger distances than the default
    # threshold is set for (128 px): here copies came within 0.07, other cells no nearer than 0.16.
    raw["audit"]["threshold"] = 0.11
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_audit(tmp_path: Path, split: str) -> tuple[dict, list[dict[str, str]]]:
    """The data stages and the audit on tiny data; the audit's full report and CSV rows."""
    params = _tiny_params(tmp_path, split)
    _, prepared = run_data_stages(tmp_path, params)
    metrics, table = tmp_path / "audit_metrics.json", tmp_path / "audit" / "nearest.csv"
    report = tmp_path / "audit.json"
    run_stage(
        "audit",
        [
            "--params",
            str(params),
            "--data",
            str(prepared),
            "--metrics",
            str(metrics),
            "--report",
            str(report),
            "--nearest",
            str(table),
        ],
    )
    full = json.loads(report.read_text())
    assert json.loads(metrics.read_text()) == {"near_duplicates": full["near_duplicates"]}
    with table.open() as f:
        return full, list(csv.DictReader(f))


def test_the_audit_finds_no_near_duplicates_in_the_source_split(tmp_path):
    metrics, rows = run_audit(tmp_path, "source")
    assert metrics["test_images"] == len(rows) == 4  # 2 originals per class
    assert metrics["source_in_train"] == 0
    assert metrics["near_duplicates"] == 0
    assert metrics["near_duplicate_fraction"] == 0
    assert all(r["near_duplicate"] == "false" and r["same_source"] == "false" for r in rows)
    assert metrics["median_distance"] > metrics["threshold"]


def test_the_audit_flags_the_leaked_copies_of_the_random_split(tmp_path):
    metrics, rows = run_audit(tmp_path, "random")
    assert list(rows[0]) == [
        "test_file",
        "train_file",
        "distance",
        "near_duplicate",
        "same_source",
    ]
    leaked = [r for r in rows if r["same_source"] == "true"]
    flagged = [r for r in rows if r["near_duplicate"] == "true"]
    assert metrics["test_images"] == len(rows) == 48 - round(48 * 1020 / 1268)
    assert metrics["near_duplicates"] == len(flagged)
    assert metrics["nearest_same_source"] == len(leaked)
    assert metrics["source_in_train"] >= len(leaked)
    assert all(r["same_source"] == "true" for r in flagged)  # every flag is a true leak
    assert len(flagged) >= 0.8 * metrics["source_in_train"]  # and most leaks are flagged
    for r in flagged:
        assert float(r["distance"]) < metrics["threshold"]
