"""``videoid bench mrz``: our zone reader against plain ``passporteye.read_mrz`` on the
same phone photos of synthetic TD1 and TD3 documents.

Prints, for each reader, the share of fields read right, the number of documents with
every field right, and the median and p95 time per photo (decoding the JPEG included),
all on one core (the benchmark pins itself to one CPU where the OS allows).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ..documents.mrz import MrzError, parse_mrz
from ..documents.reader import read_mrz
from .documents import make_document, phone_photo, portrait_from, render

FIELDS = (
    "document_code",
    "issuing_state",
    "document_number",
    "surname",
    "given_names",
    "nationality",
    "date_of_birth",
    "sex",
    "date_of_expiry",
)


@dataclass(frozen=True)
class Sample:
    path: Path
    expected: dict[str, str]
    fmt: str


def _norm(value: str) -> str:
    return " ".join(value.replace("<", " ").split())


def _raw_fields(lines: tuple[str, ...]) -> dict[str, str]:
    data = parse_mrz(lines)
    l2 = lines[1]
    if data.format == "TD1":
        dob, doe = l2[0:6], l2[8:14]
    else:
        dob, doe = l2[13:19], l2[21:27]
    return {
        "document_code": data.document_code,
        "issuing_state": data.issuing_state,
        "document_number": data.document_number,
        "surname": _norm(data.surname),
        "given_names": _norm(data.given_names),
        "nationality": data.nationality,
        "date_of_birth": dob,
        "sex": data.sex if data.sex != "X" else "<",
        "date_of_expiry": doe,
    }


def make_samples(count: int, seed: int, directory: Path, photos: list[Path]) -> list[Sample]:
    """``count`` photos, half TD1 and half TD3, cached in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    portraits = [portrait_from(p) for p in photos]
    samples = []
    for i in range(count):
        rng = random.Random(f"{seed}-{i}")  # each sample its own stream: caching is safe
        fmt: Literal["TD1", "TD3"] = "TD1" if i % 2 == 0 else "TD3"
        doc = make_document(rng, fmt)
        path = directory / f"{seed}-{i:03d}-{fmt}.jpg"
        if not path.exists():
            side, _ = render(doc, portraits[i % len(portraits)], rng)
            path.write_bytes(phone_photo(side, rng))
        samples.append(Sample(path, _raw_fields(doc.lines), fmt))
    return samples


def ours(path: Path) -> dict[str, str]:
    image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    try:
        return _raw_fields(read_mrz(image).data.lines)
    except MrzError:
        return {}


def passporteye(path: Path) -> dict[str, str]:
    from passporteye import read_mrz as pe_read

    mrz = pe_read(str(path))
    if mrz is None:
        return {}
    d = mrz.to_dict()
    return {
        "document_code": d["type"].replace("<", ""),
        "issuing_state": d["country"].replace("<", ""),
        "document_number": d["number"].replace("<", ""),
        "surname": _norm(d["surname"]),
        "given_names": _norm(d["names"]),
        "nationality": d["nationality"].replace("<", ""),
        "date_of_birth": d["date_of_birth"],
        "sex": d["sex"],
        "date_of_expiry": d["expiration_date"],
    }


@dataclass
class Result:
    name: str
    fields_right: int
    fields_total: int
    docs_right: int
    docs: int
    times: list[float]
    wrong: list[str]

    def line(self) -> str:
        t = sorted(self.times)
        p95 = t[min(len(t) - 1, int(len(t) * 0.95))]
        return (
            f"{self.name:<12} fields {100 * self.fields_right / self.fields_total:6.2f}%"
            f"  documents {self.docs_right}/{self.docs}"
            f" ({100 * self.docs_right / self.docs:5.1f}%)"
            f"  median {statistics.median(t):.3f} s  p95 {p95:.3f} s"
        )


def evaluate(name: str, reader: Callable[[Path], dict[str, str]], samples: list[Sample]) -> Result:
    result = Result(name, 0, 0, 0, len(samples), [], [])
    for sample in samples:
        start = time.perf_counter()
        got = reader(sample.path)
        result.times.append(time.perf_counter() - start)
        right = [got.get(f) == sample.expected[f] for f in FIELDS]
        result.fields_right += sum(right)
        result.fields_total += len(FIELDS)
        if all(right):
            result.docs_right += 1
        else:
            bad = [
                f"{f}={got.get(f)!r}≠{sample.expected[f]!r}"
                for f, ok in zip(FIELDS, right, strict=True)
                if not ok
            ]
            result.wrong.append(f"{sample.path.name}: {', '.join(bad)}")
    return result


def run(
    count: int, seed: int, baseline: bool, data_dir: Path, photos: list[Path], verbose: bool
) -> list[Result]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cv2.setNumThreads(1)
    samples = make_samples(count, seed, data_dir / "bench" / "mrz", photos)
    print(
        f"{len(samples)} phone photos of synthetic documents (seed {seed}),"
        " pinned to one core; wall time per photo"
    )
    results = [evaluate("videoid", ours, samples)]
    print(results[0].line(), flush=True)
    if baseline:
        results.append(evaluate("passporteye", passporteye, samples))
        print(results[1].line(), flush=True)
    if verbose:
        for r in results:
            for w in r.wrong:
                print(f"  {r.name}: {w}")
    return results
