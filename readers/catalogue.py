"""Datasets by name: the standard datasets reclab knows, where they are published, their checksums, licences
and citations, fetched once into a cache folder and verified.

``--data NAME`` (any flow) accepts a catalogue name beside a path: :func:`locate` returns the dataset's folder,
the embedded one for the default dataset, else ``<cache>/<name>/`` (``RECLAB_DATA``, default
``~/.cache/reclab/datasets``), downloading what is missing with a progress line. Every file is checked against
its sha256; a mismatch or an interrupted download is a clear error and leaves no partial file (downloads go to
a ``.part`` file renamed only once verified). With no network, files already in the cache, or placed there by
hand as the error explains, are used. Archives (MovieLens' zips) are verified member by member, the members
this project reads. ``python -m flows.prepare --list-datasets`` prints the catalogue.

Licences that forbid redistribution (MovieLens 100K) are stated; nothing is copied into the repository.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from readers.errors import InputError
from readers.records import sha256

EMBEDDED = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class File:
    name: str  # its path inside the dataset's folder
    sha256: str
    size: int


@dataclass(frozen=True)
class Source:
    """One download: ``url`` is the file itself, or a zip whose members under ``member_prefix`` are the files."""

    url: str
    files: tuple[File, ...]
    member_prefix: str | None = None  # a zip archive: the folder its members sit in


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    sources: tuple[Source, ...]
    licence: str
    citation: str
    redistributable: bool
    embedded: bool = False  # shipped in the repository's data/ folder

    @property
    def files(self) -> tuple[File, ...]:
        return tuple(f for s in self.sources for f in s.files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


_AMAZON_TERMS = "research use; cite when you publish results"
_MOVIELENS_TERMS = "research use, no commercial use (GroupLens terms)"
_MOVIELENS = 'F. M. Harper and J. A. Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4):19, 2015'

CATALOGUE: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "amazon-musical-instruments-5core",
            "Amazon reviews 2014, Musical Instruments 5-core (10,261 reviews; the embedded default)",
            (
                Source(
                    "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Musical_Instruments_5.json.gz",
                    (
                        File(
                            "reviews_Musical_Instruments_5.json.gz",
                            "03f9cc27ae13a454cb4ea6cb620fb10546cc1194ef921441d1c5f34addff2748",
                            2460495,
                        ),
                    ),
                ),
            ),
            _AMAZON_TERMS,
            "R. He and J. McAuley, WWW 2016; J. McAuley et al., SIGIR 2015",
            redistributable=True,
            embedded=True,
        ),
        Dataset(
            "amazon2018-gift-cards",
            "Amazon reviews 2018, Gift Cards 5-core (2,972 reviews) and its product metadata",
            (
                Source(
                    "https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/Gift_Cards_5.json.gz",
                    (
                        File(
                            "Gift_Cards_5.json.gz",
                            "41e1f0e50d3c1c9d7d949fb6315944c8bde51ea6b7429a29fdd0d02cbc07ef25",
                            176952,
                        ),
                    ),
                ),
                Source(
                    "https://jmcauley.ucsd.edu/data/amazon_v2/metaFiles2/meta_Gift_Cards.json.gz",
                    (
                        File(
                            "meta_Gift_Cards.json.gz",
                            "24ac90af3eb47d9c04458a61a44a76a882419190e027c6ec14ee0a993549c34a",
                            389825,
                        ),
                    ),
                ),
            ),
            _AMAZON_TERMS,
            "J. Ni, J. Li and J. McAuley, EMNLP 2019",
            redistributable=True,
        ),
        Dataset(
            "movielens-latest-small",
            "MovieLens latest-small, 2018-09-26 (100,836 ratings, titles, genres, tags)",
            (
                Source(
                    "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
                    (
                        File(
                            "ratings.csv", "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646", 2483723
                        ),
                        File("movies.csv", "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07", 494431),
                        File("tags.csv", "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d", 118660),
                        File("links.csv", "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31", 197979),
                        File("README.txt", "63d22ac138e80fae37021797ed8e1b9424b5239dc576a137422adf783ae3f404", 8342),
                    ),
                    member_prefix="ml-latest-small/",
                ),
            ),
            _MOVIELENS_TERMS + "; may be redistributed with its README",
            _MOVIELENS,
            redistributable=True,
        ),
        Dataset(
            "movielens-100k",
            "MovieLens 100K (100,000 ratings, user attributes, the canonical u1.base/u1.test split)",
            (
                Source(
                    "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                    (
                        File("u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490", 1979173),
                        File("u.item", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701", 236344),
                        File("u.user", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c", 22628),
                        File("u.genre", "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb", 202),
                        File("u.occupation", "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d", 193),
                        File("u.info", "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b", 36),
                        File("u1.base", "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a", 1586544),
                        File("u1.test", "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950", 392629),
                        File("README", "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52", 6750),
                    ),
                    member_prefix="ml-100k/",
                ),
            ),
            _MOVIELENS_TERMS + "; may NOT be redistributed: fetched by each user, never copied into a repository",
            _MOVIELENS,
            redistributable=False,
        ),
    )
}


def cache_root() -> Path:
    """Where fetched datasets live: ``RECLAB_DATA``, else ``$XDG_CACHE_HOME/reclab/datasets`` (``~/.cache``)."""
    if os.environ.get("RECLAB_DATA"):
        return Path(os.environ["RECLAB_DATA"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "reclab" / "datasets"


def _valid(path: Path, file: File) -> bool:
    return path.is_file() and path.stat().st_size == file.size and sha256(path) == file.sha256


def folder_of(dataset: Dataset, root: Path | None = None) -> Path:
    """The folder a dataset's files are read from (the embedded one ships with the project)."""
    return EMBEDDED / dataset.name if dataset.embedded else (root or cache_root()) / dataset.name


