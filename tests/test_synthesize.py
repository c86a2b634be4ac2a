"""Tests for the synthetic ALL-IDB2-style data generator."""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import write_params
from pool import fail_on_fourth, write_with_pid
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from blastcell import DEFAULT_CLASSES, SYNTHETIC_MARKER, images, runner, synthesize
from blastcell.params import SynthesizeParams
from blastcell.synthesize import (
    CELL_TYPES,
    Latent,
    bayes_accuracy,
    dataset,
    draw_cell,
    file_name,
    image_at,
    render,
    sample_latent,
    separation,
    write_dataset,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
DIFFICULTY = 0.5


def spec(
    n_blast: int,
    n_not_blast: int,
    size: int = SIZE,
    difficulty: float = DIFFICULTY,
    workers: int = 1,
) -> SynthesizeParams:
    """A synthesize section, checked as params.yaml's is."""
    return SynthesizeParams(
        n_blast=n_blast,
        n_not_blast=n_not_blast,
        image_size=size,
        difficulty=difficulty,
        workers=workers,
    )


def _dataset_arrays(n: int, difficulty: float, seed: int = 123):
    items = list(dataset(spec(n, n, difficulty=difficulty), seed))
    return np.stack([im for _, _, im in items]), np.array([label for _, label, _ in items])


@pytest.fixture(scope="module")
def samples():
    """150 images per class at 64 px, at difficulty 0 and 1 (images, labels)."""
    return {d: _dataset_arrays(150, d) for d in (0.0, 1.0)}


# ----------------------------------------------------------------------------- shape / dtype


@pytest.mark.parametrize("label", [0, 1])
@pytest.mark.parametrize("size", [16, SIZE, 257])
def test_draw_cell_shape_dtype_range(label, size):
    image = draw_cell(label, size, np.random.default_rng(0), DIFFICULTY)
    assert image.shape == (size, size, 3)
    assert image.dtype == np.uint8
    # Not degenerate: uses a real range of intensities, neither black nor saturated.
    assert image.min() < 150
    assert image.max() > 200
    assert 120 < image.mean() < 250


def test_dataset_items_shape_dtype():
    for name, label, image in dataset(spec(2, 2, difficulty=0.3), 1):
        assert isinstance(name, str)
        assert label in (0, 1)
        assert image.shape == (SIZE, SIZE, 3)
        assert image.dtype == np.uint8


# ----------------------------------------------------------------------------- naming / order


def test_naming_and_order_small():
    items = list(dataset(spec(3, 2, 16), 0))
    assert [name for name, _, _ in items] == [
        "Im001_1.tif",
        "Im002_1.tif",
        "Im003_1.tif",
        "Im004_0.tif",
        "Im005_0.tif",
    ]
    assert [label for _, label, _ in items] == [1, 1, 1, 0, 0]


def test_labels_match_suffix():
    for name, label, _ in dataset(spec(2, 3, 16), 5):
        match = re.fullmatch(r"Im(\d{3,})_([01])\.tif", name)
        assert match is not None
        assert int(match.group(2)) == label


def test_only_one_class():
    # params.yaml asks for both classes; the naming does not depend on it.
    one_class = {"image_size": 16, "difficulty": DIFFICULTY, "workers": 1}
    not_blasts = SynthesizeParams.model_construct(n_blast=0, n_not_blast=2, **one_class)
    blasts = SynthesizeParams.model_construct(n_blast=2, n_not_blast=0, **one_class)
    assert [n for n, _, _ in dataset(not_blasts, 0)] == ["Im001_0.tif", "Im002_0.tif"]
    assert [n for n, _, _ in dataset(blasts, 0)] == ["Im001_1.tif", "Im002_1.tif"]


def test_name_width_grows_beyond_999():
    assert file_name(0, 1, 999) == "Im001_1.tif"
    assert file_name(998, 0, 999) == "Im999_0.tif"
    assert file_name(0, 1, 1000) == "Im0001_1.tif"
    assert file_name(12344, 0, 12345) == "Im12345_0.tif"
    # The generator is lazy, so the first names of a large set are cheap to check.
    first = [name for name, _, _ in itertools.islice(dataset(spec(1000, 1, 16), 0), 2)]
    assert first == ["Im0001_1.tif", "Im0002_1.tif"]
    assert image_at(999, spec(1000, 1, 16), 0)[:2] == ("Im1000_1.tif", 1)
    assert image_at(1000, spec(1000, 1, 16), 0)[:2] == ("Im1001_0.tif", 0)


# ----------------------------------------------------------------------------- determinism


def test_reruns_are_byte_identical():
    first = list(dataset(spec(3, 3), 42))
    second = list(dataset(spec(3, 3), 42))
    for (n1, l1, a), (n2, l2, b) in zip(first, second, strict=True):
        assert (n1, l1) == (n2, l2)
        assert a.tobytes() == b.tobytes()


def test_image_regenerated_alone_matches_dataset():
    items = list(dataset(spec(3, 3, difficulty=0.7), 42))
    for i in (0, 2, 3, 5):
        name, label, image = items[i]
        assert image_at(i, spec(3, 3, difficulty=0.7), 42)[:2] == (name, label)
        assert np.array_equal(image_at(i, spec(3, 3, difficulty=0.7), 42)[2], image)
        alone = draw_cell(label, SIZE, np.random.default_rng([42, i]), difficulty=0.7)
        assert np.array_equal(alone, image)


def test_draw_cell_is_render_of_sample_latent():
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    latent = sample_latent(0, DIFFICULTY, rng_b)
    image = render(latent, SIZE, rng_b, DIFFICULTY)
    assert np.array_equal(draw_cell(0, SIZE, rng_a, DIFFICULTY), image)


def test_different_seeds_and_difficulties_differ():
    a = [im for _, _, im in dataset(spec(2, 2), 1)]
    b = [im for _, _, im in dataset(spec(2, 2), 2)]
    for x, y in zip(a, b, strict=True):
        assert not np.array_equal(x, y)
    # Blasts (lymphoid) change with the difficulty; a neutrophil or monocyte would not.
    for i in range(2):
        x = image_at(i, spec(2, 2, difficulty=0.2), 1)[2]
        assert not np.array_equal(x, image_at(i, spec(2, 2, difficulty=0.9), 1)[2])


def test_images_within_a_set_differ():
    rendered = [im for _, _, im in dataset(spec(3, 3), 3)]
    for x, y in itertools.combinations(rendered, 2):
        assert not np.array_equal(x, y)


# ----------------------------------------------------------------------------- no shortcut


def _central_disc(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2.0
    return np.hypot(yy - c, xx - c) < 0.22 * size


def _border_band(size: int) -> np.ndarray:
    band = max(1, round(0.12 * size))
    mask = np.ones((size, size), dtype=bool)
    mask[band:-band, band:-band] = False
    return mask


def _region_stats(stack: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per image of the stack: mean and std of each RGB channel over the mask."""
    pixels = stack[:, mask].astype(np.float64)  # (n, pixels, 3)
    return np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)], axis=1)


def _cv_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    return float(cross_val_score(model, features, labels, cv=folds).mean())


def test_scene_around_the_cell_does_not_depend_on_the_label():
    # Same generator state, either label: the leukocyte differs, the rest of the scene (red
    # cells, platelets, stain, optics, noise) is drawn from a label-independent stream.
    border = _border_band(SIZE)
    for seed in range(20):
        blast = draw_cell(1, SIZE, np.random.default_rng(seed), DIFFICULTY)
        other = draw_cell(0, SIZE, np.random.default_rng(seed), DIFFICULTY)
        assert np.array_equal(blast[border], other[border])
        assert not np.array_equal(blast, other)


def test_border_band_carries_no_class_signal(samples):
    for stack, labels in samples.values():
        assert _cv_accuracy(_region_stats(stack, _border_band(SIZE)), labels) < 0.62


def test_the_shortcut_test_can_fail_on_the_centre(samples):
    stack, labels = samples[0.0]
    assert _cv_accuracy(_region_stats(stack, _central_disc(SIZE)), labels) > 0.8


# ----------------------------------------------------------------------------- difficulty


def test_difficulty_makes_classes_harder_but_not_beyond_the_bound(samples):
    disc = _central_disc(SIZE)
    accuracy = {
        d: _cv_accuracy(_region_stats(*samples[d][:1], disc), samples[d][1]) for d in samples
    }
    assert accuracy[0.0] > 0.9
    assert accuracy[0.0] > accuracy[1.0] + 0.08
    assert 0.6 < accuracy[1.0] < bayes_accuracy(1.0) + 0.05  # 300 images: ~2.5 % std. error


def _purple_fraction(image: np.ndarray, mask: np.ndarray) -> float:
    f = image.astype(np.float64) / 255.0
    purple = (f[..., 2] - f[..., 1] > 0.12) & (f.mean(axis=-1) < 0.65)
    return float(purple[mask].mean())


def test_score_drives_the_look_monotonically():
    # Lymphoid cells rendered at a grid of scores over the same scenes: the stained area and
    # darkness of the centre grow with the score, and a score of 0 looks in between.
    disc = _central_disc(SIZE)
    scores = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    purple, dark = [], []
    for s in scores:
        cells = [
            render(Latent(0, s), SIZE, np.random.default_rng([5, k]), DIFFICULTY)
            for k in range(12)
        ]
        purple.append(np.mean([_purple_fraction(im, disc) for im in cells]))
        dark.append(np.mean([255.0 - im[disc].mean() for im in cells]))
    assert np.all(np.diff(purple) > 0), purple
    assert np.all(np.diff(dark) > 0), dark


def test_separation_and_bound_are_monotone():
    grid = np.linspace(0.0, 1.0, 11)
    d = [separation(x) for x in grid]
    bound = [bayes_accuracy(x) for x in grid]
    assert np.all(np.diff(d) < 0)
    assert np.all(np.diff(bound) < 0)
    assert bound[0] > 0.9999
    assert 0.955 < bayes_accuracy(0.5) < 0.975
    assert 0.78 < bound[-1] < 0.82


def test_documented_table_matches_bayes_accuracy():
    rows = re.findall(r"^\s+(\d\.\d)\s+(\d\.\d\d)\s+([\d.]+) %$", synthesize.__doc__, re.M)
    assert len(rows) == 11
    for difficulty, d, percent in rows:
        assert separation(float(difficulty)) == pytest.approx(float(d), abs=0.006)
        decimals = len(percent.split(".")[1])
        assert round(100 * bayes_accuracy(float(difficulty)), decimals) == float(percent)


@pytest.mark.parametrize(("difficulty", "blast_fraction"), [(0.5, 0.5), (1.0, 0.5), (0.8, 0.3)])
def test_bayes_accuracy_matches_monte_carlo(difficulty, blast_fraction):
    # Sample latents as draw_cell does; the best rule on them (non-lymphoid -> not blast,
    # lymphoid -> blast above a score threshold, optimal as the likelihood ratio is monotone
    # in the score) reaches bayes_accuracy, up to Monte-Carlo error.
    rng = np.random.default_rng(0)
    n = 40_000
    labels = (rng.random(n) < blast_fraction).astype(int)
    latents = [sample_latent(int(label), difficulty, rng) for label in labels]
    lymphoid = np.array([lat.cell_type == 0 for lat in latents])
    score = np.array([lat.score for lat in latents])
    assert np.all(lymphoid[labels == 1])
    types = np.array([lat.cell_type for lat in latents])
    shares = np.bincount(types[labels == 0], minlength=len(CELL_TYPES)) / np.sum(labels == 0)
    assert shares == pytest.approx([0.8, 0.15, 0.05], abs=0.015)
    best = max(
        np.mean(np.where(lymphoid & (score > t), 1, 0) == labels)
        for t in np.linspace(-3.0, 3.0, 301)
    )
    assert best == pytest.approx(bayes_accuracy(difficulty, blast_fraction), abs=0.008)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("label", [2, -1, 0.5, "1", True])
def test_draw_cell_bad_label(label):
    with pytest.raises(ValueError, match="label"):
        draw_cell(label, SIZE, np.random.default_rng(0), DIFFICULTY)
    with pytest.raises(ValueError, match="label"):
        sample_latent(label, DIFFICULTY, np.random.default_rng(0))


def test_draw_cell_bad_rng():
    with pytest.raises(ValueError, match="rng"):
        draw_cell(1, SIZE, 0, DIFFICULTY)
    with pytest.raises(ValueError, match="rng"):
        render(Latent(0, 0.0), SIZE, np.random.RandomState(0), DIFFICULTY)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_blast", -1),
        ("n_blast", 0),
        ("n_not_blast", -1),
        ("n_not_blast", 0),
        ("n_blast", 2.0),
        ("image_size", 15),
        ("image_size", 0),
        ("image_size", -3),
        ("image_size", 32.0),
        ("difficulty", -0.1),
        ("difficulty", 1.01),
        ("difficulty", float("nan")),
        ("difficulty", "0.5"),
        ("difficulty", None),
        ("difficulty", True),
        ("workers", -1),
    ],
)
def test_bad_settings_are_refused_by_params(field, value):
    # The generator takes its settings from params.yaml's synthesize section, checked there.
    good = {"n_blast": 2, "n_not_blast": 2, "image_size": SIZE, "difficulty": 0.5, "workers": 1}
    with pytest.raises(ValidationError, match=field):
        SynthesizeParams(**{**good, field: value})


def test_image_at_bad_index():
    with pytest.raises(ValueError, match="index"):
        image_at(5, spec(3, 2), 0)
    with pytest.raises(ValueError, match="index"):
        image_at(-1, spec(3, 2), 0)
    with pytest.raises(ValueError, match="index"):
        image_at(1.0, spec(3, 2), 0)


def test_other_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="blast_fraction"):
        bayes_accuracy(0.5, blast_fraction=1.0)
    with pytest.raises(TypeError, match="write"):
        write_dataset(tmp_path, spec(1, 1), 0)
    with pytest.raises(ValueError, match="cell_type"):
        render(Latent(3, 0.0), SIZE, np.random.default_rng(0), DIFFICULTY)
    with pytest.raises(ValueError, match="score"):
        render(Latent(0, float("nan")), SIZE, np.random.default_rng(0), DIFFICULTY)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- writing


def test_write_dataset_does_not_depend_on_workers(tmp_path):
    outputs = {}
    for workers in (1, 2):
        folder = tmp_path / str(workers)
        folder.mkdir()
        progress: list[int] = []
        names = write_dataset(
            folder,
            spec(7, 6, 48, workers=workers),
            3,
            write=write_with_pid,
            progress=progress.append,
        )
        assert names == [file_name(i, int(i < 7), 13) for i in range(13)]
        assert sum(progress) == 13
        pids = {p.read_text() for p in folder.glob("*.pid")}
        if workers == 1:
            assert pids == {str(os.getpid())}
        else:  # written by the workers
            assert pids
            assert str(os.getpid()) not in pids
        outputs[workers] = {p.name: p.read_bytes() for p in sorted(folder.glob("*.tif"))}
    assert list(outputs[1]) == names
    assert outputs[2] == outputs[1]
    for i, name in enumerate(names):  # each file is the image dataset() yields
        assert np.array_equal(
            images.read(tmp_path / "1" / name), image_at(i, spec(7, 6, 48), 3)[2]
        )


@pytest.mark.parametrize("workers", [1, 2])
def test_write_dataset_error_stops_it(tmp_path, workers):
    with pytest.raises(OSError, match="disk full"):
        write_dataset(tmp_path, spec(3, 3, 16, workers=workers), 0, write=fail_on_fourth)
    assert {p.name for p in tmp_path.iterdir()} >= {"Im001_1.tif", "Im002_1.tif", "Im003_1.tif"}


def test_preview_shows_the_first_images_of_each_class():
    from matplotlib import pyplot

    params = spec(13, 3, 32)
    fig = synthesize.preview(params, 5)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == synthesize.PREVIEW_ROWS * synthesize.PREVIEW_COLS + 3
    shown = [ax.images[0].get_array() for ax in axes]
    expected = [image_at(i, params, 5)[2] for i in [*range(12), 13, 14, 15]]
    for got, want in zip(shown, expected, strict=True):
        assert np.array_equal(got, want)
    row_titles = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert row_titles == [DEFAULT_CLASSES[1]] * 2 + [DEFAULT_CLASSES[0]]
    assert "difficulty 0.5 (best possible accuracy" in fig.get_suptitle()
    pyplot.close(fig)


def _stage():
    """stages/synthesize.py, imported as a module."""
    path = ROOT / "stages" / "synthesize.py"
    module_spec = importlib.util.spec_from_file_location("stage_synthesize", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_stage_output_does_not_depend_on_workers(tmp_path):
    stage = _stage()
    size = ["synthesize.n_blast=6", "synthesize.n_not_blast=6", "synthesize.image_size=48"]
    outputs = {}
    for workers in (1, 2):
        params = write_params(
            tmp_path / f"params{workers}.yaml",
            *size,
            "synthesize.difficulty=0.5",
            f"synthesize.workers={workers}",
            tiny=True,
        )
        out, preview = tmp_path / f"out{workers}", tmp_path / f"preview{workers}.png"
        args = ["--params", str(params), "--output", str(out), "--preview", str(preview)]
        line = runner.invoke(stage.run, args)
        assert line == (
            f"synthesize: 12 images (6 blast, 6 not blast) of 48 px in {out}, difficulty 0.5 "
            "(best possible accuracy 96.4%)"
        )
        assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        outputs[workers] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        outputs[workers]["preview"] = preview.read_bytes()
    names = [SYNTHETIC_MARKER] + [file_name(i, int(i < 6), 12) for i in range(12)]
    assert list(outputs[1])[:-1] == names  # the marker: the cells are synthetic
    assert outputs[1] == outputs[2]
    assert not list(tmp_path.glob(".out*"))  # no temporary folder left behind
    # Without --preview, the data set alone.
    args = ["--params", str(params), "--output", str(tmp_path / "alone")]
    runner.invoke(stage.run, args)
    assert len(list((tmp_path / "alone").iterdir())) == 12 + 1
