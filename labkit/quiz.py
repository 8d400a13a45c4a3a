"""The interview question bank: load and check questions/*.yaml, resolve evidence links, quiz yourself."""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import random
import re
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from labkit.paths import NOTEBOOK_DIR, QUESTIONS_DIR
FIELDS = ("id", "topic", "question", "answer", "links")
ID_RE = re.compile(r"[a-z]+-\d{2,}")  # eval-01, gd-12
HEADING_RE = re.compile(r"^## (\d+) · (.+)$", re.M)  # "## 4 · Evaluation: more than accuracy"
PROMPT = "Enter: show the answer · q: quit > "
InputFn, PrintFn = Callable[[str], str], Callable[[str], None]


class BankError(ValueError):
    """A question file that breaks the bank's format, or a link that does not resolve."""


@dataclass(frozen=True)
class Question:
    """One interview question, a strong candidate's answer, and links to the evidence."""
    id: str
    topic: str  # equals the stem of the file it lives in
    question: str
    answer: str
    links: tuple[str, ...]  # "nb:<notebook stem>#<section>" or "labkit:<dotted.symbol>"


def _check_entry(entry: Any, path: Path, index: int) -> Question:
    """One YAML entry as a Question; errors name the file and the id (or the entry's position)."""
    if not isinstance(entry, dict):
        raise BankError(f"{path.name}: entry {index} must be a mapping with fields {list(FIELDS)}")
    where = f"{path.name}: {entry.get('id', f'entry {index}')}"
    missing, unknown = [f for f in FIELDS if f not in entry], sorted(set(entry) - set(FIELDS))
    if missing or unknown:
        raise BankError(f"{where}: missing field(s) {missing}, unknown field(s) {unknown}; fields are {list(FIELDS)}")
    if not isinstance(entry["id"], str) or not ID_RE.fullmatch(entry["id"]):
        raise BankError(f"{where}: an id looks like 'eval-07' (lowercase prefix, dash, two or more digits)")
    if entry["topic"] != path.stem:
        raise BankError(f"{where}: topic {entry['topic']!r} does not match its file (expected {path.stem!r})")
    if not all(isinstance(entry[f], str) and entry[f].strip() for f in ("question", "answer")):
        raise BankError(f"{where}: question and answer must be non-empty text")
    links = entry["links"]
    if not isinstance(links, list) or not links or not all(str(k).startswith(("nb:", "labkit:")) for k in links):
        raise BankError(f"{where}: links must be a non-empty list of 'nb:<stem>#<n>' or 'labkit:<symbol>'")
    flat = {f: " ".join(entry[f].split()) for f in ("question", "answer")}  # YAML line breaks -> spaces
    return Question(entry["id"], path.stem, flat["question"], flat["answer"], tuple(links))


def load_bank(directory: Path = QUESTIONS_DIR) -> list[Question]:
    """Every question in directory/*.yaml (one file per topic), validated, in file order."""
    bank, seen = [], {}  # seen: id -> file name
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            entries = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise BankError(f"{path.name}: not valid YAML: {err}") from None
        if not isinstance(entries, list) or not entries:
            raise BankError(f"{path.name}: must be a non-empty YAML list of questions")
        for index, entry in enumerate(entries, 1):
            q = _check_entry(entry, path, index)
            if q.id in seen:
                raise BankError(f"{path.name}: duplicate id {q.id!r} (also in {seen[q.id]})")
            seen[q.id] = path.name
            bank.append(q)
    if not bank:
        raise BankError(f"no question files (*.yaml) in {directory}")
    return bank


def resolve_link(link: str, notebook_dir: Path = NOTEBOOK_DIR) -> str:
    """What link points at, in words; BankError if the notebook section or labkit symbol does not exist."""
    kind, _, target = link.partition(":")
    if kind == "nb":
        stem, _, number = target.partition("#")
        path = Path(notebook_dir) / f"{stem}.ipynb"
        if not path.exists():
            raise BankError(f"{link}: no notebook {path.name} in {notebook_dir}")
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        titles = {m[1]: m[2].strip() for m in HEADING_RE.finditer(text)}
        if number not in titles:
            raise BankError(f"{link}: {path.name} has no heading '## {number} · …' (it has {list(titles)})")
        return f"{stem} §{number} · {titles[number]}"
    if kind != "labkit" or not target.startswith("labkit."):
        raise BankError(f"{link}: a link is 'nb:<stem>#<n>' or 'labkit:labkit.<module>.<symbol>'")
    try:
        obj = pkgutil.resolve_name(target)  # imports the longest module prefix, then getattr on the rest
    except (ImportError, AttributeError, ValueError) as err:
        raise BankError(f"{link}: {err}") from None
    doc = (obj.__doc__ or "").strip().splitlines()
    return f"{target}: {doc[0]}" if doc else target


