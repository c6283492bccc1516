"""A decoded copy of training samples: PNG/JPEG decoding paid once, not every epoch.

`seg-perception decode --data KIND:PATH:SPLIT --out DIR` writes one uncompressed ``.npz`` per sample (the
arrays ``SampleRef.load`` returns: uint8 image, train ids, instance ids where annotated); `train
--decoded-cache DIR` reads them instead of the source files. A sample's file is named by a hash of its
source files' paths, sizes and modification times, so an edited or replaced source no longer matches its
old entry and is decoded from the source again: the cache can be stale, never wrong. How many samples the
cache covers is said when training starts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from seg_perception.training.data import SampleRef

LOG = logging.getLogger(__name__)
SUFFIX = ".npz"


def sample_key(ref: SampleRef) -> str:
    """Hash of the kind and of every source file's path, size and mtime (ns)."""
    digest = hashlib.sha256(ref.kind.encode())
    for field in fields(ref.sample):
        value = getattr(ref.sample, field.name)
        if isinstance(value, Path):
            stat = value.stat()
            digest.update(f"{field.name}={value.resolve()}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:32]


class DecodedCache:
    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path_for(self, ref: SampleRef) -> Path:
        key = sample_key(ref)
        return self.directory / key[:2] / f"{key}{SUFFIX}"

    def write(self, refs: Iterable[SampleRef]) -> tuple[int, int]:
        """Decode and store every sample not stored yet; returns (written, already there)."""
        written = present = 0
        for ref in refs:
            path = self.path_for(ref)
            if path.is_file():
                present += 1
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.stem}.{os.getpid()}.partial{SUFFIX}")
            np.savez(partial, **ref.load())  # uncompressed: reading it back is a copy, not a decode
            partial.replace(path)  # atomic: an interrupted run never leaves half a sample under the final name
            written += 1
        return written, present

    def coverage(self, refs: Sequence[SampleRef]) -> int:
        return sum(self.path_for(ref).is_file() for ref in refs)


@dataclass(frozen=True)
class CachedSampleRef:
    """A sample read from its decoded-cache entry (``SampleRef``'s interface: ``load``)."""

    ref: SampleRef
    cache_path: Path

    def load(self) -> dict[str, np.ndarray]:
        try:
            with np.load(self.cache_path) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:  # removed or damaged since the start
            LOG.warning("decoded cache entry %s unreadable (%s); decoding %s from its source files",
                        self.cache_path, error, getattr(self.ref.sample, "image", self.ref.sample))
            return self.ref.load()


def with_cache(refs: Sequence[SampleRef], directory: Path | str) -> tuple[list[SampleRef | CachedSampleRef], int]:
    """``refs`` reading from the cache where it has them; returns them and how many it has."""
    cache = DecodedCache(directory)
    out: list[SampleRef | CachedSampleRef] = []
    hits = 0
    for ref in refs:
        path = cache.path_for(ref)
        if path.is_file():
            out.append(CachedSampleRef(ref, path))
            hits += 1
        else:
            out.append(ref)
    return out, hits
