"""The one way emim writes a file: into a new temporary beside it, then renamed into place.

Output folders may be shared or writable by others, so a name chosen in advance (`.CASE.<pid>.tmp`) can have a
symbolic link planted at it, and opening it would write wherever the link points. The temporary is made by
`tempfile.mkstemp` (O_CREAT|O_EXCL, an unpredictable name: never an existing file or link), written through its
own descriptor and fsynced; `os.replace` then swaps it in, replacing a link at the destination rather than
following it. A destination that already is a link is refused, so the user learns of it instead of finding it gone.
A failure leaves the destination as it was and no temporary behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from emim.errors import EmimError

Content = str | bytes | Callable[[BinaryIO], None]  # text (UTF-8), bytes, or a function writing to the open file


def check_not_link(path: Path) -> None:
    """Refuse a destination that is a symbolic link: writing through it could land anywhere."""
    if Path(path).is_symlink():
        raise EmimError(f"{path} is a symbolic link; refusing to write through it (it may point outside the folder "
                        "you chose). Remove the link, or choose another output.")


def new_file_mode() -> int:
    """The mode `open` gives a new file under this process's umask (0644 under the usual 022); mkstemp's is 0600,
    and outputs and model folders are made to be read by others."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_temporary(path: Path, content: Content) -> Path:
    """Write `content` into a new temporary file beside `path` and return it; rename it with `replace_into`."""
    path = Path(path)
    check_not_link(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):  # not on Windows, where the mode means little
                os.fchmod(handle.fileno(), new_file_mode())
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def replace_into(temporary: Path, path: Path) -> None:
    """Rename a `write_temporary` file onto `path` (atomic; a link at `path` is refused, never followed)."""
    check_not_link(path)
    os.replace(temporary, path)


def write_file(path: Path, content: Content) -> Path:
    """Write one file all-or-nothing (see the module docstring); returns `path`."""
    temporary = write_temporary(path, content)
    try:
        replace_into(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Path(path)


def write_files(files: dict[Path, Content]) -> None:
    """Write several files all-or-nothing: every temporary first, then the renames in `files`' order (put the file
    whose absence readers notice first); on a failure no temporary is left behind."""
    temporaries: list[tuple[Path, Path]] = []
    try:
        for path, content in files.items():
            temporaries.append((write_temporary(path, content), Path(path)))
        for temporary, path in temporaries:
            replace_into(temporary, path)
    finally:
        for temporary, _ in temporaries:
            temporary.unlink(missing_ok=True)
