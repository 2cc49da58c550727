"""Load the YAML config: every mistake reported at once, with the field path and the file line.

The file is read with ruamel.yaml's round-trip loader, which remembers where each key and item
sits. The data is then copied into plain Python values (expanding `${VAR}` secrets and
resolving relative paths on the way) and validated by the pydantic schema in camd.config.schema;
each pydantic error location is mapped back to the line it came from.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import types
import typing
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.reader import ReaderError

from camd.config.schema import Config
from camd.redact import mask_url

Loc = tuple[str | int, ...]

# Fields whose value may hold a credential: never echoed in messages, masked in describe().
SECRET_FIELDS = frozenset({"url", "detect_url", "password", "api_key"})
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MAX_NODES = 100_000  # guards against alias bombs (`&a [*a, *a, ...]` nested): a config is small
MAX_DEPTH = 64
MIN_SCRUB_LENGTH = 3  # shorter secrets are not scrubbed from text: they would mangle every message


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file. line is 1-based, None when the problem has no place in the file."""

    path: str  # dotted field path, e.g. "cameras.front_door.detect_fps"; "" for the whole file
    line: int | None
    message: str

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line is not None else file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The config file is invalid; `errors` holds every problem found, in file order."""

    def __init__(self, errors: list[ConfigIssue], file: str = "config") -> None:
        self.errors = sorted(errors, key=lambda issue: (issue.line is None, issue.line or 0, issue.path))
        self.file = file
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(issue.render(self.file) for issue in self.errors)


def load_config(path: Path | str) -> Config:
    """Read, expand and validate a config file; raise ConfigError listing every problem.

    Relative paths in the file resolve against the file's own directory, so the result does not
    depend on the working directory the daemon was started from.
    """
    file = str(path)
    text = _read_text(Path(path), file)
    document = _parse_yaml(text, file)
    if not isinstance(document, CommentedMap):
        kind = "empty" if document is None else f"a {_yaml_kind(document)}"
        raise ConfigError(
            [ConfigIssue("", 1, f"the top level must be a mapping of settings, found {kind}")], file
        )

    lines: dict[Loc, int] = {}  # location tuple -> 1-based line of its key or list item
    copier = _PlainCopier(lines)
    data = copier.copy(document)
    issues = list(copier.issues) + _duplicate_keys(text)
    if issues and copier.fatal:
        raise ConfigError(issues, file)
    _resolve_paths(data, Path(path).absolute().parent)

    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            issue = _issue_from_pydantic(error, lines)
            if issue.path not in copier.reported:  # e.g. an unset ${VAR} also makes the value empty
                issues.append(issue)
    if issues:
        raise ConfigError(_scrubbed(issues, copier.secrets), file)
    return config


def describe(config: Config) -> str:
    """A multi-line summary for logs and check-config, with every credential masked."""
    mqtt = config.mqtt
    auth = ""
    if mqtt.username or mqtt.password:
        auth = f" user={mqtt.username or '-'} password={'set' if mqtt.password else 'none'}"
    store = config.store
    if store.url:
        store_text = f"server {_masked(store.url)}" + (" (api key set)" if store.api_key else "")
    else:
        store_text = f"embedded at {config.store_path}"
    detector = config.detector
    out = [
        f"state_dir: {config.state_dir}",
        f"models: {config.models_path}",
        f"log_level: {config.log_level}",
        (
            f"mqtt: {'mqtts' if mqtt.tls else 'mqtt'}://{mqtt.host}:{mqtt.port} prefix={mqtt.topic_prefix}"
            f" client_id={mqtt.client_id}{auth}" + ("" if mqtt.enabled else " (disabled)")
        ),
        f"store: {store_text}",
        (
            f"detector: {detector.backend} model={detector.model or 'default'} threads={detector.threads}"
            f" workers={detector.workers} batch={detector.batch} queue_frames={detector.queue_frames}"
        ),
        f"objects: track={','.join(config.objects.track)}",
        f"cameras ({len(config.cameras)}):",
    ]
    for name, camera in config.cameras.items():
        flags = [f"detect_fps={camera.detect_fps:g}", f"transport={camera.rtsp_transport}"]
        if camera.objects is not None:
            flags.append(f"track={','.join(config.objects_for(name).track)}")
        if camera.detect_url is not None:
            flags.append(f"detect={_masked(camera.detect_url.get_secret_value())}")
        if camera.loop:
            flags.append("loop")
        if not camera.enabled:
            flags.append("DISABLED")
        out.append(f"  {name}: {_masked(camera.url.get_secret_value())} {' '.join(flags)}")
    return "\n".join(out)


def _masked(url: str) -> str:
    """mask_url, and also hide a lone token written as the user part (https://TOKEN@host)."""
    try:
        parts = urlsplit(url)
        if parts.username and parts.password is None:
            return parts._replace(netloc=f"***@{parts.netloc.rpartition('@')[2]}").geturl()
    except ValueError:
        return "***"  # unparseable: show nothing rather than risk a credential
    return mask_url(url)


def check_config_main(path: str) -> int:
    """`camd check-config FILE`: print OK and the masked summary (exit 0) or every error (exit 2)."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        count = len(exc.errors)
        print(f"{path}: INVALID, {count} error{'s' if count != 1 else ''}:", file=sys.stderr)
        print(str(exc), file=sys.stderr)
        return 2
    print(f"{path}: OK")
    print(describe(config))
    return 0


# --- reading and parsing -------------------------------------------------------------------------


def _read_text(path: Path, file: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = "file not found"
    except IsADirectoryError:
        problem = "is a directory, not a config file"
    except PermissionError:
        problem = "permission denied (the daemon's user must be able to read it)"
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.start})"
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or exc}"
    raise ConfigError([ConfigIssue("", None, problem)], file)


def _new_yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = True  # duplicates are found on the node tree, all of them, with lines
    return yaml


def _parse_yaml(text: str, file: str) -> Any:
    try:
        with warnings.catch_warnings():  # e.g. a reused anchor: valid YAML, not worth a stderr warning
            warnings.simplefilter("ignore")
            document = _new_yaml().load(text)
    except MarkedYAMLError as exc:
        raise ConfigError([_yaml_issue(exc)], file) from None
    except ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise ConfigError(
            [ConfigIssue("", line, f"invalid YAML: {exc.reason} (character {exc.character!r})")], file
        ) from None
    except Exception as exc:
        # ruamel raises assorted non-YAML errors on some malformed input (fuzzing finds them).
        raise ConfigError(
            [ConfigIssue("", None, f"invalid YAML: {type(exc).__name__}: {exc}")], file
        ) from None
    return document


def _yaml_issue(exc: MarkedYAMLError) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.context and exc.problem and exc.context_mark is not None:
        message += f" ({exc.context} started on line {exc.context_mark.line + 1})"
    return ConfigIssue("", line, message)


def _yaml_kind(value: object) -> str:
    if isinstance(value, list):
        return "list"
    return "string" if isinstance(value, str) else type(value).__name__


def _duplicate_keys(text: str) -> list[ConfigIssue]:
    """Every key written twice in one mapping (e.g. two cameras with the same name)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root = _new_yaml().compose(text)
    except Exception:
        return []  # already reported by the loader
    issues: list[ConfigIssue] = []
    seen_nodes: set[int] = set()

    def walk(node: Node | None, path: list[str]) -> None:
        if node is None or id(node) in seen_nodes or len(path) > MAX_DEPTH:
            return
        seen_nodes.add(id(node))
        if isinstance(node, MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node.value, str) and not key_node.tag.endswith(":merge"):
                    key = (str(key_node.tag), key_node.value)
                    line = key_node.start_mark.line + 1
                    if key in first_line:
                        where = ".".join([*path, key_node.value])
                        issues.append(
                            ConfigIssue(
                                where, line, f"duplicate key (first defined on line {first_line[key]})"
                            )
                        )
                    else:
                        first_line[key] = line
                walk(value_node, [*path, str(key_node.value)])
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, [*path[:-1], f"{path[-1]}[{index}]"] if path else [f"[{index}]"])

    walk(root, [])
    return issues


