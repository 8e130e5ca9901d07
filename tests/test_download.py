"""`resbench data fetch` against a server on the loopback address serving a tiny archive in CIFAR-10's format."""
import hashlib
import http.server
import socket
import tarfile
import threading
from functools import partial

import pytest
from typer.testing import CliRunner

from resbench.cli.main import app
from resbench.data import DataError
from resbench.data.cifar import find_cifar10, load_cifar10
from resbench.data.download import Source, fetch_cifar10

from conftest import write_jpeg_root, write_original_root


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, md5 of its cifar-10-python.tar.gz): 10 images a batch; also other.tar.gz, holding no batches."""
    site = tmp_path_factory.mktemp("site")
    original = write_original_root(tmp_path_factory.mktemp("archive"), 10) / "cifar-10-batches-py"
    with tarfile.open(site / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(original, arcname="cifar-10-batches-py")
    with tarfile.open(site / "other.tar.gz", "w:gz") as tar:
        tar.add(original / "test_batch", arcname="other/test_batch")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", md5(site / "cifar-10-python.tar.gz"), md5(site / "other.tar.gz")
    httpd.shutdown()


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """No CIFAR-10 anywhere resbench looks (as in a fresh clone on a new machine); loopback not proxied."""
    monkeypatch.chdir(tmp_path)
    for name in ("RESBENCH_DATA", "RESBENCH_CIFAR10_URL", "RESBENCH_CIFAR10_MD5"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RESBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "*")
    return tmp_path


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def test_fetch_verifies_unpacks_and_the_original_is_then_found(server, fresh_clone):
    url, archive_md5, _ = server
    root = fresh_clone / "data-here"
    folder = fetch_cifar10(root, Source(f"{url}/cifar-10-python.tar.gz", archive_md5))
    assert folder == root / "cifar-10-batches-py" and [p.name for p in root.iterdir()] == ["cifar-10-batches-py"]
    data = load_cifar10(root)
    assert data.variant == "cifar10-original" and len(data.train_y) == 50 and len(data.test_y) == 10


def test_a_wrong_md5_is_a_one_line_error_and_leaves_nothing(server, fresh_clone):
    url, _, _ = server
    root = fresh_clone / "data-here"
    with pytest.raises(DataError, match="does not have md5 0{32}.*nothing was kept") as err:
        fetch_cifar10(root, Source(f"{url}/cifar-10-python.tar.gz", "0" * 32))
    assert "\n" not in str(err.value) and list(root.iterdir()) == []


def test_an_archive_without_the_batches_is_refused(server, fresh_clone):
    url, _, other_md5 = server
    root = fresh_clone / "data-here"
    with pytest.raises(DataError, match="holds no complete cifar-10-batches-py/"):
        fetch_cifar10(root, Source(f"{url}/other.tar.gz", other_md5))
    assert list(root.iterdir()) == []


def test_offline_one_line_says_where_to_put_the_data_and_which_formats(fresh_clone):
    root = fresh_clone / "data-here"
    with pytest.raises(DataError) as err:
        fetch_cifar10(root, Source(closed_port_url()))
    line = str(err.value)
    assert "\n" not in line and f"in {root}" in line and list(root.iterdir()) == []
    for needed in ("Without internet", "cifar-10-batches-py/", "cifar10-jpeg/ (train.npz, test.npz)",
                   "RESBENCH_CIFAR10_URL"):
        assert needed in line


def test_fetch_replaces_an_incomplete_batches_folder(server, fresh_clone):
    url, archive_md5, _ = server
    root = write_original_root(fresh_clone / "data-here")
    (root / "cifar-10-batches-py" / "data_batch_5").unlink()
    fetch_cifar10(root, Source(f"{url}/cifar-10-python.tar.gz", archive_md5))
    assert find_cifar10(root) == ("cifar-10-batches-py", root / "cifar-10-batches-py")
    assert len(load_cifar10(root).train_y) == 50


def test_cli_fetches_into_the_cache_where_runs_find_it_and_if_missing_is_then_a_no_op(server, fresh_clone,
                                                                                         monkeypatch):
    url, archive_md5, _ = server
    none = CliRunner().invoke(app, ["data"])
    assert none.exit_code == 1 and "resbench data fetch" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("RESBENCH_CIFAR10_URL", f"{url}/cifar-10-python.tar.gz")  # a mirror, by the environment
    monkeypatch.setenv("RESBENCH_CIFAR10_MD5", archive_md5)
    fetched = CliRunner().invoke(app, ["data", "fetch", "--if-missing"])
    assert fetched.exit_code == 0, fetched.output
    cache = fresh_clone / "cache" / "data" / "cifar-10-batches-py"
    assert find_cifar10() == ("cifar-10-batches-py", cache) and "the original (lossless)" in fetched.stdout
    # found now: no download is tried (the URL would fail)
    again = CliRunner().invoke(app, ["data", "fetch", "--if-missing", "--url", closed_port_url()])
    assert again.exit_code == 0 and "nothing fetched" in again.stdout
    shown = CliRunner().invoke(app, ["data"])
    assert shown.exit_code == 0 and str(cache) in shown.stdout.replace("\n", "")


def test_if_missing_is_a_no_op_when_the_jpeg_is_found_and_a_fetch_says_why_not_offline(fresh_clone, monkeypatch):
    monkeypatch.setenv("RESBENCH_DATA", str(write_jpeg_root(fresh_clone / "jpeg", 10)))
    kept = CliRunner().invoke(app, ["data", "fetch", "--if-missing", "--url", closed_port_url()])
    assert kept.exit_code == 0 and "nothing fetched" in kept.stdout
    shown = CliRunner().invoke(app, ["data"])
    assert "JPEG q75 re-encoding" in shown.stdout and "resbench data fetch" in shown.stdout
    offline = CliRunner().invoke(app, ["data", "fetch", "--url", closed_port_url()])  # asked for the original
    assert offline.exit_code == 2 and "Without internet" in offline.stderr
    assert len(offline.stderr.strip().splitlines()) == 1


def test_an_offline_copy_of_the_archive_is_verified_and_unpacked_the_same_way(fresh_clone, tmp_path_factory):
    copy = fresh_clone / "copy.tar.gz"
    original = write_original_root(tmp_path_factory.mktemp("copy"), 10) / "cifar-10-batches-py"
    with tarfile.open(copy, "w:gz") as tar:
        tar.add(original, arcname="cifar-10-batches-py")
    copy_md5 = md5(copy)
    with pytest.raises(DataError, match="does not have md5"):  # the original's md5: another file
        fetch_cifar10(fresh_clone / "a", Source(copy.as_uri()))
    assert fetch_cifar10(fresh_clone / "a", Source(copy.as_uri(), copy_md5)) == fresh_clone / "a" / "cifar-10-batches-py"
    assert fetch_cifar10(fresh_clone / "b", Source(str(copy), copy_md5)) == fresh_clone / "b" / "cifar-10-batches-py"
    assert load_cifar10(fresh_clone / "b").variant == "cifar10-original"


def test_a_fetch_never_lands_inside_the_jpeg_folder_itself(server, fresh_clone, monkeypatch):
    # RESBENCH_DATA naming the JPEG folder itself (as ../shared/data/cifar10-jpeg is named): `resbench data`
    # said the original would be fetched into it; it goes to the cache, where runs find it and prefer it
    jpeg = write_jpeg_root(fresh_clone / "jpeg", 10) / "cifar10-jpeg"
    monkeypatch.setenv("RESBENCH_DATA", str(jpeg))
    shown = CliRunner().invoke(app, ["data"])
    cache = fresh_clone / "cache" / "data"
    assert f"into {cache}" in shown.stdout.replace("\n", ""), shown.stdout
    url, archive_md5, _ = server
    fetched = CliRunner().invoke(app, ["data", "fetch", "--url", f"{url}/cifar-10-python.tar.gz", "--md5", archive_md5])
    assert fetched.exit_code == 0, fetched.output
    assert not (jpeg / "cifar-10-batches-py").exists()
    assert find_cifar10() == ("cifar-10-batches-py", cache / "cifar-10-batches-py")
    refused = CliRunner().invoke(app, ["data", "fetch", "--data-root", str(jpeg), "--url", closed_port_url()])
    assert refused.exit_code == 2 and "is a CIFAR-10 folder itself" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
