"""Enrollment photos of every awkward kind, made with Pillow/OpenCV from a real photo, plus random
bytes (hypothesis): each is enrolled (converted: grey, CMYK, 16-bit, alpha, palette, animated, EXIF
rotated) or refused with a reason that names the file; never a traceback, a crash or a hang, and a
decompression bomb is refused from its header with bounded memory. Through the CLI, the library and
the running daemon's API."""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from camd.api.client import ApiClient, ApiError
from camd.identity import enroll
from camd.identity.enroll import EnrollmentError, read_photo
from tests.support.service import daemon_config, running_daemon

pytest_plugins = ["tests.support.identity"]

REPO = Path(__file__).resolve().parents[1]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming width x height RGB pixels, with a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b""))


def png_real_bomb(side: int = 12_000) -> bytes:
    """A complete, valid grey PNG of side x side zeros (144 MP): ~140 KB on disk, 144 MB decoded."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def make_cases(base: Path, folder: Path) -> tuple[dict[str, Path], dict[str, tuple[Path, str]]]:
    """(accepted: name -> file, refused: name -> (file, reason fragment)) made from one real photo."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(base).convert("RGB")
    good: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **options: Any) -> None:
        good[name] = folder / name
        image.save(good[name], **options)

    save("grey.png", photo.convert("L"))
    save("grey.jpg", photo.convert("L"), quality=90)
    save("cmyk.jpg", photo.convert("CMYK"), quality=90)
    grey16 = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    save("grey16.png", Image.fromarray(grey16))  # mode I;16
    rgb16 = np.asarray(photo, dtype=np.uint16)[:, :, ::-1] * 257
    good["rgb16.png"] = folder / "rgb16.png"
    cv2.imwrite(str(good["rgb16.png"]), rgb16)  # OpenCV writes 16-bit-per-channel RGB PNGs
    alpha = photo.convert("RGBA")
    edge = Image.new("L", photo.size, 0)
    edge.paste(255, (8, 8, photo.width - 8, photo.height - 8))  # transparent border
    alpha.putalpha(edge)
    save("alpha.png", alpha)
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE)
    save("palette.png", palette, transparency=0)
    frames = [photo, photo.transform(photo.size, Image.Transform.AFFINE, (1, 0, 10, 0, 1, 0)), photo]
    save("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: stored turned 90 degrees; shown upright after a clockwise turn
    save("sideways.jpg", photo.rotate(90, expand=True), exif=exif, quality=90)
    save("photo.webp", photo, quality=90)
    save("photo.tiff", photo)
    save("photo.bmp", photo)

    refused: dict[str, tuple[Path, str]] = {}

    def bad(name: str, data: bytes | None, reason: str) -> None:
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        refused[name] = (path, reason)

    bad("zero.jpg", b"", "empty file (0 bytes)")
    bad("blank.png", b"\n\n  \n", "not an image camd can read")
    bad("random.jpg", np.random.default_rng(1).bytes(50_000), "not an image camd can read")
    jpeg = base.read_bytes()
    bad("truncated.jpg", jpeg[: len(jpeg) // 3], "damaged or truncated")
    bad("header-bomb.png", png_header_bomb(), "too large to read safely")
    bad("real-bomb.png", png_real_bomb(), "12000x12000 pixels is too large")
    bad("tiny.png", cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), "too small")
    (folder / "folder.jpg").mkdir()
    bad("folder.jpg", None, "a folder, not a photo")
    os.mkfifo(folder / "pipe.jpg")  # opening it for reading would block forever
    bad("pipe.jpg", None, "not a regular file")
    return good, refused


@pytest.fixture(scope="module")
def cases(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Path], dict[str, Any]]:
    return make_cases(models_dir / "face_photos" / "obama.jpg", tmp_path_factory.mktemp("photos") / "all")


def test_each_kind_is_read_upright_in_colour_or_refused_naming_the_file(
    cases: tuple[dict[str, Path], dict[str, Any]], service_factory: Any,
) -> None:
    good, refused = cases
    service = service_factory()
    faces = service.extractors.face
    for name, path in good.items():
        image = read_photo(path)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        assert faces.faces(image), f"{name}: the face is not found after conversion"
    upright = read_photo(good["sideways.jpg"])
    assert upright.shape[0] > upright.shape[1] or upright.shape == read_photo(good["photo.bmp"]).shape
    for name, (path, reason) in refused.items():
        with pytest.raises(EnrollmentError) as error:
            read_photo(path)
        message = str(error.value)
        assert message.startswith(f"{path}: ") and reason in message, (name, message)

    result = enroll.enroll_photos(service, "barack", "family", good["grey.png"].parent)
    assert sorted(Path(p).name for p in result["photos_used"]) == sorted(good)
    skipped = {Path(s["photo"]).name: s["reason"] for s in result["skipped"]}
    assert set(skipped) == set(refused)
    for name, (_, reason) in refused.items():
        assert reason in skipped[name], (name, skipped[name])
    assert result["added"]["face"] == len(good)


def test_unreadable_file_is_refused_as_such(tmp_path: Path, models_dir: Path) -> None:
    photo = tmp_path / "locked.jpg"
    photo.write_bytes((models_dir / "face_photos" / "obama.jpg").read_bytes())
    os.chmod(photo, 0)
    code = ("import sys; sys.path.insert(0, sys.argv[2])\n"
            "from camd.identity.enroll import read_photo, EnrollmentError\n"
            "try:\n    read_photo(sys.argv[1])\nexcept EnrollmentError as e:\n    print(e)\n")
    command = [sys.executable, "-c", code, str(photo), str(REPO)]
    if os.geteuid() == 0:  # root reads anything: ask as a root without the right to bypass file modes
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == f"{photo}: no permission to read it", done.stdout + done.stderr


def test_decompression_bombs_are_refused_with_bounded_memory(tmp_path: Path) -> None:
    (tmp_path / "header-bomb.png").write_bytes(png_header_bomb())
    (tmp_path / "real-bomb.png").write_bytes(png_real_bomb())
    (tmp_path / "big-but-fine.png").write_bytes(cv2.imencode(".png", np.zeros((3000, 4000, 3), np.uint8))[1])
    code = ("import resource, sys; sys.path.insert(0, sys.argv[1])\n"
            "from camd.identity.enroll import read_photo, EnrollmentError\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "for name in sys.argv[2:]:\n"
            "    try:\n        shape = read_photo(name).shape\n    except EnrollmentError as e:\n"
            "        shape = str(e)\n"
            "    print(name, shape, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    names = [str(tmp_path / n) for n in ("header-bomb.png", "real-bomb.png", "big-but-fine.png")]
    done = subprocess.run([sys.executable, "-c", code, str(REPO), *names], capture_output=True, text=True,
                          timeout=120)
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stderr
    grown_kb = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert "too large" in lines[0] and "too large" in lines[1]
    assert grown_kb[1] < 64 * 1024, f"the bomb grew the process by {grown_kb[1] // 1024} MB"
    assert "(1920, 2560, 3)" in lines[2], "a large photo is scaled to WORK_SIDE, not refused"


# Random bytes behind the signatures of every format Pillow knows, and real photos damaged at random.
SIGNATURES = [b"", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"GIF87a", b"BM",
              b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"II*\x00", b"MM\x00*", b"\x00\x00\x01\x00", b"P6\n"]


def damaged(photo: bytes) -> st.SearchStrategy[bytes]:
    def damage(cuts: list[tuple[int, int]], keep: float) -> bytes:
        data = bytearray(photo[: max(1, int(len(photo) * keep))])
        for position, value in cuts:
            data[position % len(data)] = value
        return bytes(data)

    return st.builds(damage, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=20),
                     st.floats(0.05, 1.0))


@pytest.fixture(scope="module")
def small_photos(models_dir: Path) -> list[bytes]:
    image = cv2.resize(cv2.imread(str(models_dir / "face_photos" / "obama.jpg")), (96, 96))
    return [cv2.imencode(ext, image)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".webp", ".tiff")]