# --- copying into plain values: env expansion, lines, secrets --------------------------------------


class _PlainCopier:
    """Copies round-trip YAML data into plain dict/list/scalars that pydantic validates.

    On the way it records the line of every key and list item (by location tuple), expands
    `${VAR}` references in strings, and collects the secret strings that must never be echoed.
    """

    def __init__(self, lines: dict[Loc, int]) -> None:
        self.lines = lines
        self.issues: list[ConfigIssue] = []
        self.secrets: set[str] = set()
        self.reported: set[str] = set()  # dotted paths with an issue already (skip pydantic's echo of it)
        self.fatal = False  # structure we cannot validate meaningfully (alias bomb, recursion)
        self._nodes = 0
        self._active: set[int] = set()

    def copy(self, root: CommentedMap) -> Any:
        return self._copy(root, (), 1)

    def _copy(self, value: Any, loc: Loc, line: int) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES or len(loc) > MAX_DEPTH:
            if not self.fatal:
                self.issues.append(
                    ConfigIssue(_dotted(loc), line, "too many values or too deep (YAML aliases?)")
                )
            self.fatal = True
            return None
        if isinstance(value, CommentedMap | CommentedSeq):
            if id(value) in self._active:
                self.issues.append(ConfigIssue(_dotted(loc), line, "a YAML alias refers to itself"))
                self.fatal = True
                return None
            self._active.add(id(value))
            try:
                return self._copy_container(value, loc)
            finally:
                self._active.discard(id(value))
        if isinstance(value, TaggedScalar):
            self.reported.add(_dotted(loc))
            self.issues.append(ConfigIssue(_dotted(loc), line, f"unsupported YAML tag {value.tag.value}"))
            return None
        if isinstance(value, str):
            expanded = self._expand(str(value), loc, line)
            try:
                expanded.encode("utf-8")
            except UnicodeEncodeError:  # a "\ud800" escape or an undecodable environment value
                self.reported.add(_dotted(loc))
                self.issues.append(ConfigIssue(_dotted(loc), line, "contains characters that are not text"))
                return ""
            return expanded
        if isinstance(value, bool):
            return value
        if type(value).__name__ == "ScalarBoolean":  # an anchored boolean: an int subclass in ruamel
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if value is None or isinstance(value, date):
            return value
        self.issues.append(
            ConfigIssue(_dotted(loc), line, f"unsupported YAML value of type {type(value).__name__}")
        )
        return None

    def _copy_container(self, value: CommentedMap | CommentedSeq, loc: Loc) -> Any:
        if isinstance(value, CommentedSeq):
            out_list = []
            for index, item in enumerate(value):
                item_line = _lc_line(value, index, item=True)
                self.lines.setdefault((*loc, index), item_line)
                out_list.append(self._copy(item, (*loc, index), item_line))
            return out_list
        out: dict[Any, Any] = {}
        for key, item in value.items():
            key_line = _lc_line(value, key, item=False)
            plain_key = key if isinstance(key, str | int | float | bool) or key is None else str(key)
            plain_key = str(plain_key) if isinstance(plain_key, str) else plain_key
            self.lines.setdefault((*loc, plain_key), key_line)
            out[plain_key] = self._copy(item, (*loc, plain_key), key_line)
            if plain_key in SECRET_FIELDS and isinstance(out[plain_key], str):
                self._remember_secret(out[plain_key])
        return out

    def _expand(self, text: str, loc: Loc, line: int) -> str:
        if "$" not in text:
            self._remember_url_password(text)
            return text
        # `$${` writes a literal `${`: protect it while expanding, restore afterwards.
        protected = text.replace("$${", "\0")
        in_secret = bool(loc) and loc[-1] in SECRET_FIELDS

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    self.reported.add(_dotted(loc))
                    self.issues.append(
                        ConfigIssue(
                            _dotted(loc),
                            line,
                            f"environment variable {name} is not set"
                            f" (set it, or write ${{{name}:-default}} to give a default)",
                        )
                    )
                    return ""
                value = default
            if in_secret:
                self._remember_secret(value)
            return value

        expanded = ENV_REFERENCE.sub(substitute, protected)
        if "${" in expanded:
            self.reported.add(_dotted(loc))
            self.issues.append(
                ConfigIssue(
                    _dotted(loc),
                    line,
                    "malformed ${...} reference; use ${NAME} or ${NAME:-default}, or $${ for a literal '${'",
                )
            )
        expanded = expanded.replace("\0", "${")
        self._remember_url_password(expanded)
        return expanded

    def _remember_secret(self, value: str) -> None:
        self.secrets.add(value)
        self._remember_url_password(value)

    def _remember_url_password(self, value: str) -> None:
        if "@" in value and ":" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                return
            if password:
                self.secrets.add(password)


