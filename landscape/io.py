"""Files as the toolkit reads and writes them: JSON, JSON lines, atomic writes, local paths.

The only copies of these rules: run folders, direction files, tables and figures all go
through here, so that a killed process never leaves half a file and every reader treats
a truncated last line the same way.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from landscape.errors import LandscapeError


def dumps_json(obj) -> str:
    """JSON as run folders hold it: sorted keys, indented, UTF-8 text, a final newline."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def dumps_line(obj) -> str:
    """One JSON-lines record: sorted keys, one line, a final newline."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n"


# Temporary names carry their writer's PID (`.NAME.tmpPID`, `.NAME.tmp-PID-XXXX`), so that
# what a killed writer left can be told from what a live one is writing.
_TEMP = re.compile(r"^\..+\.tmp-?(\d+)(-[^/]*)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_temporaries(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders that killed writers left in `folder` (only
    those of `name` if given): the ones whose PID is no longer running on this machine.
    Returns what was removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP.match(p.name)
        if m is None or (name is not None and not p.name.startswith(f".{name}.tmp")):
            continue
        if _alive(int(m[1])):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


_NOT_WRITABLE = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
}


def check_writable(path: str | Path, file: bool = False) -> Path:
    """A one-line LandscapeError unless `path` (a folder to make or fill; with `file`, a file
    to write) can be written: its nearest existing part must be a folder that takes a new
    file. Tested by making and removing a probe file, so a read-only mount, a full quota or
    a path through a plain file is caught before any work starts, and nothing is left."""
    path = Path(path).expanduser()
    if file and path.is_dir():
        raise LandscapeError(f"{path} is a folder; a file is expected there")
    folder = path.parent if file else path
    if folder.exists() and not folder.is_dir():
        raise LandscapeError(f"{folder} is a file, not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise LandscapeError(f"cannot make {folder}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".write-probe.tmp{os.getpid()}-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = _NOT_WRITABLE.get(e.errno, "permission denied")
        raise LandscapeError(
            f"cannot write to {path}: {existing} is not writable ({why})"
        ) from None
    return path


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A hidden path beside `path` to write to; renamed onto `path` when the block ends
    without an error, removed when it fails. Readers see the old file or the new one, never
    a half-written one (for writers that want a path, such as safetensors). A temporary of
    `path` that a killed writer left is removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(path.parent, path.name)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def building_folder(final: str | Path, exist_ok: bool = False) -> Iterator[Path]:
    """A fresh hidden folder beside `final` to build in, renamed to `final` when the block
    ends without an error and removed when it fails: `final` never exists half-built. If
    `final` exists by then, `exist_ok` keeps it and drops the new build (another process
    finished first); otherwise an empty `final` is replaced and a non-empty one is an error.
    Builds of `final` that killed processes left are removed first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(final.parent, final.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    try:
        yield tmp
        if final.exists() and exist_ok:
            shutil.rmtree(tmp)
            return
        if final.exists():
            final.rmdir()  # fails, as it should, unless empty
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


LOCK_NAME = ".lock"


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold `folder`'s advisory lock (`flock` on `.lock` inside it) for the block: one writer
    per run folder. A second process gets a one-line LandscapeError naming the holder's
    PID. The kernel drops the lock when its holder dies, so a killed run's lock file never
    blocks the rerun. Once the lock is held, the temporaries that killed writers left in the
    folder are removed. A folder made here is removed again if the block fails while the
    lock file is all it holds."""
    import fcntl  # POSIX only, like the clusters this runs on

    folder = Path(folder)
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 (held for the block)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise LandscapeError(
            f"{folder} is being written by another process (pid {holder}): wait for it to "
            "end, or choose another output folder"
        ) from None
    try:
        sweep_temporaries(folder)
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield folder
    except BaseException:
        if made and [q.name for q in folder.iterdir()] == [LOCK_NAME]:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """`data` (text as UTF-8) written to `path` through `replacing`, flushed to disk first."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_json(path: str | Path, obj) -> Path:
    """`dumps_json(obj)` written atomically to `path`."""
    return atomic_write(path, dumps_json(obj))


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """A text file's contents; a one-line LandscapeError naming the file when it is not
    UTF-8 (`utf-8-sig` also drops a spreadsheet's byte-order mark)."""
    path = Path(path)
    try:
        return path.read_bytes().decode(encoding)
    except UnicodeDecodeError as e:
        raise LandscapeError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json(path: str | Path, missing: str | None = None):
    """The JSON value in `path`; a one-line LandscapeError when it is absent (`missing` says
    what to do about it) or not valid JSON."""
    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"{path.parent}: {missing}" if missing else f"{path}: no such file")
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError:
        raise LandscapeError(f"{path} is not valid JSON") from None


