"""Rebuild `wordnet_sentences.txt` from Debian's `wordnet-base` package.

    python calibration_data/build_wordnet_corpus.py [--deb PATH]

Without --deb it runs `apt-get download wordnet-base` into a temporary folder. The package's
sha256 is checked against the one the datasheet records, so the output is reproducible
byte for byte. Only WordNet's quoted usage examples are kept: they are real sentences, which
glosses (definitions) mostly are not.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DEB_VERSION = "1:3.0-37"
DEB_SHA256 = "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"
SENTENCES = 6000
OUT = Path(__file__).with_name("wordnet_sentences.txt")

_EXAMPLE = re.compile(r'"([^"]+)"')


def extract_examples(wordnet_dir: Path) -> list[str]:
    seen: set[str] = set()
    for part in ("noun", "verb", "adj", "adv"):
        for line in (wordnet_dir / f"data.{part}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # licence header lines start with two spaces
            gloss = line.split("|", 1)[1]
            for example in _EXAMPLE.findall(gloss):
                text = " ".join(example.split())
                if len(text.split()) >= 5 and text[0].isalpha():
                    seen.add(text)
    # A stable, content-keyed order: independent of file order and Python's hash seed.
    return sorted(seen, key=lambda s: hashlib.sha256(s.encode()).hexdigest())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", type=Path, help="path to wordnet-base_3.0-37_all.deb")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        deb = args.deb
        if deb is None:
            subprocess.run(["apt-get", "download", f"wordnet-base={DEB_VERSION}"], cwd=tmp, check=True)
            deb = next(Path(tmp).glob("wordnet-base_*.deb"))
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        if digest != DEB_SHA256:
            print(f"{deb}: sha256 {digest} is not the expected {DEB_SHA256}", file=sys.stderr)
            return 1
        subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp, "x"))], check=True)
        sentences = extract_examples(Path(tmp, "x/usr/share/wordnet"))[:SENTENCES]
    OUT.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    print(f"wrote {len(sentences)} sentences to {OUT}")
    print(f"sha256 {hashlib.sha256(OUT.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
