"""The download helper against a local HTTP server on 127.0.0.1 (there is no internet here)."""
import gzip
import hashlib
import io
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nextitem.cli import main
from nextitem.config import ConfigError
from nextitem.data import download as dl
from nextitem.data.download import Dataset, DownloadError, ManualDownloadRequired, RemoteFile, download

BODY = bytes(range(256)) * 4099  # ~1 MB: more than one read chunk, not a multiple of it


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (body, options)``; options: ranges (answer Range with 206),
    cut (close the connection after this many body bytes), status (answer with this error)."""

    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get("Range")))
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        body, opts = route
        if "status" in opts:
            self.send_error(opts["status"])
            return
        start, asked = 0, self.headers.get("Range")
        if asked and opts.get("ranges"):
            start = int(asked.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if "cut" in opts:
            payload = payload[:opts["cut"]]
            self.close_connection = True
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # loopback must not go through a proxy
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.routes, srv.seen = {}, []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_file(srv, path="/f.bin", body=BODY, size=None, sha256=None, archive=False, **opts):
    srv.routes[path] = (body, opts)
    name = os.path.basename(path)
    return Dataset("test", "a test file", (RemoteFile(name, srv.url + path, size, sha256, archive=archive),), "page", "terms")


def quiet(**kw):
    return dict(progress=False, log=lambda m: None, **kw)


def test_download_checks_size_and_hash(server, tmp_path):
    ds = one_file(server, size=len(BODY), sha256=sha(BODY))
    [path] = download(ds, tmp_path, **quiet())
    assert path == str(tmp_path / "f.bin")
    assert open(path, "rb").read() == BODY
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]  # no .part left


def test_unpinned_hash_is_printed_for_the_user_to_pin(server, tmp_path):
    ds = one_file(server)
    messages = []
    download(ds, tmp_path, progress=False, log=messages.append)
    assert sha(BODY) in messages[-1] and "pin" in messages[-1]


def test_hash_mismatch_deletes_everything(server, tmp_path):
    wrong = sha(b"another file")
    ds = one_file(server, size=len(BODY), sha256=wrong)
    with pytest.raises(DownloadError) as e:
        download(ds, tmp_path, **quiet())
    msg = str(e.value)
    assert server.url + "/f.bin" in msg and wrong in msg and sha(BODY) in msg
    assert os.listdir(tmp_path) == []


def test_size_mismatch_deletes_everything(server, tmp_path):
    ds = one_file(server, size=len(BODY) + 1)
    with pytest.raises(DownloadError, match=f"size mismatch: .*{len(BODY):,} bytes.*expects {len(BODY) + 1:,}"):
        download(ds, tmp_path, **quiet())
    assert os.listdir(tmp_path) == []


def test_longer_than_pinned_size_without_content_length(server, tmp_path, monkeypatch):
    # a server that announces no length: the pinned size still stops and rejects the transfer
    ds = one_file(server, size=1000)
    real_open = dl._open

    def no_length(url, start, timeout):
        response = real_open(url, start, timeout)
        del response.headers["Content-Length"]
        response.length = None
        return response

    monkeypatch.setattr(dl, "_open", no_length)
    with pytest.raises(DownloadError, match="expects 1,000"):
        download(ds, tmp_path, **quiet())
    assert os.listdir(tmp_path) == []


def test_server_error_names_the_address(server, tmp_path):
    ds = one_file(server, path="/gone.zip")
    del server.routes["/gone.zip"]
    with pytest.raises(DownloadError, match=r"/gone\.zip: the server answered 404") as e:
        download(ds, tmp_path, **quiet())
    assert "--url" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_interrupted_transfer_leaves_no_final_file(server, tmp_path):
    ds = one_file(server, sha256=sha(BODY), cut=300_000)
    with pytest.raises(DownloadError, match="stopped after 300,000 of 1,049,344 bytes"):
        download(ds, tmp_path, **quiet())
    assert not (tmp_path / "f.bin").exists()
    assert (tmp_path / "f.bin.part").stat().st_size == 300_000  # kept for a resume


def test_resume_with_range(server, tmp_path):
    ds = one_file(server, size=len(BODY), sha256=sha(BODY), ranges=True, cut=300_000)
    with pytest.raises(DownloadError):
        download(ds, tmp_path, **quiet())
    server.routes["/f.bin"] = (BODY, {"ranges": True})
    [path] = download(ds, tmp_path, **quiet())
    assert open(path, "rb").read() == BODY
    assert server.seen[-1] == ("/f.bin", "bytes=300000-")
    assert os.listdir(tmp_path) == ["f.bin"]


def test_resume_where_the_server_ignores_range(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes of an earlier try")
    ds = one_file(server, sha256=sha(BODY))  # no "ranges": answers 200 with the whole file
    [path] = download(ds, tmp_path, **quiet())
    assert server.seen[-1][1] is not None  # it asked for a range ...
    assert open(path, "rb").read() == BODY  # ... and started over on the 200


def test_part_longer_than_the_server_file_starts_over(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(b"x" * (len(BODY) + 10))
    ds = one_file(server, sha256=sha(BODY), ranges=True)  # 416 for the range, then the whole file
    [path] = download(ds, tmp_path, **quiet())
    assert open(path, "rb").read() == BODY


def test_present_file_is_not_fetched_again(server, tmp_path):
    ds = one_file(server, size=len(BODY), sha256=sha(BODY))
    download(ds, tmp_path, **quiet())
    n = len(server.seen)
    messages = []
    download(ds, tmp_path, progress=False, log=messages.append)
    assert len(server.seen) == n
    assert "verified" in messages[-1]


def test_present_file_that_does_not_match_is_an_error_and_kept(server, tmp_path):
    (tmp_path / "f.bin").write_bytes(BODY[:-1] + b"!")
    ds = one_file(server, size=len(BODY), sha256=sha(BODY))
    with pytest.raises(DownloadError, match="already there but its sha256"):
        download(ds, tmp_path, **quiet())
    assert server.seen == []
    assert (tmp_path / "f.bin").read_bytes().endswith(b"!")  # a user's file is never deleted


def zip_bytes(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_extract_zip(server, tmp_path):
    body = zip_bytes({"ml-x/ratings.dat": "1::2::5::978300760\n", "ml-x/movies.dat": "2::Toy::Comedy\n"})
    ds = one_file(server, path="/ml-x.zip", body=body, sha256=sha(body), archive=True)
    paths = download(ds, tmp_path, extract_archives=True, **quiet())
    assert paths == [str(tmp_path / "ml-x")]
    assert (tmp_path / "ml-x" / "ratings.dat").read_text() == "1::2::5::978300760\n"
    assert sorted(os.listdir(tmp_path)) == ["ml-x", "ml-x.zip"]  # no temporary folder left
    download(ds, tmp_path, extract_archives=True, **quiet())  # again: both already there
    assert len(server.seen) == 1


def test_extract_gz_and_a_damaged_archive(server, tmp_path):
    body = gzip.compress(b'{"asin": "B1", "title": "x"}\n')
    ds = one_file(server, path="/meta.json.gz", body=body, archive=True)
    assert download(ds, tmp_path, extract_archives=True, **quiet()) == [str(tmp_path / "meta.json")]
    assert (tmp_path / "meta.json").read_bytes() == b'{"asin": "B1", "title": "x"}\n'
    broken = tmp_path / "broken.zip"
    broken.write_bytes(zip_bytes({"a.txt": "x" * 1000})[:-30])
    with pytest.raises(DownloadError, match="broken.zip: could not be unpacked"):
        dl.extract(str(broken), str(tmp_path), log=lambda m: None)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".extract-")]


def test_manual_dataset_prints_the_steps_then_checks_the_files(tmp_path):
    ds = Dataset("kag", "a Kaggle dataset", (RemoteFile("events.csv"), RemoteFile("extra.csv", optional=True)),
                 "https://www.kaggle.com/datasets/someone/data", "CC BY-NC-SA 4.0",
                 manual=dl._kaggle("https://www.kaggle.com/datasets/someone/data"), access="a Kaggle login")
    with pytest.raises(ManualDownloadRequired) as e:
        download(ds, tmp_path, **quiet())
    msg = str(e.value)
    assert "kaggle datasets download someone/data" in msg and str(tmp_path) in msg and "events.csv" in msg
    (tmp_path / "events.csv").write_text("timestamp,visitorid,event,itemid,transactionid\n")
    assert download(ds, tmp_path, **quiet()) == [str(tmp_path / "events.csv")]


def test_url_override_keeps_the_pinned_checksum(server, tmp_path):
    server.routes["/mirror.zip"] = (BODY, {})
    ds = Dataset("one", "t", (RemoteFile("one.zip", "https://example.invalid/one.zip", sha256=sha(b"other")),), "p", "t")
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(ds, tmp_path, url=server.url + "/mirror.zip", **quiet())
    two = Dataset("two", "t", (RemoteFile("a"), RemoteFile("b")), "p", "t")
    with pytest.raises(ConfigError, match="one-file dataset"):
        download(two, tmp_path, url=server.url + "/mirror.zip", **quiet())


def test_registry_entries_are_well_formed():
    for name, ds in dl.DATASETS.items():
        assert name == ds.name and ds.files and ds.page.startswith("https://") and ds.terms
        assert bool(ds.manual) == bool(ds.access) == any(f.url is None for f in ds.files), name
        for f in ds.files:
            assert f.sha256 is None or (len(f.sha256) == 64 and int(f.sha256, 16) >= 0), name
            assert f.url is None or f.url.startswith("https://"), name
    # the recipes the issue names all have their data listed
    from nextitem.data.recipes import RECIPES
    listed = {r for ds in dl.DATASETS.values() for r in ds.recipes}
    assert set(RECIPES) <= listed


def test_cli_list_and_unknown_name(capsys, tmp_path):
    assert main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("yoochoose", "rees46", "coveo", "retailrocket", "diginetica", "ml-1m", "ml-20m", "ml-100k", "amazon-beauty"):
        assert f"\n{name}  " in "\n" + out
    assert "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20" in out
    assert main(["download", "ml1m", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'ml-1m'?" in capsys.readouterr().err
    assert main(["download", "rees46", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Kaggle" in err and "2019-Oct.csv" in err and "2019-Nov.csv" in err
    assert main(["download", "ml-1m"]) == 2  # no --out
    assert "--out" in capsys.readouterr().err


def test_cli_downloads_through_url(server, tmp_path, capsys):
    body = zip_bytes({"ml-100k/u.data": "1\t2\t5\t881250949\n"})
    server.routes["/ml-100k.zip"] = (body, {})
    # the pinned MovieLens checksum does not match this made-up archive: refused, nothing kept
    assert main(["download", "ml-100k", "--out", str(tmp_path), "--url", server.url + "/ml-100k.zip", "-q"]) == 2
    assert "size mismatch" in capsys.readouterr().err and os.listdir(tmp_path) == []
    registry = {"tiny": Dataset("tiny", "t", (RemoteFile("ml-100k.zip", server.url + "/ml-100k.zip", archive=True),), "p", "t")}
    args = dl.argparse.Namespace(list=False, name="tiny", out=str(tmp_path), url=None, extract=True, quiet=True)
    assert dl.run_command(args, registry) == 0
    assert (tmp_path / "ml-100k" / "u.data").exists()
