"""Benchmark pages generated from ``benchmarks/records/*.json`` at build time (mkdocs-gen-files).

A page is the record's printed output, verbatim, under the machine it ran on (CPU model, cores, AMX and
AVX512-BF16, date, command), with the hand-written reading of it from ``benchmarks/notes/<name>.md`` around
it: the notes hold ``<!-- output -->`` where the record goes (``<!-- output:OTHER -->`` embeds another
record). Figures are never pasted into the docs by hand, so each one keeps its machine beside it.
"""

import json
import re
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records"
NOTES = ROOT / "benchmarks" / "notes"
PLACEHOLDER = re.compile(r"<!-- output(?::([\w.-]+))? -->")


def _flag(value):
    return "unknown" if value is None else ("yes" if value else "no")


def machine_line(record: dict) -> str:
    m = record.get("machine") or {}
    cpu = m.get("cpu_model") or "CPU model not recorded"
    cores = f"{m['cores']} cores" if m.get("cores") else "core count not recorded"
    parts = [
        f"**{cpu}**, {cores}, AMX {_flag(m.get('amx'))}, AVX512-BF16 {_flag(m.get('avx512_bf16'))}",
        f"{record.get('date', 'date not recorded')}",
    ]
    if m.get("load_1min") is not None:
        parts.append(f"load {m['load_1min']} at the end")
    if record.get("seconds") is not None:
        parts.append(f"{record['seconds']:.0f} s")
    text = "; ".join(parts)
    status = record.get("status", "measured")
    extra = f" {m['note']}." if m.get("note") else ""
    return (
        f'!!! info "Measured on"\n    {text}. Status: {status}.{extra}\n\n'
        f"    Command: `{record.get('command', '?')}`\n"
    )


def block(record: dict) -> str:
    return f"{machine_line(record)}\n```text\n{record['output'].rstrip()}\n```\n"


def load(name: str) -> dict:
    path = RECORDS / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such benchmark record (named by benchmarks/notes)")
    record = json.loads(path.read_text())
    for key in ("name", "output", "machine"):
        if key not in record:
            raise ValueError(f"{path}: benchmark record without {key!r}")
    return record


# a record embedded in another record's page (the 128-sample throughput run) gets no page of its own
EMBEDDED = {m.group(1) for n in NOTES.glob("*.md") for m in PLACEHOLDER.finditer(n.read_text()) if m.group(1)}

for path in sorted(RECORDS.glob("*.json")):
    name = path.stem
    if name in EMBEDDED:
        continue
    record = load(name)
    notes_path = NOTES / f"{name}.md"
    notes = notes_path.read_text() if notes_path.is_file() else "<!-- output -->\n"
    if not PLACEHOLDER.search(notes):
        notes += "\n<!-- output -->\n"
    body = PLACEHOLDER.sub(lambda m, own=record: block(load(m.group(1)) if m.group(1) else own), notes)
    with mkdocs_gen_files.open(f"benchmarks/{name}.md", "w") as fd:
        fd.write(f"# {record.get('title', name)}\n\n{body}")
