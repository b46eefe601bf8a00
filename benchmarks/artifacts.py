"""Artifact store throughput: gitml's bucket stores beside each provider's own client.

    python benchmarks/artifacts.py [--providers s3,gcs,azure] [--large-mb 100]
                                   [--small-count 1000] [--small-kb 10]

Against a real server of each provider on 127.0.0.1 (moto's S3, fake-gcs-server,
Azurite), for one large file and many small ones, upload and download:
gitml's store (digest checked on the way, parts in parallel) beside the
provider's client doing the same transfer with its defaults, and gitml's
parallel transfer of the small files (what ``gitml push``/``pull`` do) beside
a serial loop of the provider's client. Targets: large files at least 0.8x the
provider client's throughput; small files in parallel at least 3x the loop.

Beside the small files' rows, the provider client's own calls from a pool of
``--ceiling-workers`` threads: what the server (an emulator sharing this
machine's cores) serves at most, so how far gitml's parallel transfer is from
that ceiling, and whether the ceiling itself allows 3x the loop.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest

from benchmarks.common import ROOT
from gitml.artifacts import BucketStore, SharedStore, bucket_store
from gitml.artifacts.folder import ExternalStore
from testing.buckets import harness

PREFIX = "bench"


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


Upload = Callable[[Path, str], None]
Download = Callable[[str, Path], None]


def native(provider: Any, bucket: str) -> tuple[Upload, Download]:
    """The provider client's own upload and download of one file, with its defaults."""
    if provider.scheme == "s3":
        client = provider.client
        return (
            lambda path, key: client.upload_file(str(path), bucket, key),
            lambda key, dest: client.download_file(bucket, key, str(dest)),
        )
    if provider.scheme == "gs":
        gcs = provider.client.bucket(bucket)
        return (
            lambda path, key: gcs.blob(key).upload_from_filename(str(path)),
            lambda key, dest: gcs.blob(key).download_to_filename(str(dest)),
        )

    def az_up(path: Path, key: str) -> None:
        with open(path, "rb") as data:
            provider.client.get_blob_client(bucket, key).upload_blob(data, overwrite=True)

    def az_down(key: str, dest: Path) -> None:
        with open(dest, "wb") as out:
            provider.client.get_blob_client(bucket, key).download_blob().readinto(out)

    return az_up, az_down


def mb_s(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:,.1f} MB/s"


def pooled(work: Callable[[str], object], items: Iterable[str], workers: int) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, items))


def best(work: Callable[[int], object], repeats: int) -> float:
    """The fastest of ``repeats`` timings (``work`` gets the repetition's number)."""
    return min(timed(functools.partial(work, i)) for i in range(repeats))


