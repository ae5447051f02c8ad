"""Reading space files and architecture files: shipped spaces by name, a user's YAML by path
(``yaml.safe_load`` semantics, duplicate keys and alias bombs refused), an architecture JSON
checked against its space."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from nasconv.arch import MAX_JSON_CHARS, ArchSpec
from nasconv.custom import KIND as MODEL_KIND
from nasconv.custom import parse_model_space
from nasconv.errors import SpaceError, UnknownNameError
from nasconv.spaces.model import SearchSpace, parse_space

SPACE_SUFFIXES = (".yaml", ".yml")
#: YAML nodes of a space file once aliases are expanded (a real one has a few hundred)
MAX_YAML_NODES = 100_000
#: bytes a space file may have (a shipped one has about 3,000)
MAX_SPACE_BYTES = 1_000_000


def read_text_file(path: str | Path, what: str, limit: int) -> str:
    """The UTF-8 text of a user's file, read at most ``limit + 1`` bytes far: ``/dev/zero``, a
    FIFO that never ends or a multi-GB file is refused in bounded time and memory, as are a
    directory and a binary file, each in one line."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise SpaceError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise SpaceError(f"{what} {path} is larger than {limit:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpaceError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None

# --- loading --------------------------------------------------------------------------------


def list_spaces() -> list[str]:
    """Names of the spaces shipped with nasconv."""
    root = resources.files("nasconv.search_spaces")
    return sorted(p.name.rsplit(".", 1)[0] for p in root.iterdir() if p.name.endswith(SPACE_SUFFIXES))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A shipped space by name (``resnet50``) or a user's YAML file by path."""
    text, source = _read_space(str(name_or_path))
    return _cached_parse(_freeze(_load_yaml(text, source)), source)


def _load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (YAML keeps the last one without a word)
    and files that aliases expand past :data:`MAX_YAML_NODES` ("billion laughs")."""
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters at once
    except yaml.YAMLError as exc:
        raise SpaceError(f"{source}: not valid YAML: {str(exc).strip().splitlines()[0]}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpaceError(f"{source}: not valid YAML: {first}") from None
    finally:
        loader.dispose()


def _check_nodes(root: yaml.Node, source: str) -> None:
    # An alias is the anchored node object itself, so walking the tree visits each as often as
    # the constructed data would hold it: the count is the expanded size, stopped at the limit.
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    visits = 0
    while stack:
        node, path = stack.pop()
        visits += 1
        if visits > MAX_YAML_NODES:
            raise SpaceError(f"{source}: more than {MAX_YAML_NODES:,} YAML nodes once aliases are expanded; "
                             "a space file needs a few hundred")
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    stack.append((value_node, path))
                    continue
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                full = f"{path}.{name}" if path else str(name)
                key = (key_node.tag, name) if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None:
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        raise SpaceError(f"{source}: {full}: duplicate key (lines {seen[key]} and {line})")
                    seen[key] = line
                stack.append((value_node, full))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))


def _read_space(arg: str) -> tuple[str, str]:
    path = Path(arg)
    if arg.endswith(SPACE_SUFFIXES) or "/" in arg:
        return read_text_file(path, "space file", MAX_SPACE_BYTES), str(path)
    root = resources.files("nasconv.search_spaces")
    for suffix in SPACE_SUFFIXES:
        f = root / f"{arg}{suffix}"
        if f.is_file():
            return f.read_text(), f"{arg}{suffix}"
    raise UnknownNameError("space", arg, list_spaces())


def _freeze(x: Any) -> Any:
    if isinstance(x, dict):
        return tuple((k, _freeze(v)) for k, v in x.items())
    if isinstance(x, list):
        return ("__list__",) + tuple(_freeze(v) for v in x)
    return x


def _thaw(x: Any) -> Any:
    if isinstance(x, tuple):
        if x and x[0] == "__list__":
            return [_thaw(v) for v in x[1:]]
        return {k: _thaw(v) for k, v in x}
    return x


@functools.lru_cache(maxsize=32)
def _cached_parse(frozen: Any, source: str) -> SearchSpace:
    data = _thaw(frozen)
    if isinstance(data, dict) and "kind" in data:  # a user's own model (nasconv.custom)
        if data["kind"] != MODEL_KIND:
            raise SpaceError(f"{source}: kind: must be {MODEL_KIND!r} (a space made from your own model by "
                             f"`nasconv space from-model`) or absent (a ResNet space), got {data['kind']!r}")
        return parse_model_space(data, source=source,  # type: ignore[return-value]
                                 base_dir=str(Path(source).resolve().parent))
    return parse_space(data, source=source)


def load_arch(space: SearchSpace, arg: str) -> ArchSpec:
    """``baseline`` or a JSON file written by ``nasconv sample`` / ``export``; checked against the space."""
    if arg == "baseline":
        return space.baseline()
    arch = ArchSpec.from_json(read_text_file(arg, "architecture file", MAX_JSON_CHARS))
    space.check_arch(arch)
    return arch
