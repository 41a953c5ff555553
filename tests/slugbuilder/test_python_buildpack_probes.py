"""The python buildpack's probe files (lib/node-cache.sh `node_cached`): an answer about a
binary is reused only while the file holds exactly that binary's head, whatever bytes the
head has, and a damaged probe file is never trusted (the binary is asked again).

`node_cached` runs in bash as bin/compile sources it, with a stand-in binary and a
question that counts how often it is asked.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_CACHE = REPO / "buildpacks" / "python" / "lib" / "node-cache.sh"
HEAD_CHARS = 4096
TIMEOUT_S = 30.0
#: Asks BIN (a stand-in: prints the answer file's text), counting each question.
SCRIPT = r"""
set -euo pipefail
. "$NODE_CACHE"
NODE_DIR=$1
ask() { echo asked >> "$COUNT"; cat "$ANSWER"; }
check() { [ "$1" != refused ]; }
value=""
node_cached value "$2" ask check
printf '%s' "$value"
"""
ANSWER = "3.11.7\n/usr/bin/python3 * ? [x] \\ 'q' \"d\""


def _binary(size_chars: int) -> bytes:
    """An ELF-like file: NULs between the characters, and the bytes bash quotes inside."""
    specials = b"\x01\x7f\xff*?[\\\n\t '\""
    out = bytearray(b"\x7fELF\x02\x01\x01\x00")
    for i in range(size_chars // 2):  # two characters (and two NULs) at a time
        out += bytes([specials[i % len(specials)], (i * 37) % 251 + 1, 0, 0])
    return bytes(out)


class Probe:
    def __init__(self, tmp_path: Path, binary: bytes) -> None:
        self.node = tmp_path / "node"
        self.bin = tmp_path / "bin" / "tool"
        self.bin.parent.mkdir()
        self.bin.write_bytes(binary)
        self.count = tmp_path / "count"
        self.answer = tmp_path / "answer"
        self.answer.write_text(ANSWER)

    @property
    def file(self) -> Path:
        return self.node / "probe" / str(self.bin).replace("/", "%")

    def run(self) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "NODE_CACHE": str(NODE_CACHE),
            "COUNT": str(self.count),
            "ANSWER": str(self.answer),
        }
        done = subprocess.run(
            ["bash", "-c", SCRIPT, "probe", str(self.node), str(self.bin)],
            env=env, capture_output=True, timeout=TIMEOUT_S, check=True,
        )  # fmt: skip
        assert done.stderr == b""  # a build's log gets nothing from the probes
        return done.stdout.decode()

    def asked(self) -> int:
        return len(self.count.read_text().splitlines()) if self.count.exists() else 0


@pytest.mark.parametrize("chars", [300, HEAD_CHARS + 500], ids=["short-binary", "long-binary"])
def test_an_answer_is_kept_with_the_binarys_head_and_reused(tmp_path: Path, chars: int) -> None:
    probe = Probe(tmp_path, _binary(chars))
    assert probe.run() == ANSWER and probe.asked() == 1
    assert probe.file.is_file()
    saved = probe.file.read_bytes()
    # The answer's length in bytes, a newline, the answer, then the head (NULs dropped).
    length, rest = saved.split(b"\n", 1)
    assert int(length) == len(ANSWER.encode())
    assert rest[: int(length)] == ANSWER.encode()
    assert rest[int(length) :] == probe.bin.read_bytes().replace(b"\0", b"")[:HEAD_CHARS]
    assert probe.run() == ANSWER and probe.asked() == 1  # reused
    assert probe.file.read_bytes() == saved


def test_a_binary_changed_in_its_head_is_asked_again(tmp_path: Path) -> None:
    binary = _binary(HEAD_CHARS + 500)
    probe = Probe(tmp_path, binary)
    probe.run()
    stamp = probe.bin.stat().st_mtime_ns
    changed = bytearray(binary)
    changed[2000] = changed[2000] % 250 + 2  # another character, same size and mtime
    probe.bin.write_bytes(bytes(changed))
    os.utime(probe.bin, ns=(stamp, stamp))
    probe.answer.write_text("3.12.1\n/usr/bin/python3")
    assert probe.run() == "3.12.1\n/usr/bin/python3" and probe.asked() == 2


@pytest.mark.parametrize(
    "damage",
    [
        "length-not-a-number",
        "length-too-long",
        "length-huge",
        "tail-longer",
        "head-cut",
        "empty",
        "answer-only",
    ],
)
def test_a_damaged_probe_file_is_not_trusted(tmp_path: Path, damage: str) -> None:
    probe = Probe(tmp_path, _binary(HEAD_CHARS + 500))
    probe.run()
    saved = probe.file.read_bytes()
    length, rest = saved.split(b"\n", 1)
    damaged = {
        "length-not-a-number": b"3x\n" + rest,
        "length-too-long": str(int(length) + 5).encode() + b"\n" + rest,
        "length-huge": b"99999999999\n" + rest,
        "tail-longer": saved + b"Z",
        "head-cut": saved[:-1],
        "empty": b"",
        "answer-only": length + b"\n" + rest[: int(length)],
    }[damage]
    probe.file.write_bytes(damaged)
    assert probe.run() == ANSWER and probe.asked() == 2
    assert probe.file.read_bytes() == saved  # saved again, whole


def test_a_refused_answer_is_asked_again_and_not_kept(tmp_path: Path) -> None:
    probe = Probe(tmp_path, _binary(300))
    probe.answer.write_text("refused")
    assert probe.run() == "refused" and probe.asked() == 1
    assert not probe.file.exists()
    assert probe.run() == "refused" and probe.asked() == 2