def test_random_bytes_never_escape_as_anything_but_a_clear_error(
    tmp_path: Path, small_photos: list[bytes]
) -> None:
    path = tmp_path / "photo.jpg"
    outcomes = {"read": 0, "refused": 0}
    payloads = st.one_of(
        st.builds(lambda sig, tail: sig + tail, st.sampled_from(SIGNATURES), st.binary(max_size=4000)),
        *(damaged(photo) for photo in small_photos),
    )

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=payloads)
    def read(data: bytes) -> None:
        path.write_bytes(data)
        try:
            image = read_photo(path)
        except EnrollmentError as exc:
            assert str(exc).startswith(f"{path}: ") and len(str(exc)) < 400
            outcomes["refused"] += 1
            return
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        outcomes["read"] += 1

    read()
    assert outcomes["refused"] > 100, outcomes
    # The reader was not refusing everything: each intact photo reads (whether any damaged one still
    # decodes is up to hypothesis's draw, so that is not asserted).
    for photo in small_photos:
        path.write_bytes(photo)
        assert read_photo(path).shape == (96, 96, 3)


def assert_skipped(output: str, refused: dict[str, tuple[Path, str]]) -> None:
    """The CLI prints one `skipped FILE: reason` line per refused photo."""
    lines = {line.strip().split(": ", 1)[0]: line for line in output.splitlines() if "skipped " in line}
    for name, (path, reason) in refused.items():
        assert reason in lines.get(f"skipped {path}", ""), (name, output)


