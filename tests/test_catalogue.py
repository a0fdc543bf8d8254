"""Datasets by name: fetched from a local HTTP server (no internet), verified, cached, and every failure a
clear error that leaves no partial file."""

from __future__ import annotations

import hashlib
import io
import threading
import urllib.error
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from readers import InputError, catalogue, resolve_dataset
from readers.catalogue import CATALOGUE, Dataset, File, Source, locate

RATINGS = b"userId,movieId,rating,timestamp\r\n1,10,4.0,964982703\r\n1,20,3.5,964981247\r\n2,10,5.0,964982224\r\n"
MOVIES = b"movieId,title,genres\r\n10,Heat (1995),Action|Crime\r\n20,Up (2009),Animation\r\n"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _file(name: str, data: bytes) -> File:
    return File(name, hashlib.sha256(data).hexdigest(), len(data))


@pytest.fixture
def server():
    """A local HTTP server: ``routes`` maps a path to its bytes; ``/cut/...`` announces more than it sends."""
    routes: dict[str, bytes] = {}
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            hits.append(self.path)
            body = routes.get(self.path.removeprefix("/cut"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            cut = self.path.startswith("/cut")
            self.send_header("Content-Length", str(len(body) * (2 if cut else 1)))
            self.end_headers()
            self.wfile.write(body)  # a cut transfer closes here, short of its announced length

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", routes, hits
    httpd.shutdown()
    httpd.server_close()


def _tiny(monkeypatch, url: str, name: str = "tiny-lens", files=None) -> Dataset:
    files = files or (_file("ratings.csv", RATINGS), _file("movies.csv", MOVIES))
    dataset = Dataset(name, "a tiny MovieLens", (Source(url, files, member_prefix="tiny/"),), "test", "none", True)
    monkeypatch.setitem(CATALOGUE, name, dataset)
    return dataset


def test_fetch_verify_and_read_by_name(server, monkeypatch, tmp_path):
    base, routes, hits = server
    routes["/tiny.zip"] = _zip({"tiny/ratings.csv": RATINGS, "tiny/movies.csv": MOVIES, "tiny/other.txt": b"x"})
    _tiny(monkeypatch, f"{base}/tiny.zip")
    monkeypatch.setenv("RECLAB_DATA", str(tmp_path))
    lines: list[str] = []
    folder = locate("tiny-lens", log=lines.append)
    assert folder == tmp_path / "tiny-lens"
    assert (folder / "ratings.csv").read_bytes() == RATINGS and (folder / "movies.csv").read_bytes() == MOVIES
    assert sorted(p.name for p in folder.iterdir()) == ["movies.csv", "ratings.csv"]  # no part file, no extra
    assert lines and "fetched and verified" in lines[-1]
    # --data NAME: the readers find the files in the cached folder, and the dataset is named after the entry
    spec = resolve_dataset("tiny-lens")
    assert spec.name == "tiny-lens" and spec.format == "movielens"
    assert spec.files["interactions"] == folder / "ratings.csv"
    # a cache hit asks the server nothing
    asked = len(hits)
    locate("tiny-lens", log=lines.append)
    assert len(hits) == asked == 1


def test_a_checksum_mismatch_is_an_error_and_keeps_nothing(server, monkeypatch, tmp_path):
    base, routes, _ = server
    routes["/tiny.zip"] = _zip({"tiny/ratings.csv": RATINGS + b"3,30,1.0,1\r\n", "tiny/movies.csv": MOVIES})
    _tiny(monkeypatch, f"{base}/tiny.zip")
    with pytest.raises(
        InputError, match=r"ratings.csv from .*tiny.zip \(tiny/ratings.csv\) has sha256 .*nothing was kept"
    ):
        locate("tiny-lens", tmp_path, log=print)
    assert not (tmp_path / "tiny-lens" / "ratings.csv").exists()
    assert not list((tmp_path / "tiny-lens").glob(".*part"))


def test_an_interrupted_transfer_is_an_error_and_leaves_no_partial_file(server, monkeypatch, tmp_path):
    base, routes, _ = server
    data = b"one line of a file\n" * 100
    routes["/f.txt"] = data
    dataset = Dataset("cut", "cut", (Source(f"{base}/cut/f.txt", (_file("f.txt", data),)),), "test", "none", True)
    monkeypatch.setitem(CATALOGUE, "cut", dataset)
    with pytest.raises(InputError, match=r"could not fetch dataset 'cut' .*interrupted after 1,900 of 3,800 bytes"):
        locate("cut", tmp_path, log=print)
    assert list((tmp_path / "cut").iterdir()) == []  # neither the file nor its .part


def test_offline_uses_the_cache_or_says_where_to_put_the_files(monkeypatch, tmp_path):
    _tiny(monkeypatch, "http://example.invalid/tiny.zip")

    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    with pytest.raises(InputError) as caught:
        locate("tiny-lens", tmp_path, log=print, opener=offline)
    message = str(caught.value)
    assert "no network" in message and f"place ratings.csv, movies.csv in {tmp_path / 'tiny-lens'}" in message
    # the files placed by hand (the same bytes): used without a request
    (tmp_path / "tiny-lens" / "ratings.csv").write_bytes(RATINGS)
    (tmp_path / "tiny-lens" / "movies.csv").write_bytes(MOVIES)
    assert locate("tiny-lens", tmp_path, log=print, opener=offline) == tmp_path / "tiny-lens"
    # a file placed by hand that is not the catalogue's is fetched again (and offline, that is the error)
    (tmp_path / "tiny-lens" / "movies.csv").write_bytes(MOVIES + b"30,Other,Drama\r\n")
    with pytest.raises(InputError, match="place movies.csv in"):
        locate("tiny-lens", tmp_path, log=print, opener=offline)


def test_unknown_names_and_the_listing():
    with pytest.raises(InputError, match="no-such-dataset does not exist, nor is it a catalogue dataset"):
        resolve_dataset("no-such-dataset")
    with pytest.raises(InputError, match="neither a path nor a catalogue dataset"):
        locate("no-such-dataset")
    text = catalogue.listing()
    for name in (
        "amazon-musical-instruments-5core",
        "amazon2018-gift-cards",
        "movielens-latest-small",
        "movielens-100k",
    ):
        assert name in text
    assert "may NOT be redistributed" in text  # MovieLens 100K's licence, stated
    # the embedded default dataset is the catalogue's file, byte for byte
    embedded = CATALOGUE["amazon-musical-instruments-5core"]
    assert catalogue.cached(embedded)


@pytest.mark.skipif(
    not (catalogue.Path(__file__).resolve().parents[2] / "shared" / "data").is_dir(), reason="no shared data"
)
def test_the_catalogue_checksums_are_those_of_the_shared_copies(monkeypatch):
    """This project's machines hold verified copies of every catalogue dataset: the catalogue agrees with them."""
    monkeypatch.setenv("RECLAB_DATA", str(catalogue.Path(__file__).resolve().parents[2] / "shared" / "data"))
    for dataset in CATALOGUE.values():
        assert catalogue.cached(dataset), dataset.name
