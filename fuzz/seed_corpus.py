#!/usr/bin/env python3
"""Write the login fixtures' bodies into the fuzz targets' corpora.

Reads every fixtures/login/*.http file (a header block, an empty line, then
the body bytes) and writes one seed per fixture, named fixture-<file stem>,
into fuzz/corpus/<target>/:

- json, multipart, text_plain, form_urlencoded: fixtures with that media
  type (text_plain also gets those without Content-Type). The json, text_plain
  and form_urlencoded seeds are the body alone. A multipart seed is the
  fixture's boundary parameter, a newline, then the body.
- dispatch: fixtures with exactly one Content-Type, as the value, a newline,
  then the body.

Seeds from an earlier run are deleted first, so the seeds always match the
fixtures. Files that libFuzzer added to a corpus are left alone.
"""

import pathlib
import sys

FUZZ_DIR = pathlib.Path(__file__).resolve().parent
FIXTURE_DIR = FUZZ_DIR.parent / "fixtures" / "login"
CORPUS_DIR = FUZZ_DIR / "corpus"
SEED_PREFIX = "fixture-"

TARGET_BY_MEDIA_TYPE = {
    "application/json": "json",
    "multipart/form-data": "multipart",
    "text/plain": "text_plain",
    "application/x-www-form-urlencoded": "form_urlencoded",
}
TARGETS = list(TARGET_BY_MEDIA_TYPE.values()) + ["dispatch"]


def read_fixture(path):
    """Return the fixture's Content-Type values (as bytes) and its body."""
    data = path.read_bytes()
    end = data.find(b"\n\n")
    if end < 0:
        sys.exit(f"{path}: no empty line after the header block")
    content_types = []
    for line in data[:end].split(b"\n"):
        key, _, value = line.partition(b": ")
        if key == b"content-type":
            content_types.append(value)
    return content_types, data[end + 2 :]


def boundary_of(content_type):
    """Return the boundary parameter as written, quotes included, or b""."""
    for parameter in content_type.split(b";")[1:]:
        name, _, value = parameter.strip().partition(b"=")
        if name.lower() == b"boundary":
            return value
    return b""


def seeds_of(content_types, body):
    """Yield (target, seed bytes) for one fixture."""
    if len(content_types) > 1:
        return
    if not content_types:
        yield "text_plain", body
        return

    content_type = content_types[0]
    yield "dispatch", content_type + b"\n" + body

    media_type = content_type.split(b";")[0].strip().lower().decode("latin-1")
    target = TARGET_BY_MEDIA_TYPE.get(media_type)
    if target == "multipart":
        yield target, boundary_of(content_type) + b"\n" + body
    elif target is not None:
        yield target, body


def main():
    fixtures = sorted(FIXTURE_DIR.glob("*.http"))
    if not fixtures:
        sys.exit(f"no fixtures in {FIXTURE_DIR}")

    for target in TARGETS:
        directory = CORPUS_DIR / target
        directory.mkdir(parents=True, exist_ok=True)
        for old_seed in directory.glob(SEED_PREFIX + "*"):
            old_seed.unlink()

    counts = dict.fromkeys(TARGETS, 0)
    for path in fixtures:
        content_types, body = read_fixture(path)
        for target, seed in seeds_of(content_types, body):
            (CORPUS_DIR / target / (SEED_PREFIX + path.stem)).write_bytes(seed)
            counts[target] += 1

    for target in TARGETS:
        print(f"{CORPUS_DIR / target}: {counts[target]} seeds")


if __name__ == "__main__":
    main()
