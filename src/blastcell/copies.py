"""The copies stage: which source images show the same cells, found before any split.

A data set can hold one cell in several files: a capture of a field and another of the same
field shifted by a few to tens of pixels, an image re-saved as JPEG or resized, edited, flipped
or turned, the same cell cropped twice, or copied into another class's folder. A split that puts
two such files on two sides leaks. This stage finds them among all the source images of
`data.dir` and groups them; augment writes the groups into its index, and prepare keeps each
group on one side, together with `data.group_by`'s groups and exact duplicates.

How (`blastcell.keypoints` has the geometry):

1. Overlay. Exports often carry a scale bar, text or a logo at the same place in every image;
   two unrelated fields then agree there, at the identity map. `overlay_mask` looks for it on up
   to OVERLAY_SAMPLE images spread over the data set: content around a keypoint that is the same
   pixels, at the same place, in at least `copies.overlay_share` of the other images. No
   keypoint is taken from the mask, here or in the audit.
2. Keypoints. Each image, and its mirror image (flipped copies), is described by its
   `copies.keypoints` strongest ORB keypoints off the mask, at WORK_SIZE pixels, with its edges
   mirrored out so that keypoints near them count (a capture shifted by half its width shares
   only its edge with the other).
3. Shortlist. Every keypoint is hashed by TABLES random sets of TABLE_BYTES of its descriptor's
   bytes; keypoints of two images that share a hash in any table collide, each with the next
   NEIGHBOURS - 1 of its hash in image order (so many copies of one image still chain into one
   group, at a cost linear in the keypoints); a hash shared by more than BUCKET_CAP keypoints is
   a pattern seen everywhere, and ignored. A collision proposes a map
   between its two images (the turn and scale between its keypoints, and the shift); the pairs
   of images with at least SHORTLIST_VOTES collisions agreeing with one map, the
   `copies.candidates` best of each image, are verified. Nothing compares every pair.
4. Verification. The keypoints of the two images are paired where each is the other's nearest
   by Hamming distance, and clearly so (RATIO), and `keypoints.fit_similarity` finds the map
   that the most pairs agree with, within 2 pixels: a turn by any angle, a scale up to
   MAX_SCALE, a shift, and for the mirror image a flip. At least `copies.min_inliers` places
   that agree make the two images copies.
5. Groups. Copies, and images with identical pixels, form groups (connected components). A group
   whose images come from two classes is a label conflict: an error naming two of its files,
   or with `copies.on_label_conflict: drop` the whole group is left out of the data set.

`bench/copies.py` measures it (the constants below were chosen there). Memory holds each image's
keypoints (about 80 kB), never its pixels: images are decoded one at a time, and
`copies.workers` processes find the keypoints and verify the pairs.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.ndimage
from skimage.color import rgb2gray

from blastcell import copied, ingest, parallel, progress
from blastcell.files import DataError
from blastcell.images import resize
from blastcell.keypoints import (
    PROPOSAL_TOLERANCE,
    WORK_SIZE,
    Fit,
    Keypoints,
    detect,
    fit_similarity,
    match,
    proposals,
)
from blastcell.params import CopiesParams, DataParams

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OVERLAY_SAMPLE = 100  # images, spread evenly over the data set, searched for an overlay
OVERLAY_MIN_IMAGES = 5  # an overlay is in at least this many of them, whatever the share
PATCH = 9  # pixels at WORK_SIZE: the square around a keypoint compared between images
TWIN_CORRELATION = 0.9  # the same content: the two patches correlate at least this much
TWIN_LEVELS = 0.02  # and differ by at most this mean grey level (0 to 1): the same pixels
TWIN_CONTRAST = 0.05  # grey standard deviation a patch needs to say anything (not a faint edge)
TWIN_BLOCK = 16  # other images compared with one at a time (bounds memory)
OVERLAY_RADIUS = 8  # pixels at WORK_SIZE: the mask around each burned-in keypoint
BUDGET = 2  # ORB keeps this many times `copies.keypoints`; the strongest off the mask are used
INDEXED = 800  # the strongest keypoints of each view that the shortlist hashes
TABLES, TABLE_BYTES = 16, 3  # hash tables of the shortlist, and bytes of the descriptor in each
BUCKET_CAP = 8  # keypoints: a hash shared by more is a pattern seen everywhere, ignored
NEIGHBOURS = 4  # a keypoint collides with the next NEIGHBOURS - 1 of its hash, in image order
SHORTLIST_VOTES = 4  # collisions agreeing with one map that put a pair on the shortlist
VOTE_CHUNK = 200_000  # (proposal, collision) pairs scored at once (bounds memory)
RATIO = 0.75  # a keypoint pairs only where its nearest is this much nearer than the next
MAX_SCALE = 2.5  # a copy may be scaled by up to this (the same cell cropped wider or closer)
MAX_ANISOTROPY = 1.25  # and stretched one way this much more than the other
MIN_AGREEING = 0.05  # of the keypoints in the part both images show: a copy agrees on this many
GALLERY = 8  # pairs shown in the gallery


class _Source(NamedTuple):
    """One source image, as sent to a worker."""

    index: int
    pixels: np.ndarray


@dataclass(frozen=True)
class Views:
    """A source image's keypoints, as it is and mirrored left to right."""

    plain: Keypoints
    mirrored: Keypoints

    def view(self, mirrored: bool) -> Keypoints:
        return self.mirrored if mirrored else self.plain