def test_cli_and_api_of_the_running_daemon(
    tmp_path: Path, models_dir: Path, cases: tuple[dict[str, Path], dict[str, Any]],
) -> None:
    good, refused = cases
    state = tmp_path / "state"
    cli = [sys.executable, "-m", "camd.cli", "enroll"]
    store = ["--state-dir", str(state), "--models-dir", str(models_dir)]

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)

    # The CLI on its own store: good ones enrolled, every bad one named with its reason.
    done = run([*cli, "barack", "--photos", str(good["grey.png"].parent), *store])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"face {len(good)}" in done.stdout
    assert_skipped(done.stdout, refused)
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    for name in ("zero.jpg", "random.jpg", "header-bomb.png"):
        (only_bad / name).write_bytes(refused[name][0].read_bytes())
    done = run([*cli, "nobody-here", "--photos", str(only_bad), *store])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "zero.jpg: empty file" in done.stderr and "header-bomb.png: too large" in done.stderr

    # Through the running daemon: the CLI converts and names files itself; the raw API answers 400.
    config_file = tmp_path / "camd.yaml"
    config = daemon_config(tmp_path / "daemon-state", models_dir)
    config_file.write_text(
        f"state_dir: {config.state_dir}\nmodels_dir: {models_dir}\nmqtt: {{enabled: false}}\n"
        f"api: {{port: {config.api.port}}}\n"
        f"cameras:\n  street: {{url: {models_dir / 'demo_bikes_clip' / 'bikes.mp4'}, loop: true}}\n"
    )
    with running_daemon(config) as daemon:
        done = run([*cli, "michelle", "--photos", str(good["grey.png"].parent), "--config", str(config_file)])
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert f"face {len(good)}" in done.stdout
        assert_skipped(done.stdout, refused)
        assert daemon.identity is not None and daemon.identity.memory.person("michelle") is not None

        with ApiClient.from_config(config) as client:
            answers: dict[str, int | str] = {}
            for name, path in [*good.items(), *((n, p) for n, (p, _) in refused.items())]:
                if not path.is_file() or stat.S_ISFIFO(path.stat().st_mode):
                    continue  # a folder or a pipe cannot be sent
                try:
                    client.enroll_photos("api-person", [path])
                    answers[name] = 200
                except ApiError as exc:
                    answers[name] = str(exc)
            for name in ("grey.png", "cmyk.jpg", "grey16.png", "alpha.png", "sideways.jpg", "photo.bmp"):
                assert answers[name] == 200, (name, answers[name])
            for name in ("zero.jpg", "random.jpg", "truncated.jpg", "header-bomb.png", "real-bomb.png",
                         "tiny.png", "blank.png"):
                answer = answers[name]  # 400 with the reason, or 422 for an empty upload
                assert isinstance(answer, str) and answer.startswith(("HTTP 400", "HTTP 422")), answer
            assert not [a for a in answers.values() if isinstance(a, str) and "HTTP 5" in a], answers