def format_question(q: Question) -> str:
    """The id, topic and question text, wrapped."""
    return f"{q.id} ({q.topic})\n{textwrap.fill(q.question, 100)}"


def format_answer(q: Question) -> str:
    """The answer, wrapped, then each evidence link with what it points at."""
    lines = [textwrap.fill(q.answer, 100, initial_indent="  ", subsequent_indent="  "), "  Evidence:"]
    for link in q.links:
        try:
            lines.append(f"    {link}  ({resolve_link(link)})")
        except (BankError, ImportError) as err:
            lines.append(f"    {link}  (unresolved: {err})")
    return "\n".join(lines)


def ask(questions: Sequence[Question], input_fn: InputFn = input, print_fn: PrintFn = print) -> int:
    """Show each question; Enter reveals its answer, q or end of input quits; returns answers shown."""
    shown = 0
    for n, q in enumerate(questions, 1):
        print_fn(f"\n[{n}/{len(questions)}] {format_question(q)}")
        try:
            reply = input_fn(PROMPT)
        except (EOFError, KeyboardInterrupt):  # stdin closed or not a terminal, or Ctrl-C
            print_fn("")
            break
        if reply.strip().lower() in ("q", "quit", "exit"):
            break
        print_fn(format_answer(q))
        shown += 1
    print_fn(f"\n{shown} of {len(questions)} answers shown.")
    return shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The quiz's options, for the `labkit quiz` subcommand or a parser of its own."""
    parser.add_argument("--topic", action="append", help="only this topic (repeatable)")
    parser.add_argument("--id", dest="ids", action="append", help="print this question and its answer (repeatable)")
    parser.add_argument("--list-topics", action="store_true", help="list the topics with their question counts")
    parser.add_argument("--reveal", action="store_true", help="print the selected questions and answers, no prompts")
    parser.add_argument("--shuffle", action="store_true", help="ask in random order")
    parser.add_argument("--dir", type=Path, default=QUESTIONS_DIR, help="the question bank folder")


def run(args: argparse.Namespace, input_fn: InputFn = input, print_fn: PrintFn = print) -> int:
    """Carry out parsed quiz options: 0 on success, 1 with a message on stderr for a bad bank, topic or id."""
    try:
        bank = load_bank(args.dir)
        by_id, topics = {q.id: q for q in bank}, Counter(q.topic for q in bank)
        unknown = [t for t in args.topic or [] if t not in topics] + [i for i in args.ids or [] if i not in by_id]
        if unknown:
            raise BankError(f"unknown topic or id {unknown}; topics: {', '.join(sorted(topics))}")
    except BankError as err:
        print(f"labkit quiz: {err}", file=sys.stderr)
        return 1
    if args.list_topics:
        print_fn("\n".join(f"{topic:<20} {count:>3}" for topic, count in sorted(topics.items())))
        return 0
    chosen = [by_id[i] for i in args.ids] if args.ids else [q for q in bank if q.topic in (args.topic or topics)]
    if args.shuffle:
        random.shuffle(chosen)
    if args.ids or args.reveal:
        print_fn("\n\n".join(f"{format_question(q)}\n{format_answer(q)}" for q in chosen))
    else:
        ask(chosen, input_fn, print_fn)
    return 0


def main(argv: list[str] | None = None, input_fn: InputFn = input, print_fn: PrintFn = print) -> int:
    """`labkit quiz [--topic T] [--id ID] [--list-topics] [--reveal] [--shuffle]`."""
    parser = argparse.ArgumentParser(prog="labkit quiz", description="Interview questions with evidence links")
    add_arguments(parser)
    return run(parser.parse_args(argv), input_fn, print_fn)
