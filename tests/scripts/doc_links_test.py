#!/usr/bin/env python3
"""Every document the project points to exists.

Checks, over the repository's tracked files:
  - each Markdown link [text](target) in a .md file: the target file exists
    (relative to the linking file), and its #anchor names a heading there;
  - each mention of a Markdown file by name (".md") in documents, code
    comments and scripts ("see ARCHITECTURE.md", "docs/compat/README.md"): the
    file exists, relative to the mentioning file, the repository's root, or
    docs/. A quoted name in code is a file the code writes, not a reference.
Usage: doc_links_test.py REPO_ROOT
"""
import re
import subprocess
import sys
from pathlib import Path

root = Path(sys.argv[1]).resolve()
files = subprocess.run(["git", "-C", str(root), "ls-files"], capture_output=True, text=True,
                       check=True).stdout.split()
# The checkout's own files, tracked or new (a test run before a commit).
files += subprocess.run(["git", "-C", str(root), "ls-files", "--others", "--exclude-standard"],
                        capture_output=True, text=True, check=True).stdout.split()
files = sorted({f for f in files if (root / f).is_file()})
TEXT = (".md", ".h", ".cc", ".c", ".S", ".inc", ".sh", ".py", ".txt", ".cmake", ".map")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MENTION = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)(?![\w/])")
errors = []


def anchors(path):
    """GitHub's anchors for a Markdown file's headings."""
    out = set()
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            text = m.group(1).strip().lower()
            text = re.sub(r"[^\w\- ]", "", text)
            out.add(text.replace(" ", "-"))
    return out


def resolve(source, name):
    for base in (source.parent, root, root / "docs"):
        candidate = (base / name).resolve()
        if candidate.exists():
            return candidate
    return None


for rel in files:
    path = root / rel
    if not rel.endswith(TEXT) and not (path.stat().st_mode & 0o111):
        continue
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        continue
    if rel.endswith(".md"):
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                errors.append(f"{rel}: link to missing {target}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                errors.append(f"{rel}: link to missing heading {target}")
    for m in MENTION.finditer(text):
        name = m.group(1)
        quoted = m.start() > 0 and text[m.start() - 1] in "\"'" and not rel.endswith(".md")
        if not quoted and resolve(path, name) is None:
            errors.append(f"{rel}: mentions {name}, which is not in the repository")

for e in errors:
    print(e)
print(f"checked {len(files)} files: {len(errors)} broken reference(s)")
sys.exit(1 if errors else 0)
