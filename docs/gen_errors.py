"""Writes docs/errors.md: every one-line error nasconv raises for a user, found in the source.

Run by `make docs` before `mkdocs build --strict`, so that the list follows the code: each
``raise SomeError("...")`` of a NasconvError subclass, with its message (values shown as
``<...>``), where it is raised, and what to do (the message's own advice where it gives one,
else the advice for its kind of error).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "errors.md"

#: error class -> (exit code, what to do in general)
KINDS = {
    "UsageError": (2, "a flag or value is malformed: the message names it and the accepted forms; fix the command"),
    "UnknownNameError": (2, "a name nasconv does not know: the message lists the known ones"),
    "ModelUsageError": (2, "a flag of `nasconv space from-model` is malformed: fix the command"),
    "DataError": (1, "the data could not be found or read: pass `--data-dir DIR` or set `NASCONV_DATA`, "
                     "check the folder, or delete the cache entry the message names"),
    "SpaceError": (1, "a space or architecture file breaks a rule: the message gives the key path; edit the file"),
    "BudgetError": (1, "the budget cannot be met in this space: raise it or pick a larger space"),
    "StorageError": (1, "the study database: check `--storage`, the study name (`nasconv doctor` tests the URL)"),
    "ExportError": (1, "the export: check the output folder (`--force` to overwrite) and the study or arch"),
    "OutputError": (1, "an output path: nasconv replaces only a regular file or a symbolic link (the link itself), "
                       "and only with `--force`; name another path or remove what is there"),
    "ModelError": (1, "your own model could not be traced or rebuilt: see [Your own model](own-model.md)"),
    "DeviceError": (1, "the device is not available: `nasconv doctor` shows what torch sees; use `--device cpu`"),
    "LatencyTableError": (1, "the latency table does not fit: run the `nasconv latency profile` command it names"),
    "HyperparameterError": (1, "an operator's hyperparameter does not fit the shape: the message gives the rule"),
    "NasconvError": (1, "read the message: it states the rule and the value; run the same command to continue "
                        "a search"),
}
DEFAULT_KIND = (1, "read the message: it states the rule and the value")


def _text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            else:
                out.append("<" + (ast.unparse(part.value)[:30] if isinstance(part, ast.FormattedValue) else "…") + ">")
        return "".join(out)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def _error_classes() -> set[str]:
    """Names of the NasconvError subclasses defined in nasconv (by name, through the source)."""
    known = {"NasconvError"}
    classes: list[tuple[str, list[str]]] = []
    for path in sorted((ROOT / "nasconv").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                classes.append((node.name, [ast.unparse(b).split(".")[-1] for b in node.bases]))
    changed = True
    while changed:
        changed = False
        for name, bases in classes:
            if name not in known and any(b in known for b in bases):
                known.add(name)
                changed = True
    return known


def collect() -> list[tuple[str, str, str]]:
    """(error class, message, file) of every raise of a NasconvError subclass with a literal message."""
    errors = _error_classes()
    found = []
    for path in sorted((ROOT / "nasconv").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name not in errors or not node.exc.args:
                continue
            msg = _text(node.exc.args[0])
            if msg:
                found.append((name, " ".join(msg.split()), rel))
    return found


def render(found: list[tuple[str, str, str]]) -> str:
    lines = ["# Every error message", "",
             "Generated from the source by `docs/gen_errors.py` (run by `make docs`): each one-line error",
             "nasconv can print, as `nasconv: error: MESSAGE`, grouped by kind. `<...>` stands for a value",
             "filled in at run time. Exit status 2 for usage errors, 1 for the others.", ""]
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for kind, msg, rel in found:
        by_kind.setdefault(kind, []).append((msg, rel))
    for kind in sorted(by_kind, key=lambda k: (-len(by_kind[k]), k)):
        code, todo = KINDS.get(kind, DEFAULT_KIND)
        lines += [f"## {kind} (exit {code})", "", f"What to do: {todo}.", "",
                  "| message | where | what to do |", "|---|---|---|"]
        for msg, rel in sorted(set(by_kind[kind])):
            advice = ""
            for sep in ("; ", " - "):
                head, s, tail = msg.partition(sep)
                if s and any(w in tail for w in ("pass ", "run ", "use ", "set ", "drop ", "add ", "install",
                                                  "delete", "lower", "raise", "start", "give", "name", "free")):
                    advice = tail
                    break
            cell = msg.replace("|", "\\|").replace("`", "'")
            lines.append(f"| `{cell}` | `{rel}` | {advice.replace('|', '/') or 'see above'} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    found = collect()
    OUT.write_text(render(found))
    print(f"{OUT.relative_to(ROOT)}: {len(found)} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