def measure(provider: Any, args: argparse.Namespace, work: Path) -> None:
    with pytest.MonkeyPatch.context() as env:
        provider.env(env)
        bucket = provider.new_bucket()
        settings = provider.settings(bucket, PREFIX)
        store = bucket_store(settings["artifact_store"], settings.get("artifact_endpoint_url"))
        assert isinstance(store, BucketStore)
        up, down = native(provider, bucket)
        name = provider.scheme

        # Fresh content each time (a store skips what it holds), both clients warm.
        larges: list[tuple[Path, str]] = []
        for i in range(args.repeats + 1):
            path = work / f"large-{i}.bin"
            path.write_bytes(os.urandom(args.large_mb * 1024 * 1024))
            larges.append((path, hashlib.sha256(path.read_bytes()).hexdigest()))
        size = larges[0][0].stat().st_size
        warm, warm_sha = larges.pop()
        store.put(warm, warm_sha)
        up(warm, "native/warm.bin")
        gitml_up = best(lambda i: store.put(*larges[i]), args.repeats)
        native_up = best(lambda i: up(larges[i][0], f"native/{i}.bin"), args.repeats)
        gitml_down = best(
            lambda i: store.copy_to(larges[i][1], work / f"back-{i}.bin", "large"), args.repeats
        )
        native_down = best(lambda i: down(f"native/{i}.bin", work / "n.bin"), args.repeats)
        row(
            f"{name}: {args.large_mb} MB upload",
            mb_s(size, gitml_up),
            mb_s(size, native_up),
            native_up / gitml_up,
            0.8,
        )
        row(
            f"{name}: {args.large_mb} MB download",
            mb_s(size, gitml_down),
            mb_s(size, native_down),
            native_down / gitml_down,
            0.8,
        )

        cache = ExternalStore(work / f"cache-{name}")
        small: dict[str, Path] = {}
        for _ in range(args.small_count):
            data = os.urandom(args.small_kb * 1024)
            digest = hashlib.sha256(data).hexdigest()
            cache.put_bytes(data, digest)
            small[digest] = cache.path(digest)
        shared = SharedStore(store, cache)
        parallel_up = timed(lambda: shared.upload(small))
        serial_up = timed(lambda: [up(path, f"serial/{d}") for d, path in small.items()])
        ceiling_up = timed(
            lambda: pooled(lambda d: up(small[d], f"pooled/{d}"), small, args.ceiling_workers)
        )
        count = f"{args.small_count} x {args.small_kb} KB"
        row(
            f"{name}: {count} upload",
            f"{args.small_count / parallel_up:,.0f} files/s",
            f"{args.small_count / serial_up:,.0f} files/s",
            serial_up / parallel_up,
            3.0,
        )
        ceiling(args, parallel_up, ceiling_up, serial_up)

        fresh = ExternalStore(work / f"fresh-{name}")
        shared = SharedStore(store, fresh)
        wanted = {digest: f"file {i}" for i, digest in enumerate(small)}
        parallel_down = timed(lambda: shared.download(wanted))
        assert fresh.missing(wanted) == set()
        serial_down = timed(lambda: [down(f"serial/{d}", work / "one.bin") for d in small])
        ceiling_down = timed(
            lambda: pooled(
                lambda d: down(f"pooled/{d}", work / f"p-{d}"), small, args.ceiling_workers
            )
        )
        row(
            f"{name}: {count} download",
            f"{args.small_count / parallel_down:,.0f} files/s",
            f"{args.small_count / serial_down:,.0f} files/s",
            serial_down / parallel_down,
            3.0,
        )
        ceiling(args, parallel_down, ceiling_down, serial_down)
        store.close()


def row(name: str, gitml: str, other: str, ratio: float, target: float) -> None:
    verdict = "met" if ratio >= target else "NOT met"
    print(
        f"{name:<34} gitml {gitml:>14}   provider {other:>14}   "
        f"{ratio:5.2f}x (target >= {target}x: {verdict})",
        flush=True,
    )


def ceiling(args: argparse.Namespace, gitml: float, pooled: float, serial: float) -> None:
    """The provider client's own calls in a thread pool: the most the server gives here."""
    print(
        f"{'':<34} provider x{args.ceiling_workers} {args.small_count / pooled:>10,.0f} files/s "
        f"= {serial / pooled:.2f}x the loop; gitml at {pooled / gitml:.2f}x of it",
        flush=True,
    )


def main() -> None:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--providers", default="s3,gcs,azure")
    parse.add_argument("--large-mb", type=int, default=100)
    parse.add_argument("--small-count", type=int, default=1000)
    parse.add_argument("--small-kb", type=int, default=10)
    parse.add_argument("--repeats", type=int, default=3, help="best of this many (large)")
    parse.add_argument(
        "--ceiling-workers", type=int, default=16, help="threads of the provider's own pool"
    )
    parse.add_argument("--workdir", type=Path, default=None)
    args = parse.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"gitml {ROOT}; provider = the provider's client with its defaults, serially "
        "for small files",
        flush=True,
    )
    for name in args.providers.split(","):
        server = harness(name, in_process=False)
        with tempfile.TemporaryDirectory(dir=args.workdir) as work, server as provider:
            measure(provider, args, Path(work))


if __name__ == "__main__":
    main()
