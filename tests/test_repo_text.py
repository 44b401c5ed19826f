"""No text file of the repository names a path of one particular machine (/work/…, /root/…,
/home/…, /Users/…, /tmp/<dir>/…) or cites an internal tracker number ("issue 22") instead of
saying what is meant. Reads the files git knows about (tracked, plus new files that are not
ignored), skipping binary files and tests/data/ (QE's own output, which records where it ran).
No QE, no run fixture; well under a second."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().relative_to(ROOT).as_posix()

# An absolute path of one machine: not preceded by a word character, a dot, '~', '$' or '/', so
# that relative paths such as scratch/tmp/x, ~/home/… or $HOME/work/… do not count.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~$/-])(?:/work/|/root/|/home/|/Users/|/tmp/[\w.+-]+)")
# A tracker citation: "issue 22", "Issue 22", "issues 14", "issue #9", "issue22", "issue-22".
TRACKER = re.compile(r"\b[Ii]ssues?[ -]?#?\d+\b")

SKIP_DIRS = ("tests/data/",)

# (path, exact text) pairs that are allowed although they match, each with its reason. Keep this
# list empty unless the text is a real path the code uses and users rely on; never widen the
# regular expressions instead.
ALLOWED: dict[tuple[str, str], str] = {}


def _text_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    files = []
    for name in sorted(set(out.decode().split("\0")) - {""}):
        if name == HERE or name.startswith(SKIP_DIRS):
            continue
        path = ROOT / name
        if not path.is_file() or path.is_symlink():
            continue                      # deleted in the work tree, or a link
        files.append(name)
    return files


def _read_text(name: str) -> str | None:
    data = (ROOT / name).read_bytes()
    if b"\0" in data[:8192]:
        return None                       # binary (images, archives)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _hits(pattern: re.Pattern) -> list[str]:
    hits = []
    for name in _text_files():
        text = _read_text(name)
        if text is None:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in pattern.finditer(line):
                if (name, m.group(0)) in ALLOWED:
                    continue
                hits.append(f"{name}:{lineno}: {m.group(0)!r} in: {line.strip()[:120]}")
    return hits


def test_no_absolute_machine_paths():
    hits = _hits(ABSOLUTE_PATH)
    assert not hits, ("paths of one machine (use a relative path, an argument or a placeholder "
                      "such as /path/to/dfptmag):\n" + "\n".join(hits))


def test_no_tracker_citations():
    hits = _hits(TRACKER)
    assert not hits, ("tracker numbers instead of what they mean (say what the issue was):\n"
                      + "\n".join(hits))


@pytest.mark.parametrize("text, path, tracker", [
    ("see /work/main/dfptmag", True, False),
    ("cd /home/me && ls", True, False),
    ('d = Path("/tmp/c1/main/runs")', True, False),
    ("flock /tmp/dfptmag-qe.lock", True, False),
    ("/Users/me/qe/bin", True, False),
    ("/root/.cache", True, False),
    ("outdir 'scratch/tmp/x' and $HOME/work/qe and ~/home/x", False, False),
    ("/path/to/dfptmag/.qe/7.4.1/pw.x, /usr/bin/mpirun, /tmp", False, False),
    ("goals (issue 14): ...", False, True),
    ("Issue 22: libraries", False, True),
    ("issues 9 and 14", False, True),
    ("issue #9", False, True),
    ("the issue-22 report", False, True),
    ("issue: 22 (a journal issue in CITATION.cff), tissue 3, issues, an issue", False, False),
])
def test_patterns(text, path, tracker):
    assert bool(ABSOLUTE_PATH.search(text)) is path
    assert bool(TRACKER.search(text)) is tracker
