"""The opt-in ImageNet weight download, against servers on 127.0.0.1 only: a small file that
lands in a temporary torch hub folder, a wrong hash, a server that never answers, no server,
and the checks made before any byte is fetched. Nothing here reaches the real network.
Also the photos shipped for the ImageNet models (``data/photos``): they load, at their
documented sizes, and ``SOURCES.md`` names each with its licence."""

import hashlib
import http.server
import io
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from gradcam_edu import models
from gradcam_edu.fetch import FetchError, fetch_imagenet_weights, hash_prefix
from gradcam_edu.images import course_photo


class Payload:
    """An object that ``torch.load(..., weights_only=True)`` refuses to rebuild."""


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def named(stem: str, data: bytes, ext: str = "pth") -> str:
    """``stem-<first 8 hex digits of sha256>.ext``: torchvision's naming."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.{ext}"


@pytest.fixture
def hub(tmp_path):
    """A temporary torch hub folder (``torch.hub.set_dir``), restored afterwards."""
    saved = torch.hub._hub_dir  # None: get_dir() follows $TORCH_HOME, as before the test
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        yield tmp_path / "hub"
    finally:
        torch.hub._hub_dir = saved


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)


class Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).requests.append(self.path)
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404, "no such file")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 in a thread: ``(base URL, files dict, requests list)``."""
    handler = type("Handler", (Files,), {"files": {}, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.files, handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def listing(hub: Path) -> list[str]:
    folder = hub / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# ----------------------------------------------------------------------------- downloads
def test_a_small_file_lands_in_the_hub_checkpoints(hub, server):
    base, files, requests = server
    data = torch_bytes({"w": torch.arange(3.0)})
    name = named("tiny", data)
    files[f"/{name}"] = data
    path = fetch_imagenet_weights("resnet18", url=f"{base}/{name}", progress=False, timeout=5)
    assert path == hub / "checkpoints" / name
    assert path.read_bytes() == data and listing(hub) == [name]      # no partial file left
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.tensor([0.0, 1.0, 2.0]))
    assert socket.getdefaulttimeout() is None                       # restored
    assert requests == [f"/{name}"]
    # already there with the right hash: kept, nothing fetched
    assert fetch_imagenet_weights("resnet18", url=f"{base}/{name}", progress=False) == path
    assert requests == [f"/{name}"]


def test_a_wrong_hash_is_an_error_and_leaves_nothing(hub, server):
    base, files, _ = server
    data = b"some bytes whose sha256 does not begin with eight zeros"
    assert not hashlib.sha256(data).hexdigest().startswith("00000000")
    files["/tiny-00000000.pth"] = data
    with pytest.raises(FetchError, match="does not match its hash.*00000000.*nothing was saved"):
        fetch_imagenet_weights("resnet18", url=f"{base}/tiny-00000000.pth", progress=False)
    assert listing(hub) == []


def test_a_server_that_never_answers_times_out(hub):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)            # the connection is accepted by the kernel; nothing is sent
    port = silent.getsockname()[1]
    raised: list[BaseException] = []

    def run():
        try:
            fetch_imagenet_weights("resnet18", url=f"http://127.0.0.1:{port}/w-0123abcd.pth",
                                   progress=False, timeout=1)
        except BaseException as err:  # noqa: BLE001 (checked below)
            raised.append(err)

    worker = threading.Thread(target=run, daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(timeout=10)     # without the timeout the download would wait forever
    elapsed = time.monotonic() - start
    still_waiting = worker.is_alive()
    silent.close()              # resets the queued connection: a waiting download ends
    worker.join(timeout=10)
    assert not still_waiting, "no error within 10 s from a server that never answers"
    assert elapsed < 10 and len(raised) == 1 and isinstance(raised[0], FetchError), raised
    assert f"no answer from 127.0.0.1:{port} within 1 s" in str(raised[0])
    assert listing(hub) == [] and socket.getdefaulttimeout() is None


def test_no_server_says_offline(hub):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                      # nobody listens there: refused at once
    with pytest.raises(FetchError, match=f"cannot reach 127.0.0.1:{port}.*offline"):
        fetch_imagenet_weights("resnet18", url=f"http://127.0.0.1:{port}/w-0123abcd.pth",
                               progress=False, timeout=5)
    assert listing(hub) == []


def test_http_error_is_named(hub, server):
    base, _, _ = server
    with pytest.raises(FetchError, match="answered HTTP 404"):
        fetch_imagenet_weights("resnet50", url=f"{base}/gone-0123abcd.pth", progress=False)
    assert listing(hub) == []


def test_loading_is_weights_only(hub, server):
    """A file with the right hash that holds pickled objects, not tensors: refused, removed."""
    base, files, _ = server
    data = torch_bytes({"w": torch.zeros(1), "obj": Payload()})
    name = named("pickled", data)
    files[f"/{name}"] = data
    with pytest.raises(FetchError, match="weights_only=True.*removed"):
        fetch_imagenet_weights("resnet18", url=f"{base}/{name}", progress=False)
    assert listing(hub) == []


# ----------------------------------------------------------------------------- before any byte
def test_unknown_architecture_lists_the_known_ones(hub, no_network):
    with pytest.raises(ValueError, match="arch: unknown architecture 'vgg16'; known: "
                                         "resnet18, resnet34, resnet50"):
        fetch_imagenet_weights("vgg16")
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(ValueError, match="timeout: expected a number of seconds > 0"):
            fetch_imagenet_weights("resnet18", timeout=bad)


def test_the_hash_prefix_comes_from_the_file_name():
    assert hash_prefix(models.imagenet_weights("resnet18").url) == "f37072fd"
    assert hash_prefix("http://127.0.0.1:1/dir/resnet50-0676ba61.pth?x=1") == "0676ba61"
    with pytest.raises(ValueError, match="url: the file name 'weights.pth' carries no sha256"):
        hash_prefix("http://127.0.0.1:1/weights.pth")
    with pytest.raises(ValueError, match="no sha256 prefix"):
        hash_prefix("http://127.0.0.1:1/w-abc.pth")                  # fewer than 8 digits


@pytest.mark.parametrize("arch", models.IMAGENET_ARCHS)
def test_the_destination_is_where_models_look(hub, no_network, arch):
    """A foreign file where ``models.torchvision_resnet`` reads: refused by name, offline."""
    path = models.imagenet_weight_path(arch)
    assert path.parent == hub / "checkpoints"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not torchvision's file")
    with pytest.raises(FetchError, match="already in the cache.*delete it") as err:
        fetch_imagenet_weights(arch)
    assert str(path) in str(err.value) and path.read_bytes() == b"not torchvision's file"


# ----------------------------------------------------------------------------- course photos
PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"
# (width, height) as SOURCES.md and images.course_photo's docstring document them
DOCUMENTED = {"chelsea.png": (451, 300), "coffee.jpg": (600, 400), "rocket.jpg": (640, 427)}


def test_each_course_photo_loads_at_its_documented_size():
    shipped = sorted(p.name for p in PHOTOS.iterdir() if p.suffix in (".png", ".jpg"))
    assert shipped == sorted(DOCUMENTED)
    for name, size in DOCUMENTED.items():
        img = course_photo(name)
        assert img.mode == "RGB" and img.size == size, (name, img.size)
        assert course_photo(Path(name).stem).size == size              # suffix optional
        assert (PHOTOS / name).stat().st_size < 300_000
    assert course_photo("chelsea").getpixel((225, 150)) != course_photo("coffee").getpixel(
        (225, 150))
    with pytest.raises(ValueError, match="no course photo 'dog'; the photos: chelsea.png, "
                                         "coffee.jpg, rocket.jpg"):
        course_photo("dog")


def test_sources_name_each_photo_its_size_hash_and_licence():
    text = (PHOTOS / "SOURCES.md").read_text()
    table = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
             if line.startswith("| `")]
    rows = {cells[0].strip("`"): cells for cells in table}
    hashes = dict(reversed(line.split()) for line in text.splitlines()
                  if len(line.split()) == 2 and len(line.split()[0]) == 64)
    for name, (w, h) in DOCUMENTED.items():
        path = PHOTOS / name
        assert name in rows, f"SOURCES.md has no table row for {name}"
        _, pixels, size, origin, licence = rows[name]
        assert pixels == f"{w} x {h}" and int(size) == path.stat().st_size
        assert "CC0" in licence or "public domain" in licence
        assert origin.startswith("`skimage/data/")
        assert hashes[name] == hashlib.sha256(path.read_bytes()).hexdigest()
        section = text.split(f"## {name}", 1)[1].split("\n## ", 1)[0]
        assert "CC0" in section or "public domain" in section, name
