"""Sentiment140 download and sampling, against a local HTTP server serving a generated zip."""

from __future__ import annotations

import csv
import http.server
import io
import threading
import zipfile

import pytest
from click.testing import CliRunner

from similar_images.cli import main
from similar_images.text import corpus

TRAINING = "training.1600000.processed.noemoticon.csv"


def make_archive(rows: int = 300) -> bytes:
    """A zip laid out like Sentiment140's: Latin-1 CSVs without a header."""
    lines = io.StringIO()
    writer = csv.writer(lines, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for i in range(rows):
        text = f"tweet number {i}, caf\xe9 &amp; more"
        writer.writerow([0 if i % 2 else 4, 1000 + i, "Mon Apr 06 22:19:45 PDT 2009", "NO_QUERY", f"user{i}", text])
    lines.write('"4","9","bad row with too few fields"\n')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("testdata.manual.2009.06.14.csv", '"4","1","d","q","u","test set tweet"\n'.encode("latin-1"))
        archive.writestr(TRAINING, lines.getvalue().encode("latin-1"))
    return buffer.getvalue()


class Server:
    """Serves ``payload`` at /data.zip, honouring Range unless ``ranges`` is false."""

    def __init__(self, payload: bytes, ranges: bool = True):
        self.payload, self.ranges, self.requests = payload, ranges, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.headers.get("Range"))
                if self.path != "/data.zip":
                    self.send_error(404)
                    return
                start = 0
                if outer.ranges and self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                body = outer.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def archive_bytes():
    return make_archive()


@pytest.fixture
def server(archive_bytes):
    s = Server(archive_bytes)
    yield s
    s.close()


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_download_then_sample(tmp_path, server, archive_bytes):
    dest = corpus.download(server.url + "/data.zip", tmp_path / "t.zip", show_progress=False)
    assert dest.read_bytes() == archive_bytes
    assert not (tmp_path / "t.zip.part").exists()

    summary = corpus.sample_tweets(dest, tmp_path / "tweets.csv", n=50, seed=3)
    assert summary == {"output": str(tmp_path / "tweets.csv"), "count": 50, "total": 300, "seed": 3}
    rows = read_csv(tmp_path / "tweets.csv")
    assert len(rows) == 50 and list(rows[0]) == list(corpus.COLUMNS)
    numbers = [int(r["id"]) - 1000 for r in rows]
    assert numbers == sorted(numbers) and len(set(numbers)) == 50 and all(0 <= i < 300 for i in numbers)
    # Latin-1 decoded, HTML entities decoded, text matches its own row.
    for row, i in zip(rows, numbers):
        assert row["text"] == f"tweet number {i}, café & more"
        assert row["user"] == f"user{i}"


def test_sample_is_reproducible_and_seeded(tmp_path, archive_bytes):
    zip_path = tmp_path / "t.zip"
    zip_path.write_bytes(archive_bytes)
    a = corpus.sample_tweets(zip_path, tmp_path / "a.csv", n=40, seed=0)
    corpus.sample_tweets(zip_path, tmp_path / "b.csv", n=40, seed=0)
    corpus.sample_tweets(zip_path, tmp_path / "c.csv", n=40, seed=1)
    assert a["count"] == 40
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


def test_download_continues_a_partial_file(tmp_path, server, archive_bytes):
    half = len(archive_bytes) // 2
    (tmp_path / "t.zip.part").write_bytes(archive_bytes[:half])
    corpus.download(server.url + "/data.zip", tmp_path / "t.zip", show_progress=False)
    assert server.requests == [f"bytes={half}-"]
    assert (tmp_path / "t.zip").read_bytes() == archive_bytes


def test_download_starts_over_when_server_ignores_range(tmp_path, archive_bytes):
    server = Server(archive_bytes, ranges=False)
    try:
        (tmp_path / "t.zip.part").write_bytes(b"stale bytes")
        corpus.download(server.url + "/data.zip", tmp_path / "t.zip", show_progress=False)
    finally:
        server.close()
    assert (tmp_path / "t.zip").read_bytes() == archive_bytes


def test_download_errors_leave_no_file(tmp_path, server):
    with pytest.raises(corpus.DownloadError, match="HTTP error 404"):
        corpus.download(server.url + "/missing.zip", tmp_path / "t.zip", show_progress=False)
    assert not (tmp_path / "t.zip").exists()
    with pytest.raises(corpus.DownloadError, match="only http"):
        corpus.download("ftp://example.com/x.zip", tmp_path / "t.zip", show_progress=False)


def test_bad_sample_requests(tmp_path, archive_bytes):
    zip_path = tmp_path / "t.zip"
    zip_path.write_bytes(archive_bytes)
    with pytest.raises(ValueError, match="holds only 300"):
        corpus.sample_tweets(zip_path, tmp_path / "x.csv", n=301)
    with pytest.raises(ValueError, match="at least 1"):
        corpus.sample_tweets(zip_path, tmp_path / "x.csv", n=0)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(corpus.DownloadError, match="not a readable zip"):
        corpus.sample_tweets(tmp_path / "bad.zip", tmp_path / "x.csv", n=5)
    assert not (tmp_path / "x.csv").exists()


def test_cli_download(tmp_path, server, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["text", "download", "--url", server.url + "/data.zip", "-n", "25", "--seed", "7"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "25 of 300 tweets" in result.output
    assert len(read_csv(tmp_path / corpus.DEFAULT_CSV)) == 25
    assert (tmp_path / corpus.DEFAULT_ZIP).exists()

    again = runner.invoke(main, args)
    assert again.exit_code == 1 and "exists; use --force" in again.output

    bad = runner.invoke(main, ["text", "download", "--url", server.url + "/nope.zip", "-o", "o.csv", "--zip", "z.zip"])
    assert bad.exit_code == 1 and "HTTP error 404" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
