"""A large, realistic GitLab job log, generated as a stream (nothing written unless asked).

The noise is what passing jobs print (runner preamble, section markers, ANSI-coloured commands,
compiler/test/package-manager progress); the failure is a real excerpt from fixtures/logs at
the very end, so a classifier has to read everything to find it. Blocks are built once and
cycled, so generating costs next to nothing compared with scanning.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 1 << 20

ESC = "\x1b"
NOISE = [
    "Running with gitlab-runner 17.5.1 (8f2a1bd0)",
    "  on docker-runner-{n} t3_abc{n}, system ID: s_0e6850b2bce1",
    "Using Docker executor with image registry.example.com/ci/build:{n} ...",
    "Pulling docker image registry.example.com/ci/build:{n} ...",
    "{h}: Pull complete",
    "{h}: Already exists",
    "Getting source from Git repository",
    "Fetching changes with git depth set to 20...",
    "Checking out 5e1c{h} as detached HEAD (ref is refs/merge-requests/{n}/head)...",
    ESC + "[32;1m$ make -j4 all" + ESC + "[0;m",
    "  CC       src/module_{n}.o",
    "  CXX      lib/engine/part_{n}.o",
    "g++ -O2 -Wall -Iinclude -c src/feature_{n}.cpp -o build/feature_{n}.o",
    "   Compiling serde_json v1.0.{n}",
    "[INFO] Building jar: /builds/group/app/target/app-1.{n}.jar",
    "[INFO] --- maven-surefire-plugin:3.2.5:test (default-test) @ app ---",
    "[INFO] Tests run: {n}, Failures: 0, Errors: 0, Skipped: 0, Time elapsed: 0.{n} s"
    " - in com.example.Test{n}",
    "tests/unit/test_module_{n}.py::test_case_{n} PASSED                     [ {p}%]",
    "ok  \tgitlab.example.com/group/app/pkg/part{n}\t0.{n}s",
    " PASS  src/components/Widget{n}.test.tsx",
    "npm WARN deprecated inflight@1.0.{n}: This module is not supported",
    "added {n} packages, and audited {n} packages in 4s",
    "Collecting requests==2.31.{n}",
    "  Downloading requests-2.31.0-py3-none-any.whl (62 kB)",
    "Successfully installed certifi-2024.{n}.2 idna-3.{n}",
    "Downloaded https://repo.maven.apache.org/maven2/org/slf4j/slf4j-api/2.0.{n}/slf4j-api-2.0.{n}.pom"
    " (2.{n} kB at 61 kB/s)",
    "#{n} [build 4/9] RUN pip install --no-cache-dir -r requirements.txt",
    "#{n} DONE 0.{n}s",
    "Uploading artifacts for successful job",
    "INFO: processed {n} records in 0.{n}s (cache hit ratio 0.9{n})",
    ESC + "[0;33mWARNING: cache for key build-{n} not found" + ESC + "[0;m",
]
SECTIONS = ["prepare_executor", "get_sources", "restore_cache", "step_script", "upload_artifacts_on_success"]


def _block(rng: random.Random) -> bytes:
    lines: list[str] = []
    size = 0
    while size < BLOCK:
        if rng.random() < 0.002:
            name = rng.choice(SECTIONS)
            ts = 1_700_000_000 + rng.randrange(10_000)
            line = f"{ESC}[0Ksection_start:{ts}:{name}\r{ESC}[0K{ESC}[0K{ESC}[36;1mStep {name}{ESC}[0;m"
            lines.append(line)
            lines.append(f"{ESC}[0Ksection_end:{ts + 5}:{name}\r{ESC}[0K")
        else:
            line = rng.choice(NOISE).format(n=rng.randrange(1, 999), h=f"{rng.getrandbits(48):012x}",
                                            p=rng.randrange(1, 100))
            lines.append(line)
        size += len(lines[-1]) + 1
    return ("\n".join(lines) + "\n").encode()


def generate(total: int, failure: str = "gcc-clang-error.log", seed: int = 7) -> Iterator[bytes]:
    """About `total` bytes of passing-job noise, then the failure excerpt."""
    rng = random.Random(seed)
    blocks = [_block(rng) for _ in range(8)]
    sent = 0
    i = 0
    while sent < total:
        block = blocks[i % len(blocks)]
        i += 1
        if sent + len(block) > total:
            block = block[: block.rfind(b"\n", 0, max(total - sent, 1)) + 1] or block[: total - sent]
        sent += len(block)
        yield block
    yield next((ROOT / "fixtures" / "logs").rglob(failure)).read_bytes()


def write(path: Path, total: int, failure: str = "gcc-clang-error.log") -> int:
    n = 0
    with open(path, "wb") as fh:
        for chunk in generate(total, failure):
            fh.write(chunk)
            n += len(chunk)
    return n
