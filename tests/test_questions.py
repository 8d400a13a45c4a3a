"""The interview question bank: it loads, its links resolve, it covers the curriculum and the notebooks'
Interview corners, it does not repeat the source material's errors, and the quiz runs without a terminal."""
import json
import re
from dataclasses import FrozenInstanceError

import pytest

from labkit import notebooks, quiz

BANK = quiz.load_bank()
BY_ID = {q.id: q for q in BANK}
FUNDAMENTALS = ("evaluation", "regularization", "activations", "optimization", "cnn", "rnn",
                "building_training", "transfer_learning")


def _text(topic: str) -> str:
    return " ".join(f"{q.question} {q.answer}" for q in BANK if q.topic == topic)


def _cited() -> list[tuple[str, str, str]]:
    """(notebook, id, text) for every '* **id** text' item of a notebook's Interview corner."""
    cited = []
    for path in notebooks.course_notebooks():
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            source = "".join(cell["source"])
            if cell["cell_type"] == "markdown" and "Interview corner" in source:
                for m in re.finditer(r"\*\*([a-z]+-\d{2,})\*\*(.*?)(?=\n\s*\*\s|\n\n|\Z)", source, re.S):
                    cited.append((path.stem, m[1], m[2]))
    return cited


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


# ------------------------------------------------------------------------ the bank as shipped

def test_bank_loads_with_enough_unique_questions():
    assert len(BANK) >= 40, f"only {len(BANK)} questions"
    assert len(BY_ID) == len(BANK), "duplicate ids"
    fundamentals = [q for q in BANK if q.topic in FUNDAMENTALS]
    assert len(fundamentals) >= 40, f"only {len(fundamentals)} questions on the fundamentals"


def test_every_fundamentals_topic_has_a_file_and_questions():
    counts = {t: sum(q.topic == t for q in BANK) for t in FUNDAMENTALS}
    assert all(n >= 3 for n in counts.values()), counts


def test_questions_are_frozen():
    with pytest.raises(FrozenInstanceError):
        BANK[0].answer = "anything"


@pytest.mark.parametrize("q", BANK, ids=lambda q: q.id)
def test_every_link_resolves(q):
    assert q.links, f"{q.id} has no evidence link"
    problems = []
    for link in q.links:
        try:
            quiz.resolve_link(link)
        except quiz.BankError as err:
            problems.append(str(err))
    assert not problems, f"{q.id}: " + "; ".join(problems)


@pytest.mark.parametrize("q", BANK, ids=lambda q: q.id)
def test_answers_are_concise(q):
    words = len(q.answer.split())
    assert 25 <= words <= 160, f"{q.id}: {words} words; an answer is 2-6 sentences"
    assert q.question.rstrip().endswith(("?", ".")), f"{q.id}: the question should end with '?'"


def test_every_interview_corner_id_is_in_the_bank():
    cited = _cited()
    assert cited, "no notebook cites a question id in its Interview corner"
    missing = sorted({(qid, nb) for nb, qid, _ in cited if qid not in BY_ID})
    assert not missing, f"cited in a notebook but missing from questions/: {missing}"


def test_interview_corner_text_matches_the_bank_question():
    # the notebook may add pointers ("(see §4)"), but the bank question's words must be there
    mismatched = []
    for nb, qid, text in _cited():
        if qid in BY_ID:
            words = _words(BY_ID[qid].question)
            if len(words & _words(text)) < 0.7 * len(words):
                mismatched.append(f"{nb} {qid}: notebook {' '.join(text.split())[:80]!r} vs bank {BY_ID[qid].question!r}")
    assert not mismatched, "\n".join(mismatched)


# Every fundamentals interview question of the curriculum, as (topic, pattern its questions must contain).
CURRICULUM = [
    ("evaluation", r"\baccuracy\b"), ("evaluation", r"\bprecision\b"), ("evaluation", r"\brecall\b"),
    ("evaluation", r"\bF1\b"), ("evaluation", r"\bROC\b"), ("evaluation", r"\bAUC\b"),
    ("evaluation", r"confusion matrix"), ("evaluation", r"\bmacro\b"), ("evaluation", r"training time"),
    ("evaluation", r"latency"), ("evaluation", r"memory|resource"),
    ("regularization", r"\bL1\b"), ("regularization", r"\bL2\b"), ("regularization", r"[Dd]ropout"),
    ("regularization", r"DropConnect"), ("regularization", r"[Ee]arly stopping"),
    ("regularization", r"[Bb]atch norm"),
    ("activations", r"sigmoid"), ("activations", r"tanh"), ("activations", r"ReLU"),
    ("activations", r"softmax"),
    ("optimization", r"[Bb]atch gradient descent"), ("optimization", r"[Ss]tochastic gradient descent"),
    ("optimization", r"[Mm]ini-batch"), ("optimization", r"\bSGD\b"), ("optimization", r"[Mm]omentum"),
    ("optimization", r"\bAdam\b"), ("optimization", r"schedule"),
    ("cnn", r"convolution"), ("cnn", r"pool"),
    ("rnn", r"\bLSTM\b"), ("rnn", r"\bGRU\b"), ("rnn", r"encoder-decoder"), ("rnn", r"vanishing"),
    ("building_training", r"step by step"), ("building_training", r"checkpoint"),
    ("building_training", r"model\.train\(\)"),
    ("transfer_learning", r"[Tt]ransfer learning"), ("transfer_learning", r"[Ff]ine-tun"),
    ("transfer_learning", r"[Ff]reez"),
]


