"""The config loader: every mistake reported with its field path and line, secrets from the
environment never echoed, relative paths anchored at the config file, and no input that makes it
raise anything but ConfigError."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from camd.config import Config, ConfigError, ConfigIssue, check_config_main, describe, load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "camd.example.yaml"
EXAMPLE_ENV = {"FRONT_DOOR_PASSWORD": "fr0nt-Door-pw", "DRIVEWAY_PASSWORD": "dr1veway-pw"}


def write(directory: Path, text: str, name: str = "camd.yaml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing fragment, so tests do not hard-code numbers."""
    hits = [number for number, line in enumerate(text.splitlines(), 1) if fragment in line]
    return hits[occurrence - 1]


def errors_of(path: Path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.errors


# --- the example config ----------------------------------------------------------------------------


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    return EXAMPLE_ENV


def test_example_config_loads(example_env: dict[str, str]) -> None:
    config = load_config(EXAMPLE)
    assert set(config.cameras) == {"front_door", "driveway"}
    front = config.cameras["front_door"]
    assert (
        front.url.get_secret_value()
        == f"rtsp://admin:{example_env['FRONT_DOOR_PASSWORD']}@192.168.1.10:554/stream1"
    )
    assert front.detect_url is not None and front.detect_url.get_secret_value().endswith("/stream2")
    # The front door narrows track to people and inherits nothing else it sets itself.
    assert config.objects_for("front_door").track == ["person"]
    assert config.objects_for("front_door").filter_for("person").min_area == 2000
    assert config.objects_for("driveway") == config.objects


def test_example_config_unset_secret_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EXAMPLE_ENV:
        monkeypatch.delenv(name, raising=False)
    issues = errors_of(EXAMPLE)
    text = EXAMPLE.read_text()
    assert {(i.path, i.line) for i in issues} == {
        ("cameras.front_door.url", line_of(text, "${FRONT_DOOR_PASSWORD}@")),
        ("cameras.front_door.detect_url", line_of(text, "${FRONT_DOOR_PASSWORD}@", occurrence=2)),
        ("cameras.driveway.url", line_of(text, "${DRIVEWAY_PASSWORD}@")),
    }
    assert all("is not set" in i.message for i in issues)


def _models_in(annotation: Any) -> Iterator[tuple[str | None, type[BaseModel]]]:
    """(None, Model) for a model-typed field, ('*', Model) for dict[str, Model] values."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)
    elif origin is dict:
        for _, model in _models_in(typing.get_args(annotation)[1]):
            yield "*", model
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield None, annotation


def _schema_sections(
    model: type[BaseModel], pattern: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], type[BaseModel]]]:
    """Every mapping in the schema tree as (path pattern with '*' for dict keys, model)."""
    yield pattern, model
    for name, field in model.model_fields.items():
        for wildcard, sub in _models_in(field.annotation):
            sub_pattern = (*pattern, name) if wildcard is None else (*pattern, name, wildcard)
            yield from _schema_sections(sub, sub_pattern)


def _mappings_at(data: Any, pattern: tuple[str, ...]) -> list[CommentedMap]:
    if not isinstance(data, CommentedMap):
        return []
    if not pattern:
        return [data]
    head, rest = pattern[0], pattern[1:]
    children = list(data.values()) if head == "*" else ([data[head]] if head in data else [])
    return [found for child in children for found in _mappings_at(child, rest)]


def test_example_config_documents_every_schema_key() -> None:
    """A field added to the schema later without an entry and a comment in the example fails here."""
    text = EXAMPLE.read_text()
    lines = text.splitlines()
    document = YAML(typ="rt").load(text)

    def commented(line: int) -> bool:  # 0-based line of a key
        previous = lines[line - 1].strip() if line > 0 else ""
        return " #" in lines[line] or previous.startswith("#")

    missing, undocumented = [], []
    for pattern, model in _schema_sections(Config):
        mappings = _mappings_at(document, pattern)
        for name in model.model_fields:
            where = ".".join((*pattern, name))
            present = [m for m in mappings if name in m]
            if not present:
                missing.append(where)
            elif not any(commented(m.lc.key(name)[0]) for m in present):
                undocumented.append(where)
    assert not missing, f"schema keys absent from {EXAMPLE.name}: {missing}"
    assert not undocumented, f"keys without a comment in {EXAMPLE.name}: {undocumented}"


# --- many mistakes, all reported ---------------------------------------------------------------------

BAD_CONFIG = """\
state_dir: state
mqtt:
  hots: broker.local
  port: 70000
cameras:
  front_door:
    url: ftp://admin:${FRONT_PW}@10.0.0.5/s1
    detect_fps: -2
  front_door:
    url: rtsp://10.0.0.6/s1
  garage:
    url: rtsp://10.0.0.7/s1
    enabled: maybe
    detect_fps: fast
  Back Yard:
    url: rtsp://10.0.0.8/s1
"""


def test_every_mistake_is_reported_with_path_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRONT_PW", "very-secret-pw")
    path = write(tmp_path, BAD_CONFIG)
    issues = errors_of(path)
    text = BAD_CONFIG
    expected = {
        ("mqtt.hots", line_of(text, "hots:"), "unknown key 'hots' (did you mean 'host'?)"),
        ("mqtt.port", line_of(text, "port: 70000"), "less than or equal to 65535"),
        ("cameras.front_door.url", line_of(text, "ftp://"), "unsupported URL scheme 'ftp'"),
        ("cameras.front_door.detect_fps", line_of(text, "detect_fps: -2"), "greater than 0"),
        (
            "cameras.front_door",
            line_of(text, "front_door:", 2),
            f"duplicate key (first defined on line {line_of(text, 'front_door:')})",
        ),
        ("cameras.garage.enabled", line_of(text, "enabled: maybe"), "valid boolean"),
        ("cameras.garage.detect_fps", line_of(text, "detect_fps: fast"), "valid number"),
        ("cameras.Back Yard", line_of(text, "Back Yard:"), "lowercase letters, digits and '_'"),
    }
    got = {(i.path, i.line) for i in issues}
    assert got == {(p, line) for p, line, _ in expected}, str(ConfigError(issues, "camd.yaml"))
    for want_path, want_line, fragment in expected:
        [issue] = [i for i in issues if (i.path, i.line) == (want_path, want_line)]
        assert fragment in issue.message

    report = str(ConfigError(issues, str(path)))
    fps_line = line_of(text, "detect_fps: -2")
    assert f"{path}:{fps_line}: cameras.front_door.detect_fps: Input should be greater than 0" in report
    assert len(report.splitlines()) == len(expected)
    assert "very-secret-pw" not in report


def test_unknown_top_level_key_suggests_the_known_one(tmp_path: Path) -> None:
    issues = errors_of(write(tmp_path, "camras:\n  x:\n    url: rtsp://h/s\n"))
    messages = {i.path: (i.line, i.message) for i in issues}
    assert messages["camras"] == (1, "unknown key 'camras' (did you mean 'cameras'?)")
    assert messages["cameras"] == (None, "required key is missing")


def test_missing_key_points_at_its_parent(tmp_path: Path) -> None:
    issues = errors_of(write(tmp_path, "log_level: info\ncameras:\n  porch:\n    detect_fps: 2\n"))
    assert [(i.path, i.line, i.message) for i in issues] == [
        ("cameras.porch.url", 3, "required key is missing")
    ]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    issues = errors_of(write(tmp_path, "cameras:\n  x:\n    url: rtsp://h/s\n\tdetect_fps: 1\n"))
    assert [(i.line, i.path) for i in issues] == [(4, "")]
    assert "invalid YAML" in issues[0].message and "\\t" in issues[0].message

    issues = errors_of(write(tmp_path, "mqtt: {host: a\ncameras:\n  x: {url: rtsp://h/s}\n"))
    assert issues[0].message.startswith("invalid YAML") and "line 1" in issues[0].message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "file not found"),
        ("", "top level must be a mapping of settings, found empty"),
        ("# only a comment\n", "found empty"),
        ("- rtsp://h/s\n", "found a list"),
        ("just text\n", "found a string"),
        (b"\xff\xfe\x00cameras", "not UTF-8"),
    ],
)
def test_unusable_files_give_one_clear_error(
    tmp_path: Path, content: str | bytes | None, fragment: str
) -> None:
    path = tmp_path / "camd.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    [issue] = errors_of(path)
    assert fragment in issue.message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    [issue] = errors_of(tmp_path)
    assert "directory" in issue.message


def test_alias_bomb_is_refused_not_expanded(tmp_path: Path) -> None:
    levels = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]  # 10^9 leaves
    issues = errors_of(write(tmp_path, "\n".join(levels) + "\ncameras: {x: {url: rtsp://h/s}}\n"))
    assert any("too many values or too deep" in i.message for i in issues)


# --- environment secrets -------------------------------------------------------------------------------


def test_env_secrets_are_expanded_and_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FRONT_PW", "Camera-Pa55")
    monkeypatch.setenv("MQTT_PASSWORD", "Broker-Pa55")
    monkeypatch.delenv("UNSET_HOST", raising=False)
    text = (
        "mqtt:\n  host: ${UNSET_HOST:-broker.lan}\n  username: camd\n  password: ${MQTT_PASSWORD}\n"
        "store:\n  url: https://qdrant.lan:6333\n  api_key: ${MQTT_PASSWORD}\n"
        "cameras:\n  front_door:\n    url: rtsp://admin:${FRONT_PW}@10.0.0.5/s1\n"
        "  literal:\n    url: rtsp://h/s$${NOT_EXPANDED}\n"
    )
    path = write(tmp_path, text)
    config = load_config(path)
    assert config.mqtt.host == "broker.lan"
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "Broker-Pa55"
    assert config.cameras["front_door"].url.get_secret_value() == "rtsp://admin:Camera-Pa55@10.0.0.5/s1"
    assert config.cameras["literal"].url.get_secret_value() == "rtsp://h/s${NOT_EXPANDED}"

    summary = describe(config)
    assert "rtsp://admin:***@10.0.0.5/s1" in summary
    assert "broker.lan" in summary
    assert check_config_main(str(path)) == 0
    printed = capsys.readouterr()
    for secret in ("Camera-Pa55", "Broker-Pa55"):
        assert secret not in summary
        assert secret not in printed.out + printed.err
        assert secret not in repr(config) and secret not in str(config)


def test_secrets_stay_out_of_error_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONT_PW", "Camera-Pa55")
    text = (
        "mqtt:\n  password: ${FRONT_PW}\n"  # no username: an error on a secret field
        "cameras:\n"
        "  bad_port:\n    url: rtsp://admin:Camera-Pa55@10.0.0.5:Camera-Pa55/s1\n"
        "  slash_in_password:\n    url: rtsp://admin:Camera/Pa55@10.0.0.6/s1\n"  # unencoded '/'
        "  bad_scheme:\n    url: ftp://admin:${FRONT_PW}@10.0.0.7/s1\n"
        "  bad_fps:\n    url: rtsp://admin:${FRONT_PW}@10.0.0.8/s1\n    detect_fps: 0\n"
    )
    path = write(tmp_path, text)
    issues = errors_of(path)
    assert {i.path for i in issues} == {
        "mqtt",
        "cameras.bad_port.url",
        "cameras.slash_in_password.url",
        "cameras.bad_scheme.url",
        "cameras.bad_fps.detect_fps",
    }
    report = str(ConfigError(issues, str(path)))
    assert "Camera" not in report and "Pa55" not in report
    assert "percent-encode" in report


def test_unset_env_var_is_named_with_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMD_TEST_UNSET", raising=False)
    text = "cameras:\n  porch:\n    url: rtsp://admin:${CAMD_TEST_UNSET}@10.0.0.5/s1\n"
    [issue] = errors_of(write(tmp_path, text))
    assert (issue.path, issue.line) == ("cameras.porch.url", 3)
    assert "CAMD_TEST_UNSET is not set" in issue.message


def test_malformed_reference_is_an_error(tmp_path: Path) -> None:
    [issue] = errors_of(write(tmp_path, "cameras:\n  porch:\n    url: rtsp://h/${BAD NAME}\n"))
    assert (issue.path, issue.line) == ("cameras.porch.url", 3) and "malformed" in issue.message


# --- relative paths ---------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    (config_dir / "certs").mkdir(parents=True)
    (config_dir / "certs" / "ca.pem").write_text("not checked beyond existence")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = (
        "state_dir: state\nmodels_dir: ../models\n"
        "mqtt:\n  tls: true\n  tls_ca: certs/ca.pem\n"
        "store:\n  path: memory\n"
        "detector:\n  model: weights/yolo.onnx\n"
        "cameras:\n  clip:\n    url: clips/walk.mp4\n  network:\n    url: rtsp://10.0.0.5/s1\n"
    )
    config = load_config(write(config_dir, text))
    assert config.state_dir == config_dir / "state"
    assert config.models_path == config_dir / ".." / "models"
    assert config.mqtt.tls_ca == config_dir / "certs" / "ca.pem"
    assert config.store_path == config_dir / "memory"
    assert config.detector.model == str(config_dir / "weights" / "yolo.onnx")
    assert config.cameras["clip"].url.get_secret_value() == str(config_dir / "clips" / "walk.mp4")
    assert config.cameras["network"].url.get_secret_value() == "rtsp://10.0.0.5/s1"


def test_default_state_dir_is_next_to_the_file_but_cwd_without_one(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "cameras:\n  x:\n    url: rtsp://h/s\n"))
    assert config.state_dir == tmp_path / "var"
    assert config.outbox_path == tmp_path / "var" / "outbox.sqlite3"
    assert Config.model_validate({"cameras": {"x": {"url": "rtsp://h/s"}}}).state_dir == Path("var")


def test_missing_tls_ca_is_reported_at_its_line(tmp_path: Path) -> None:
    text = "mqtt:\n  tls: true\n  tls_ca: certs/missing.pem\ncameras:\n  x:\n    url: rtsp://h/s\n"
    [issue] = errors_of(write(tmp_path, text))
    assert (issue.path, issue.line) == ("mqtt.tls_ca", 3)
    assert (
        "tls_ca file not found" in issue.message and str(tmp_path / "certs" / "missing.pem") in issue.message
    )


# --- schema checks a user trips over ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ("mqtt:\n  host: ''\n", "host must not be empty"),
        ("mqtt:\n  host: mqtt://broker.lan\n", "no scheme"),
        ("mqtt:\n  host: broker.lan:1883\n", "no ':port'"),
        ("mqtt:\n  password: x\n", "without a username"),
        ("store:\n  path: q\n  url: http://q.lan:6333\n", "not both"),
        ("store:\n  url: q.lan:6333\n", "http://"),
        ("store:\n  url: https://token@q.lan:6333\n", "put the Qdrant API key in api_key"),
    ],
)
def test_schema_catches_common_mistakes(tmp_path: Path, section: str, fragment: str) -> None:
    [issue] = errors_of(write(tmp_path, section + "cameras:\n  x:\n    url: rtsp://h/s\n"))
    assert fragment in issue.message and issue.line is not None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("''", "must not be empty"),
        ("192.168.1.10:554/stream1", "without a scheme"),
        ("rtsp:///stream1", "no host"),
        ("rtsp://10.0.0.5:99999/s", "bad port"),
    ],
)
def test_camera_url_mistakes(tmp_path: Path, url: str, fragment: str) -> None:
    [issue] = errors_of(write(tmp_path, f"cameras:\n  x:\n    url: {url}\n"))
    assert (issue.path, issue.line) == ("cameras.x.url", 3) and fragment in issue.message


def test_camera_objects_override_inherits_what_it_does_not_set(tmp_path: Path) -> None:
    text = (
        "objects:\n  filters:\n    person: {min_score: 0.8}\n"
        "cameras:\n  narrow:\n    url: rtsp://h/s\n    objects:\n      track: [person]\n"
        "  own_filters:\n    url: rtsp://h/t\n    objects:\n      filters:\n        car: {min_score: 0.9}\n"
    )
    config = load_config(write(tmp_path, text))
    narrow = config.objects_for("narrow")
    assert narrow.track == ["person"] and narrow.filter_for("person").min_score == 0.8
    own = config.objects_for("own_filters")
    assert own.track == config.objects.track and own.filter_for("car").min_score == 0.9
    # A field left out of a listed label keeps that label's default, not the generic 0.
    assert config.objects.filter_for("person").min_area == 600
    assert own.filter_for("car").min_area == 1500


def test_check_config_main_reports_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "cameras:\n  x:\n    url: rtsp://h/s\n    detect_fps: 0\n    loop: perhaps\n")
    assert check_config_main(str(path)) == 2
    err = capsys.readouterr().err
    assert f"{path}: INVALID, 2 errors" in err
    assert f"{path}:4: cameras.x.detect_fps:" in err and f"{path}:5: cameras.x.loop:" in err


# --- fuzz: nothing but ConfigError, whatever the input ----------------------------------------------------

YAMLISH = st.lists(
    st.sampled_from(
        [
            "cameras:",
            "mqtt:",
            "objects:",
            "filters:",
            "person:",
            "x:",
            "url: ",
            "port: ",
            "detect_fps: ",
            "track: ",
            "\n",
            "  ",
            "    ",
            "- ",
            ": ",
            "rtsp://a:b@h/s",
            "ftp://h",
            "{",
            "}",
            "[",
            "]",
            ", ",
            "&a ",
            "*a ",
            "!!int ",
            "!!str ",
            "!tag ",
            "${X}",
            "${",
            "$${",
            "'",
            '"',
            "# c",
            "-1",
            "1e999",
            "0x1F",
            "null",
            "~",
            "true",
            "? ",
            "|",
            ">",
            "---",
            "...",
            "<<: *a",
            "\t",
            "\x00",
            "é",
            "2024-01-01",
            "%YAML 1.2",
        ]
    ),
    max_size=40,
).map("".join)

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
KEYS = st.sampled_from(
    ["cameras", "mqtt", "url", "port", "objects", "track", "filters", "person", "x", "state_dir"]
)
NESTED = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


def _only_config_errors(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.errors and str(exc).encode("utf-8")  # printable: check-config writes it out


@pytest.mark.timeout(120)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300) | YAMLISH)
def test_fuzz_text_raises_only_config_error(tmp_path: Path, text: str) -> None:
    _only_config_errors(tmp_path / "fuzz.yaml", text)


@pytest.mark.timeout(120)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(KEYS, NESTED, max_size=6))
def test_fuzz_nested_mappings_raise_only_config_error(tmp_path: Path, data: dict[str, Any]) -> None:
    # JSON is YAML 1.2, so any nested structure (odd keys, huge numbers, deep nesting) is a valid file.
    _only_config_errors(tmp_path / "fuzz.yaml", json.dumps(data))


SCHEMA_PATHS = [
    ("state_dir",), ("models_dir",), ("log_level",), ("mqtt",), ("mqtt", "host"), ("mqtt", "port"),
    ("mqtt", "password"), ("mqtt", "tls_ca"), ("mqtt", "topic_prefix"), ("detector", "class_map"),
    ("detector", "model"), ("detector", "input_size"), ("objects", "track"), ("objects", "filters"),
    ("store", "url"), ("store", "path"), ("store", "api_key"), ("cameras",), ("cameras", "x"),
    ("cameras", "x", "url"), ("cameras", "x", "detect_fps"), ("cameras", "x", "objects"),
    ("cameras", "x", "objects", "filters"), ("cameras", "x", "reconnect_max_s"),
]  # fmt: skip
URLISH = st.sampled_from(
    ["rtsp://", "http://[", "a:b@", "//", "file:", ":", "@", "/", "?", "#", "%", "h", "1", "${X}"]
)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(SCHEMA_PATHS), NESTED | st.lists(URLISH, max_size=8).map("".join)),
        max_size=4,
    )
)
def test_fuzz_values_at_schema_paths_raise_only_config_error(
    tmp_path: Path, changes: list[tuple[tuple[str, ...], Any]]
) -> None:
    """Start from a valid config and put arbitrary values where the validators look."""
    data: dict[str, Any] = {"cameras": {"x": {"url": "rtsp://h/s"}}}
    for path, value in changes:
        node = data
        for key in path[:-1]:
            child = node.get(key)
            node[key] = child if isinstance(child, dict) else {}
            node = node[key]
        node[path[-1]] = value
    _only_config_errors(tmp_path / "fuzz.yaml", json.dumps(data))


def test_unicode_digit_key_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    """Found by the fuzzer: '²'.isdigit() is true but int('²') raises, reached when the key sits
    under a camera name that has no line of its own (JSON escapes of a surrogate pair)."""
    data = {"cameras": {"\ud800\udc00": {"\u00b2": None}}}
    path = tmp_path / "camd.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="url"):
        load_config(path)