def _lc_line(container: CommentedMap | CommentedSeq, key: Any, *, item: bool) -> int:
    try:
        position = container.lc.item(key) if item else container.lc.key(key)
        return int(position[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        line = getattr(container.lc, "line", None)
        return int(line) + 1 if line is not None else 1


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")  # a key may hold lone surrogates


# --- relative paths ----------------------------------------------------------------------------------

MODEL_FILE_SUFFIXES = (".onnx", ".pb", ".tflite", ".pbtxt")


def _resolve_paths(data: dict[Any, Any], base: Path) -> None:
    """Make the file's relative paths relative to the file's directory (before validation, so
    that checks like 'tls_ca exists' look in the right place)."""

    def resolve(value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            return value
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else base / path)

    data["state_dir"] = resolve(data.get("state_dir", "var"))
    if "models_dir" in data:
        data["models_dir"] = resolve(data["models_dir"])
    for section, key in (("store", "path"), ("mqtt", "tls_ca"), ("identity", "crops_dir")):
        block = data.get(section)
        if isinstance(block, dict) and key in block:
            block[key] = resolve(block[key])
    detector = data.get("detector")
    if isinstance(detector, dict):
        model = detector.get("model")
        if isinstance(model, str) and ("/" in model or model.endswith(MODEL_FILE_SUFFIXES)):
            detector["model"] = resolve(model)  # a path; a bare name is a model id from the manifest
    cameras = data.get("cameras")
    if isinstance(cameras, dict):
        for camera in cameras.values():
            for key in ("url", "detect_url"):
                url = camera.get(key) if isinstance(camera, dict) else None
                if isinstance(url, str) and _is_plain_path(url):
                    camera[key] = resolve(url)


def _is_plain_path(url: str) -> bool:
    try:
        return urlsplit(url).scheme == "" and not re.match(r"^[\w.-]+:\d+(/|$)", url)
    except ValueError:
        return False


# --- pydantic errors -> issues -------------------------------------------------------------------------


def _issue_from_pydantic(error: Any, lines: dict[Loc, int]) -> ConfigIssue:
    loc: Loc = tuple(part for part in error["loc"] if part != "[key]")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and loc:
        message = f"unknown key {loc[-1]!r}"
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif known:
            message += f"; valid keys here: {', '.join(known)}"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif "[key]" in error["loc"]:
        message = f"invalid key: {message}"
    return ConfigIssue(_dotted(loc), _line_for(loc, lines), message)


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of the deepest part of loc present in the file (a missing key: its parent's line)."""
    for end in range(len(loc), 0, -1):
        line = lines.get(loc[:end])
        if line is None and isinstance(loc[end - 1], str):
            line = lines.get((*loc[: end - 1], _maybe_int(loc[end - 1])))
        if line is not None:
            return line
    return None


def _maybe_int(text: str) -> str | int:
    # Not str.isdigit(): it accepts '²' and other digits int() refuses.
    try:
        return int(text)
    except ValueError:
        return text


def _known_keys(loc: Loc) -> list[str]:
    """The field names the schema accepts at loc (for 'did you mean')."""
    model = _model_at(Config, loc)
    return sorted(model.model_fields) if model is not None else []


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    annotation: Any = model
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    return next((c for c in _flatten(annotation) if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _step(annotation: Any, part: str | int) -> Any:
    """The annotation one level down: a model's field, or a dict's / list's value type."""
    for candidate in _flatten(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            field = candidate.model_fields.get(str(part))
            return field.annotation if field is not None else None
        if typing.get_origin(candidate) in (dict, list):
            return typing.get_args(candidate)[-1]
    return None


def _flatten(annotation: Any) -> Iterator[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _flatten(arg)
    elif origin is typing.Annotated:
        yield from _flatten(typing.get_args(annotation)[0])
    else:
        yield annotation


def _scrubbed(issues: list[ConfigIssue], secrets: set[str]) -> list[ConfigIssue]:
    """Defence in depth: messages never quote input, but if a secret slips into one, mask it."""
    ordered = sorted((s for s in secrets if len(s) >= MIN_SCRUB_LENGTH), key=len, reverse=True)
    if not ordered:
        return issues
    out = []
    for issue in issues:
        message = issue.message
        for secret in ordered:
            message = message.replace(secret, "***")
        out.append(ConfigIssue(issue.path, issue.line, message))
    return out