def cached(dataset: Dataset, root: Path | None = None) -> bool:
    folder = folder_of(dataset, root)
    return all(_valid(folder / f.name, f) for f in dataset.files)


def locate(
    name: str,
    root: Path | None = None,
    *,
    log: Callable[[str], None] | None = None,
    opener: Callable = urllib.request.urlopen,
) -> Path:
    """The folder of catalogue dataset ``name``, fetching and verifying the files it lacks."""
    if name not in CATALOGUE:
        raise InputError(f"{name!r} is neither a path nor a catalogue dataset; known: {', '.join(CATALOGUE)}")
    dataset = CATALOGUE[name]
    folder = folder_of(dataset, root)
    log = log or logging.getLogger("reclab.progress").info  # the run's log and the terminal
    for source in dataset.sources:
        missing = [f for f in source.files if not _valid(folder / f.name, f)]
        if missing:
            _fetch(dataset, source, folder, missing, log, opener)
    return folder


def _fetch(dataset: Dataset, source: Source, folder: Path, missing, log, opener) -> None:
    by_hand = (
        f"with no network, download {source.url} yourself and place "
        f"{', '.join(f.name for f in missing)} in {folder} (the checksums are in readers/catalogue.py)"
    )
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{Path(source.url).name}.part"
    try:
        _download(source.url, part, sum(f.size for f in missing) if source.member_prefix is None else None, log, opener)
        if source.member_prefix is None:
            _install(part, folder / missing[0].name, missing[0], source.url)
        else:
            with zipfile.ZipFile(part) as archive:
                for file in missing:
                    member = source.member_prefix + file.name
                    try:
                        data = archive.read(member)
                    except KeyError:
                        raise InputError(f"{source.url} has no member {member}; {by_hand}") from None
                    staged = folder / f".{file.name}.part"
                    staged.write_bytes(data)
                    _install(staged, folder / file.name, file, f"{source.url} ({member})")
    except (urllib.error.URLError, OSError, zipfile.BadZipFile, _Truncated) as err:
        raise InputError(f"could not fetch dataset {dataset.name!r} from {source.url} ({err}); {by_hand}") from None
    finally:
        part.unlink(missing_ok=True)
    log(f"{dataset.name}: {', '.join(f.name for f in missing)} fetched and verified in {folder}")


class _Truncated(Exception):
    """The connection closed before the announced length arrived."""


def _download(url: str, part: Path, expected: int | None, log, opener) -> None:
    started = last = time.monotonic()
    done = 0
    with opener(url, timeout=60) as response, open(part, "wb") as out:
        length = int(response.headers.get("Content-Length") or 0)  # announced by the server (0: not said)
        total = length or expected
        while block := response.read(1 << 16):
            out.write(block)
            done += len(block)
            if time.monotonic() - last >= 10:  # a line at most every 10 s, readable in a log
                last = time.monotonic()
                share = f" of {total / 1e6:.1f} MB ({done / total:.0%})" if total else ""
                log(f"fetching {url}: {done / 1e6:.1f} MB{share}, {done / 1e6 / (last - started):.1f} MB/s")
        if length and done < length:
            raise _Truncated(f"interrupted after {done:,} of {length:,} bytes")


def _install(staged: Path, target: Path, file: File, where: str) -> None:
    """Move a verified file into place; a wrong checksum removes it and says so."""
    got = sha256(staged)
    if got != file.sha256:
        staged.unlink(missing_ok=True)
        raise InputError(
            f"{file.name} from {where} has sha256 {got}, not the catalogue's {file.sha256}: the download is "
            "corrupt or the published file changed; nothing was kept"
        )
    staged.replace(target)


def listing(root: Path | None = None) -> str:
    """The catalogue as a table: name, size, licence, whether its files are in the cache (verified)."""
    lines = [f"{'name':<34}{'size':>9}  {'cached':<10}licence", "-" * 100]
    for d in CATALOGUE.values():
        where = "embedded" if d.embedded else ("yes" if cached(d, root) else "no")
        lines.append(f"{d.name:<34}{d.size / 1e6:>7.1f}MB  {where:<10}{d.licence}")
        lines.append(f"{'':<34}{d.title}; cite: {d.citation}")
    lines.append(f"\ncache folder: {root or cache_root()} (set RECLAB_DATA to move it)")
    return "\n".join(lines)