def read_lines(path: str | Path) -> tuple[list[tuple[str, dict]], bool]:
    """The complete lines of a .jsonl file with their records (the text without its newline,
    to copy byte for byte), and whether an unfinished last line was left out. A missing file
    has no lines; a bad line before the last is an error."""
    path = Path(path)
    if not path.exists():
        return [], False
    parts = read_text(path).split("\n")
    # The piece after the last newline is empty for an intact file, else an unfinished write.
    tail, parts = parts[-1], parts[:-1]
    lines, dropped = [], bool(tail)
    for i, line in enumerate(parts):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(parts) - 1 and not tail:
                dropped = True
                continue
            raise LandscapeError(f"{path}: line {i + 1} is not valid JSON") from None
        if not isinstance(rec, dict):
            raise LandscapeError(f"{path}: line {i + 1} is not a JSON object (a record)")
        lines.append((line, rec))
    return lines, dropped


def raw_jsonl(path: str | Path) -> list[tuple[str, dict]]:
    """`read_lines` without the flag: complete lines and their records."""
    return read_lines(path)[0]


def read_jsonl(path: str | Path) -> list[dict]:
    """The complete records of a .jsonl file ([] if it is missing); a truncated last line,
    left by a killed run, is left out."""
    return [rec for _, rec in read_lines(path)[0]]


def write_jsonl(path: str | Path, records) -> Path:
    """Records as JSON lines, written atomically."""
    return atomic_write(path, "".join(dumps_line(r) for r in records))


# Suffixes that only ever name files: a hub id never ends in one.
_FILE_SUFFIXES = (".safetensors", ".gguf", ".json", ".jsonl", ".csv", ".txt", ".parquet", ".bin")


def is_local(name: str | os.PathLike) -> bool:
    """Whether `name` means a local path rather than a Hugging Face hub id (`name` or
    `org/name`): absolute, relative with `.` or `~`, deeper than `org/name`, a Windows path,
    a file suffix, or a path whose first part exists here."""
    name = str(name)
    return (
        Path(name).expanduser().is_absolute()
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or "\\" in name
        or name.lower().endswith(_FILE_SUFFIXES)
        or Path(name.split("/")[0]).exists()
    )


MANIFEST = "manifest.json"


def cache_dir() -> Path:
    """Where built models are kept: `$LANDSCAPE_CACHE`, default `~/.cache/landscape`."""
    return Path(os.environ.get("LANDSCAPE_CACHE", Path.home() / ".cache" / "landscape"))


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read a MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_hash(record, length: int = 10) -> str:
    """The first `length` hex digits of the SHA-256 of a JSON record (keys sorted): a cache
    key over everything a cached result depends on."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:length]


def write_manifest(folder: str | Path, rebuild: str | None = None) -> Path:
    """`manifest.json` in `folder`: each file's size and SHA-256, so that a cache can tell
    a damaged copy (a truncated or overwritten weight file) from a good one; `rebuild` is
    the command that makes the folder again, named when it is found damaged."""
    folder = Path(folder)
    files = {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    record = {"files": files, **({"rebuild": rebuild} if rebuild else {})}
    return write_json(folder / MANIFEST, record)


def manifest_problem(folder: str | Path, hashes: bool = True) -> str | None:
    """What is wrong with `folder` against its manifest (a file missing, of another size or,
    with `hashes`, other bytes), or None when it holds what was recorded."""
    folder = Path(folder)
    try:
        files = read_json(folder / MANIFEST)["files"]
    except (LandscapeError, KeyError, TypeError):
        return f"its {MANIFEST} is missing or unreadable"
    for rel, want in files.items():
        p = folder / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != want["size"]:
            return f"{rel} has {p.stat().st_size} bytes, not {want['size']}"
        if hashes and sha256_file(p) != want["sha256"]:
            return f"{rel} does not hold the bytes it was built with"
    return None