@dataclass(frozen=True)
class Pair:
    """Two source images found to be copies (indices into the sources), and why: the map takes
    the first (mirrored, if so) onto the second."""

    first: int
    second: int
    how: str  # "identical pixels" or "keypoints"
    inliers: int = 0  # places in both images where keypoints agree with the map
    matches: int = 0  # keypoint pairs found
    mirrored: bool = False
    map: dict[str, float] = field(default_factory=dict)  # rotation_deg, scale, shift_x, shift_y


@dataclass(frozen=True)
class Result:
    """What the copies stage found: the sources (path in the data folder and class), the pairs,
    the groups (lists of source indices, first file first), the overlay mask, the files dropped
    for label conflicts, and the counts."""

    classes: tuple[str, ...]
    keys: list[str]
    labels: list[int]
    pairs: list[Pair]
    groups: list[list[int]]
    overlay: np.ndarray
    dropped: list[str]
    shortlisted: int  # pairs of images verified

    def members(self) -> list[copied.Member]:
        """Every image in a group, for the copies folder."""
        out = []
        dropped = set(self.dropped)
        for group in self.groups:
            first = self.keys[group[0]]
            for i in group:
                status = copied.DROPPED if self.keys[i] in dropped else copied.KEPT
                out.append(
                    copied.Member(self.keys[i], self.classes[self.labels[i]], first, status)
                )
        return out

    def counts(self) -> dict[str, int]:
        """The counts: sources, groups of copies, the images in them, label conflicts, the
        images dropped for them, the pairs verified."""
        return {
            "sources": len(self.keys),
            "copy_groups": len(self.groups),
            "images_in_copy_groups": sum(len(g) for g in self.groups),
            "label_conflicts": sum(len({self.labels[i] for i in g}) > 1 for g in self.groups),
            "dropped": len(self.dropped),
            "pairs_verified": self.shortlisted,
        }

    def metrics(self) -> dict[str, int]:
        """The headline `dvc exp show` compares: the groups of copies. One column, so `dvc
        metrics show` stays within 200 columns; the other counts are in the report."""
        return {"copy_groups": len(self.groups)}

    def report(self) -> dict[str, object]:
        """The full report: counts, the overlay, and every group with its evidence."""
        by_group = defaultdict(list)
        index_of = {}
        for n, group in enumerate(self.groups):
            for i in group:
                index_of[i] = n
        for p in self.pairs:
            entry = {
                "files": [self.keys[p.first], self.keys[p.second]],
                "how": p.how,
            }
            if p.how == "keypoints":
                entry.update(
                    {"inliers": p.inliers, "matches": p.matches, "mirrored": p.mirrored, **p.map}
                )
            by_group[index_of[p.first]].append(entry)
        return {
            **self.counts(),
            "overlay_pixels": int(self.overlay.sum()),
            "overlay_share_of_image": round(float(self.overlay.mean()), 4),
            "groups": [
                {
                    "files": [self.keys[i] for i in group],
                    "classes": sorted({self.classes[self.labels[i]] for i in group}),
                    "pairs": by_group[n],
                }
                for n, group in enumerate(self.groups)
            ],
        }

    def summary(self) -> str:
        """One line for the stage log."""
        m = self.counts()
        overlay = (
            f"an overlay of {self.overlay.mean():.1%} of the image left out"
            if self.overlay.any()
            else "no overlay"
        )
        dropped = f", {m['dropped']} images dropped" if m["dropped"] else ""
        return (
            f"{m['images_in_copy_groups']} of {m['sources']} source images are in "
            f"{m['copy_groups']} groups of copies ({m['pairs_verified']} pairs verified, "
            f"{m['label_conflicts']} label conflicts{dropped}); {overlay}"
        )