@pytest.mark.parametrize("topic, pattern", CURRICULUM, ids=[f"{t}:{p}" for t, p in CURRICULUM])
def test_curriculum_item_is_covered(topic, pattern):
    assert re.search(pattern, _text(topic)), f"no {topic} question covers {pattern!r}"


# ------------------------------------------------------------------------ misconception guards

def test_f1_is_the_harmonic_mean_of_precision_and_recall():
    for qid in ("eval-01", "eval-05"):
        assert "harmonic mean of precision and recall" in BY_ID[qid].answer, qid
    wrong = [q.id for q in BANK if re.search(r"harmonic mean of accuracy", q.answer, re.I)]
    assert not wrong, f"F1 defined from accuracy in {wrong}"


def test_tanh_ranges_over_minus_one_to_one():
    assert "(-1, 1)" in BY_ID["act-01"].answer and "(0, 1)" in BY_ID["act-01"].answer  # tanh and sigmoid
    wrong = [q.id for q in BANK if re.search(r"tanh[^.;]*?(\(0, ?1\)|0\.\.1|0 to 1|\[0, ?1\])", q.answer)]
    assert not wrong, f"tanh given a 0..1 range in {wrong}"


def test_sgd_with_batches_is_called_mini_batch():
    answer = BY_ID["opt-01"].answer
    assert "mini-batch gradient descent" in answer and "batch size 32" in answer


def test_flatten_size_after_two_poolings_of_32_is_8():
    answer = BY_ID["cnn-02"].answer
    assert "8×8" in answer and "2048" in answer and "28×28" not in answer


def test_train_mode_is_set_every_epoch():
    for qid in ("reg-06", "build-02"):
        assert re.search(r"model\.train\(\) at the start of every", BY_ID[qid].answer), qid


def test_step_schedule_never_resets():
    answer = BY_ID["opt-03"].answer
    assert "γ^(epoch // S)" in answer and "never goes back up" in answer


def test_minus_one_to_one_needs_min_max_scaling():
    answer = BY_ID["build-04"].answer
    assert "min-max" in answer.lower() and "neither" in answer


def test_transfer_head_pools_before_the_linear_layer():
    assert "pooling" in BY_ID["tl-03"].answer and "(N, C, H, W)" in BY_ID["tl-03"].answer


def test_checkpoints_load_with_weights_only():
    assert "weights_only=True" in BY_ID["build-03"].answer


# Errors in the course's source material; no answer may repeat them (guards questions not yet written, too).
FORBIDDEN = [
    r"post-training quantization[^.]*requir\w* (re)?training",  # PTQ needs no retraining; QAT trains
    r"ONNX (is|as) an? [^.]*framework",  # ONNX is a model format and operator set
    r"one random sample per step",  # what torch.optim.SGD with batches of 32 does not do
    r"\.set\(\) on a Counter",  # Counters only go up: inc()
    r"to_json",  # nn.Module has no to_json; encrypt the serialized state dict
]


@pytest.mark.parametrize("pattern", FORBIDDEN)
def test_no_answer_repeats_a_source_error(pattern):
    wrong = [q.id for q in BANK if re.search(pattern, q.answer, re.I)]
    assert not wrong, f"{wrong} repeat a known error ({pattern!r})"


# ------------------------------------------------------------------------ validation errors

def _write(tmp_path, name: str, text: str):
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


GOOD = """- id: cnn-91
  topic: cnn
  question: Why?
  answer: Because.
  links: [labkit:labkit.models.SmallCNN]
"""


def test_a_valid_file_loads(tmp_path):
    (q,) = quiz.load_bank(_write(tmp_path, "cnn.yaml", GOOD))
    assert (q.id, q.topic, q.links) == ("cnn-91", "cnn", ("labkit:labkit.models.SmallCNN",))


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("  answer: Because.\n", ""), r"cnn\.yaml: cnn-91: missing field\(s\) \['answer'\]"),
    (GOOD.replace("topic: cnn", "topic: rnn"), r"cnn\.yaml: cnn-91: topic 'rnn' does not match"),
    (GOOD.replace("cnn-91", "CNN 91"), r"cnn\.yaml: CNN 91: an id looks like"),
    (GOOD.replace("labkit:labkit", "http://labkit"), r"cnn\.yaml: cnn-91: links must be"),
    (GOOD.replace("links: [labkit:labkit.models.SmallCNN]", "links: []"), r"cnn-91: links must be"),
    (GOOD + "  extra: 1\n", r"cnn-91: .*unknown field\(s\) \['extra'\]"),
    (GOOD + GOOD, r"cnn\.yaml: duplicate id 'cnn-91'"),
    ("id: cnn-91\n", r"cnn\.yaml: must be a non-empty YAML list"),
    ("- [unclosed\n", r"cnn\.yaml: not valid YAML"),
])
def test_a_broken_file_is_named_with_its_id(tmp_path, text, message):
    with pytest.raises(quiz.BankError, match=message):
        quiz.load_bank(_write(tmp_path, "cnn.yaml", text))


def test_a_duplicate_across_files_names_both(tmp_path):
    _write(tmp_path, "cnn.yaml", GOOD)
    _write(tmp_path, "rnn.yaml", GOOD.replace("topic: cnn", "topic: rnn"))
    with pytest.raises(quiz.BankError, match=r"rnn\.yaml: duplicate id 'cnn-91' \(also in cnn\.yaml\)"):
        quiz.load_bank(tmp_path)


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(quiz.BankError, match="no question files"):
        quiz.load_bank(tmp_path)


@pytest.mark.parametrize("link, message", [
    ("nb:01_cnn_image_classification#99", r"has no heading '## 99"),
    ("nb:99_nothing#1", r"no notebook 99_nothing\.ipynb"),
    ("labkit:labkit.metrics.no_such_metric", r"no attribute 'no_such_metric'"),
    ("labkit:os.path", r"a link is"),
])
def test_a_broken_link_says_why(link, message):
    with pytest.raises(quiz.BankError, match=message):
        quiz.resolve_link(link)


def test_links_describe_their_target():
    assert quiz.resolve_link("nb:01_cnn_image_classification#4").startswith("01_cnn_image_classification §4 · ")
    assert "harmonic mean" in quiz.resolve_link("labkit:labkit.metrics.f1").lower()


# ------------------------------------------------------------------------ the quiz, scripted

def _scripted(*replies: str):
    """An input function that returns replies in turn, then raises EOFError like a closed stdin."""
    it = iter(replies)

    def input_fn(prompt: str) -> str:
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None
    return input_fn


def test_enter_reveals_the_answer_and_its_evidence_then_q_quits():
    out: list[str] = []
    shown = quiz.ask(BANK[:3], _scripted("", "q"), out.append)
    text = "\n".join(out)
    assert shown == 1
    assert BANK[0].question[:40] in text and "Evidence:" in text and BANK[0].links[0] in text
    assert BANK[1].id in text and BANK[2].id not in text


def test_end_of_input_ends_cleanly():
    out: list[str] = []
    assert quiz.ask(BANK[:3], _scripted(), out.append) == 0
    assert "0 of 3 answers shown" in out[-1]


def test_enter_to_the_end_shows_every_answer():
    out: list[str] = []
    assert quiz.ask(BANK[:4], _scripted("", "", "", ""), out.append) == 4


def test_main_filters_by_topic():
    out: list[str] = []
    assert quiz.main(["--topic", "cnn"], _scripted(*[""] * 50), out.append) == 0
    asked = re.findall(r"^\[\d+/\d+\] (\S+)", "\n".join(out), re.M)
    assert asked and all(qid.startswith("cnn-") for qid in asked)
    assert len(asked) == sum(q.topic == "cnn" for q in BANK)


def test_main_lists_topics_and_shows_one_id():
    out: list[str] = []
    assert quiz.main(["--list-topics"], print_fn=out.append) == 0
    assert all(topic in out[0] for topic in FUNDAMENTALS)
    out.clear()
    assert quiz.main(["--id", "eval-05"], print_fn=out.append) == 0
    assert BY_ID["eval-05"].question in " ".join(out[0].split()) and "Evidence:" in out[0]


def test_main_reveal_prints_without_prompting():
    out: list[str] = []
    assert quiz.main(["--topic", "activations", "--reveal"], _scripted(), out.append) == 0
    assert out[0].count("Evidence:") == sum(q.topic == "activations" for q in BANK)


def test_main_rejects_an_unknown_topic(capsys):
    assert quiz.main(["--topic", "astrology"], _scripted(), print) == 1
    assert "unknown topic or id ['astrology']" in capsys.readouterr().err