# --- 1. the overlay -----------------------------------------------------------------------------


def _patches(grey: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(n, P) the grey values of the PATCH x PATCH square around each position (n, 2) of a
    WORK_SIZE image, its edges repeated outward."""
    half = PATCH // 2
    padded = np.pad(grey, half, mode="edge")
    at = np.clip(np.rint(xy), 0, WORK_SIZE - 1).astype(int)
    offsets = np.arange(PATCH)
    rows = at[:, 1, None, None] + offsets[None, :, None]
    cols = at[:, 0, None, None] + offsets[None, None, :]
    return padded[rows, cols].reshape(len(xy), -1)


def overlay_mask(sample: Sequence[tuple[np.ndarray, Keypoints]], share: float) -> np.ndarray:
    """The WORK_SIZE mask of content burned in at the same place in many images.

    `sample` holds (grey image at WORK_SIZE, its keypoints) for some images of the data set. A
    keypoint is burned in when the PATCH-square around it is the same, at the same place, in at
    least `share` of the other images and in OVERLAY_MIN_IMAGES of them: correlated by at least
    TWIN_CORRELATION and within TWIN_LEVELS grey levels on average (a burned-in mark is the same
    pixels in every image; cells at one place in two images are not), and not flat (a grey
    standard deviation of TWIN_CONTRAST at least). The mask is a disc of OVERLAY_RADIUS pixels
    around each burned-in keypoint.
    """
    mask = np.zeros((WORK_SIZE, WORK_SIZE), bool)
    if len(sample) < 2:
        return mask
    need = max(OVERLAY_MIN_IMAGES, share * (len(sample) - 1))
    greys = np.stack([grey for grey, _ in sample])
    for i, (_, found) in enumerate(sample):
        if not len(found):
            continue
        mine = _patches(greys[i], found.xy)  # (n, P)
        centred = mine - mine.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(centred, axis=1)
        twins = np.zeros(len(found), np.int64)
        others = [j for j in range(len(sample)) if j != i]
        for start in range(0, len(others), TWIN_BLOCK):  # (J, n, P) at a time: bounded memory
            theirs = np.stack([_patches(greys[j], found.xy) for j in others[start:][:TWIN_BLOCK]])
            close = np.abs(theirs - mine).mean(axis=2) <= TWIN_LEVELS
            theirs -= theirs.mean(axis=2, keepdims=True)
            correlation = np.einsum("np,jnp->jn", centred, theirs) / np.maximum(
                norm * np.linalg.norm(theirs, axis=2), 1e-12
            )
            twins += ((correlation >= TWIN_CORRELATION) & close).sum(axis=0)
        burned = (twins >= need) & (mine.std(axis=1) >= TWIN_CONTRAST)
        at = np.clip(np.rint(found.xy[burned]), 0, WORK_SIZE - 1).astype(int)
        mask[at[:, 1], at[:, 0]] = True
    if not mask.any():
        return mask
    offsets = np.arange(-OVERLAY_RADIUS, OVERLAY_RADIUS + 1)
    disc = np.hypot(*np.meshgrid(offsets, offsets)) <= OVERLAY_RADIUS
    return scipy.ndimage.binary_dilation(mask, structure=disc)


# --- 2. keypoints -------------------------------------------------------------------------------


def views(pixels: np.ndarray, n: int, overlay: np.ndarray) -> Views:
    """An image's keypoints and its mirror image's, off the overlay (mirrored for the mirror)."""
    return Views(
        detect(pixels, n, exclude=overlay, pad=True, budget=BUDGET * n),
        detect(pixels[:, ::-1], n, exclude=overlay[:, ::-1], pad=True, budget=BUDGET * n),
    )


def _views_of(n: int, overlay: np.ndarray, source: _Source) -> tuple[int, Views]:
    """Run in a worker process."""
    return source.index, views(source.pixels, n, overlay)


def _plain_of(n: int, source: _Source) -> tuple[np.ndarray, Keypoints]:
    """An image in grey at WORK_SIZE and its keypoints, nothing left out (the overlay search);
    run in a worker process."""
    grey = rgb2gray(resize(source.pixels, WORK_SIZE))
    return grey, detect(source.pixels, n, pad=True, budget=BUDGET * n)


# --- 3. the shortlist ---------------------------------------------------------------------------


def _table_keys(bits: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(M,) hash of each packed descriptor (M, 32): its bytes at `columns`, as one integer."""
    key = np.zeros(len(bits), np.int64)
    for column in columns:
        key = (key << 8) | bits[:, column]
    return key


def collisions(bits: np.ndarray, owner: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """(C, 2) pairs of keypoints (rows of `bits`) of two images that share a hash in some table
    and lie fewer than NEIGHBOURS apart in its bucket, each pair once, in order: the second of a
    plain view, the first of either (pairs of two mirror views say what pairs of two plain ones
    say)."""
    rng = np.random.default_rng(0)  # the tables' bits: the same on every run
    m = len(bits)
    found = []
    for _ in range(TABLES):
        key = _table_keys(bits, rng.choice(32, TABLE_BYTES, replace=False))
        order = np.argsort(key, kind="stable").astype(np.int64)
        key = key[order]
        new = np.r_[True, key[1:] != key[:-1]]
        del key
        bucket = np.cumsum(new) - 1
        size = np.bincount(bucket)
        at = np.flatnonzero((size[bucket] >= 2) & (size[bucket] <= BUCKET_CAP))
        codes = []
        for gap in range(1, NEIGHBOURS):
            same = bucket[at[:-gap]] == bucket[at[gap:]]
            if not same.any():
                break
            a, b = order[at[:-gap][same]], order[at[gap:][same]]
            keep = (owner[a] != owner[b]) & ~(mirrored[a] & mirrored[b])
            a, b = a[keep], b[keep]
            swap = mirrored[b] | (~mirrored[a] & (owner[a] > owner[b]))
            codes.append(np.where(swap, b * m + a, a * m + b))
        if codes:
            found.append(np.unique(np.concatenate(codes)))
    code = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    return np.column_stack([code // m, code % m])


def consistent_votes(
    pairs: np.ndarray, owner: np.ndarray, mirrored: np.ndarray, found: Keypoints
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair of images (and whether the first is mirrored): the most colliding keypoint pairs
    that agree with the map one of them proposes. Returns (keys (P,) as (image * n_images +
    other) * 2 + mirrored, votes (P,)), for the pairs with at least SHORTLIST_VOTES
    collisions."""
    n_images = int(owner.max()) + 1 if len(owner) else 0
    key = (owner[pairs[:, 0]] * n_images + owner[pairs[:, 1]]) * 2 + mirrored[pairs[:, 0]]
    order = np.argsort(key, kind="stable")
    key, pairs = key[order], pairs[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, len(key)])
    keep = np.flatnonzero(sizes >= SHORTLIST_VOTES)
    votes = np.zeros(len(keep), np.int64)
    squares = sizes[keep] ** 2
    done = 0
    while done < len(keep):  # image pairs in chunks of at most VOTE_CHUNK (proposal, pair)s
        stop = done + max(1, int(np.searchsorted(np.cumsum(squares[done:]), VOTE_CHUNK)))
        part, sq = keep[done:stop], squares[done:stop]
        first = np.repeat(starts[part], sq)
        offset = np.arange(sq.sum()) - np.repeat(np.cumsum(sq) - sq, sq)
        size = np.repeat(sizes[part], sq)
        h, k = first + offset // size, first + offset % size
        linear, shift = proposals(found, found, pairs[h])
        predicted = np.einsum("mij,mj->mi", linear, found.xy[pairs[k, 0]]) + shift
        agree = np.linalg.norm(predicted - found.xy[pairs[k, 1]], axis=1) < PROPOSAL_TOLERANCE
        per_proposal = np.bincount(h - starts[part[0]], weights=agree)
        votes[done:stop] = np.maximum.reduceat(per_proposal, starts[part] - starts[part[0]])
        done = stop
    return key[starts[keep]], votes


def shortlist(found: Sequence[Views], candidates: int) -> list[tuple[int, int, bool]]:
    """The pairs of images to verify, (first, second, whether the first is mirrored), in order:
    for each image, its `candidates` pairs with the most agreeing collisions, of those with at
    least SHORTLIST_VOTES."""
    strongest = slice(0, INDEXED)
    parts = [(v.plain.take(strongest), False) for v in found]
    parts += [(v.mirrored.take(strongest), True) for v in found]
    n = len(found)
    owner = np.concatenate([np.full(len(k), i % n) for i, (k, _) in enumerate(parts)])
    mirrored = np.concatenate([np.full(len(k), m) for k, m in parts]).astype(bool)
    everything = Keypoints(
        np.concatenate([k.xy for k, _ in parts]),
        np.concatenate([k.bits for k, _ in parts]),
        np.concatenate([k.angle for k, _ in parts]),
        np.concatenate([k.scale for k, _ in parts]),
    )
    hits = collisions(everything.bits, owner, mirrored)
    keys, votes = consistent_votes(hits, owner, mirrored, everything)
    good = votes >= SHORTLIST_VOTES
    keys, votes = keys[good], votes[good]
    first, second, mirror = keys // 2 // n, keys // 2 % n, (keys % 2).astype(bool)
    chosen: set[tuple[int, int, bool]] = set()
    for side in (first, second):  # each image's best, on either side of the pair
        order = np.lexsort((keys, -votes, side))
        rank = np.arange(len(order)) - np.searchsorted(side[order], side[order])
        for i in order[rank < candidates]:
            chosen.add((int(first[i]), int(second[i]), bool(mirror[i])))
    return sorted(chosen)


# --- 4. verification ----------------------------------------------------------------------------


def _in_frame(xy: np.ndarray) -> np.ndarray:
    return ((xy >= 0) & (xy < WORK_SIZE)).all(axis=1)


def shown_by_both(a: Keypoints, b: Keypoints, fit: Fit) -> int:
    """Keypoints in the part of the field both images show, under the map: the fewer of the two
    images' counts (keypoints in the mirrored margins left out)."""
    inverse = np.linalg.inv(fit.linear)
    in_a = _in_frame(a.xy) & _in_frame(a.xy @ fit.linear.T + fit.shift)
    in_b = _in_frame(b.xy) & _in_frame((b.xy - fit.shift) @ inverse.T)
    return int(min(in_a.sum(), in_b.sum()))


def verify(a: Views, b: Views, mirrored: bool) -> tuple[int, int, dict[str, float]]:
    """(agreeing places, pairs, the map and the share of the keypoints in the part both images
    show that agree) of image a (mirrored or not) against image b."""
    mine, theirs = a.view(mirrored), b.plain
    pairs = match(mine, theirs, ratio=RATIO)
    fit = fit_similarity(mine, theirs, pairs, MAX_SCALE, MAX_ANISOTROPY)
    if fit.linear is None:
        return 0, len(pairs), {}
    share = fit.count / max(shown_by_both(mine, theirs, fit), 1)
    return fit.count, len(pairs), {**fit.describe(), "agreeing_share": round(share, 3)}


def copies_by(inliers: int, how: dict[str, float], min_inliers: int) -> bool:
    """Whether a verification makes two images copies: enough places agree, and they are not a
    small share of what both images show (one cell alike in two fields is not a copy)."""
    return inliers >= min_inliers and how.get("agreeing_share", 0) >= MIN_AGREEING


def _verify_chunk(
    chunk: tuple[list[tuple[int, int, bool]], dict[int, Views]],
) -> list[tuple[int, int, dict[str, float]]]:
    """Run in a worker process: verify a chunk of shortlisted pairs, given their keypoints."""
    todo, found = chunk
    return [verify(found[i], found[j], m) for i, j, m in todo]


# --- 5. groups ----------------------------------------------------------------------------------


def components(n: int, edges: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The connected components of more than one node, each sorted, in order of their first."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in edges:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members = defaultdict(list)
    for i in range(n):
        members[root(i)].append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


# --- the stage ----------------------------------------------------------------------------------


def _sample(n: int) -> list[int]:
    """Up to OVERLAY_SAMPLE indices spread evenly over range(n)."""
    return sorted({round(x) for x in np.linspace(0, n - 1, min(n, OVERLAY_SAMPLE))})


def _decoded(paths: Sequence[Path], data: DataParams) -> Iterator[np.ndarray]:
    """The images at `paths`, decoded as ingest does; bad ones are left out (the main pass
    reports them as `data.on_bad_image` says)."""
    for path in paths:
        try:
            yield ingest.decode(
                path,
                max_pixels=data.max_image_pixels,
                min_side=data.min_image_side,
                square=data.square,
            )[0]
        except ingest.BadImage:
            continue


def find(folder: Path, data: DataParams, params: CopiesParams) -> Result:
    """Find the copies among the source images of the data folder `folder`."""
    listing = ingest.list_dataset(folder)
    n_keypoints = params.keypoints
    sample = [listing.items[i].path for i in _sample(len(listing.items))]
    plain = parallel.map_ordered(
        functools.partial(_plain_of, n_keypoints),
        (_Source(i, x) for i, x in enumerate(_decoded(sample, data))),
        workers=params.workers,
    )
    overlay = overlay_mask(
        list(progress.track(plain, len(sample), "copies: overlay")), params.overlay_share
    )

    report = ingest.Report(listing.classes)
    keys: list[str] = []
    labels: list[int] = []
    pairs: list[Pair] = []
    index_of: dict[str, int] = {}

    def unique_sources() -> Iterator[_Source]:
        for img in ingest.load(listing, report, data, grouped=False, across_classes=True):
            index_of[img.key] = len(keys)
            keys.append(img.key)
            labels.append(img.item.label)
            if img.source != img.key:  # identical pixels: no keypoints needed
                pairs.append(Pair(index_of[img.source], index_of[img.key], "identical pixels"))
                continue
            yield _Source(index_of[img.key], img.pixels)

    found: dict[int, Views] = {}
    task = functools.partial(_views_of, n_keypoints, overlay)
    done = parallel.map_ordered(task, unique_sources(), workers=params.workers)
    for i, seen in progress.track(done, len(listing.items), "copies: keypoints"):
        found[i] = seen
    order = sorted(found)
    local = shortlist([found[i] for i in order], params.candidates)
    todo = [(order[i], order[j], m) for i, j, m in local]
    chunks = [todo[s : s + 64] for s in range(0, len(todo), 64)]
    checked = parallel.map_ordered(
        _verify_chunk,
        ((c, {i: found[i] for p in c for i in p[:2]}) for c in chunks),
        workers=params.workers,
    )
    results = [
        r for chunk in progress.track(checked, len(chunks), "copies: verify") for r in chunk
    ]
    best: dict[tuple[int, int], Pair] = {}  # the pair's best verification, in its direction
    for (i, j, m), (inliers, matches, how) in zip(todo, results, strict=True):
        key = (min(i, j), max(i, j))
        copy = copies_by(inliers, how, params.min_inliers)
        if copy and (key not in best or inliers > best[key].inliers):
            best[key] = Pair(i, j, "keypoints", inliers, matches, m, how)
    pairs += [best[k] for k in sorted(best)]
    groups = components(len(keys), [(p.first, p.second) for p in pairs])
    dropped = _label_conflicts(listing, keys, labels, pairs, groups, params)
    return Result(listing.classes, keys, labels, pairs, groups, overlay, dropped, len(todo))


def _label_conflicts(
    listing: ingest.Listing,
    keys: list[str],
    labels: list[int],
    pairs: list[Pair],
    groups: list[list[int]],
    params: CopiesParams,
) -> list[str]:
    """The files of groups that span two classes, to drop; or an error naming two of them."""
    drop = params.on_label_conflict == "drop"  # read on every run: the outputs depend on it
    dropped = []
    for group in groups:
        if len({labels[i] for i in group}) < 2:
            continue
        if drop:
            dropped += [keys[i] for i in group]
            continue
        inside = set(group)
        p = next(p for p in pairs if p.first in inside and labels[p.first] != labels[p.second])
        why = (
            "identical pixels"
            if p.how == "identical pixels"
            else (f"{p.inliers} keypoints agree with one map")
        )
        raise DataError(
            f"{listing.folder / keys[p.first]} and {listing.folder / keys[p.second]} show the "
            f"same cells ({why}) under two classes, '{listing.classes[labels[p.first]]}' and "
            f"'{listing.classes[labels[p.second]]}'; fix the labels, or set "
            "copies.on_label_conflict: drop to leave such groups out"
        )
    return sorted(dropped)


# --- the gallery --------------------------------------------------------------------------------


def gallery_pairs(result: Result) -> list[Pair]:
    """The pairs a person should look at first: across classes, then the fewest agreeing
    keypoint pairs (the closest calls), up to GALLERY."""
    shown = [p for p in result.pairs if p.how == "keypoints"] or list(result.pairs)
    shown.sort(key=lambda p: (result.labels[p.first] == result.labels[p.second], p.inliers))
    return shown[:GALLERY]


def gallery(result: Result, folder: Path, data: DataParams) -> Figure:
    """A figure of the pairs of `gallery_pairs`, each image at WORK_SIZE, with the overlay."""
    from blastcell import figures, images

    rows, titles = [], []
    for p in gallery_pairs(result):
        a, b = (
            images.resize(next(_decoded([folder / result.keys[i]], data)), WORK_SIZE)
            for i in (p.first, p.second)
        )
        rows.append([a, b])
        detail = (
            f"{p.inliers} pairs agree" + (", mirrored" if p.mirrored else "")
            if p.how == "keypoints"
            else p.how
        )
        titles.append(
            f"{result.keys[p.first]} ({result.classes[result.labels[p.first]]})\n"
            f"{result.keys[p.second]} ({result.classes[result.labels[p.second]]})\n{detail}"
        )
    mask = np.repeat(result.overlay[..., np.newaxis] * np.uint8(255), 3, axis=2)
    return figures.copy_gallery(rows, titles, mask)
