"""Every Makefile variable that ``make help`` documents for a command reaches that command's config key or flag:
``make -n`` prints the command line each variable produces."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest

from tests.paths import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

# What each documented variable must put on its command's line; {v} is the value given. Arguments are compared as
# a run of shell words, so "data.source=folder data.root={v}" must appear together, in that order.
PRETRAIN = {
    "PRESET": "--preset {v}",
    "DATA": "data.source=folder data.root={v}",
    "MODEL": "model.name={v}",
    "RUN": "run={v}",
    "GPUS": "trainer.devices={v}",
    "NODES": "trainer.num_nodes={v}",
    "BATCH": "data.batch_size={v}",
    "LR_SCALING": "optim.lr_scaling={v}",
    "MAX_STEPS": "trainer.max_steps={v}",
    "LOGGER": "logger.kind={v}",
    "RESUME": "resume={v}",
    "INDEX_CACHE": "data.index_cache={v}",
    "SHARDS": "data.source=shards data.root={v}",
    "ARGS": "{v}",
}
VOC = {
    "CKPT": "ckpt={v}",
    "DATA": "data.root={v}",
    "MAX_STEPS": "trainer.max_steps={v}",
    "MAX_EPOCHS": "trainer.max_epochs={v} trainer.max_steps=-1",
    "GPUS": "trainer.devices={v}",
    "LOGGER": "logger.kind={v}",
    "RUN": "run={v}",
    "RESUME": "resume={v}",
    "ARGS": "{v}",
}
EXPECTED = {
    "pretrain": PRETRAIN,
    "shards": {
        "DATA": "--data {v}",
        "OUT": "--out {v}",
        "VAL_IMAGES": "--val-images {v}",
        "CHUNK_BYTES": "--chunk-bytes {v}",
        "ARGS": "{v}",
    },
    "priors": {
        "DATA": "data.source=folder data.root={v}",
        "PRESET": "--preset {v}",
        "RUN": "run={v}",
        "OUT": "--out {v}",
        "ARGS": "{v}",
    },
    "colorize": {
        "CKPT": "--ckpt {v}",
        "INPUT": "{v}",
        "INPUTS_FROM": "--inputs-from {v}",
        "OUT": "--out {v}",
        "TEMPERATURE": "--temperature {v}",
        "WEIGHTS_FORMAT": "--weights-format {v}",
    },
    "linear-probe": {
        "CKPT": "ckpt={v}",
        "LAYER": "layer={v}",
        "DATA": "data.source=folder data.root={v}",
        "PROTOCOL": "protocol={v}",
        "PROBE_PRESET": "--preset {v}",
        "GPUS": "trainer.devices={v}",
        "MAX_EPOCHS": "schedule.unit=epoch schedule.length={v}",
        "LOGGER": "logger.kind={v}",
        "RUN": "run={v}",
        "RESUME": "resume={v}",
        "ARGS": "{v}",
    },
    "reproduce": {
        "RUN": "run={v}",
        "DATA": "data={v}",
        "VOC": "voc={v}",
        "PLACES": "places={v}",
        "MODEL": "model={v}",
        "GPUS": "gpus={v}",
        "NODES": "nodes={v}",
        "SCALE": "scale={v}",
        "PLAN": "plan=true",
        "LOGGER": "logger={v}",
        "ARGS": "{v}",
    },
    "bench": {"ARGS": "{v}"},
    "bench-index": {"ARGS": "{v}"},
    "dashboard": {"PROJECT": "--project {v}", "ENTITY": "--entity {v}", "MODELS": "--models {v}"},
    "voc-cls": {**VOC, "TRAIN_FROM": "train_from={v}", "PROTOCOL": "protocol={v}"},
    "voc-det": {**VOC, "PROTOCOL": "protocol={v}"},
    "voc-seg": {
        **VOC,
        "TRAIN_FROM": "train_from={v}",
        "PROTOCOL": "protocol={v}",
        "SBD": "data.sbd_root={v}",
    },
    "eval-color": {
        "CKPT": "--ckpt {v}",
        "DATA": "--data {v}",
        "TEMPERATURES": "--temperatures {v}",
        "CLASSIFIER": "--classifier-weights {v}",
        "LOGGER": "logger.kind={v}",
        "ARGS": "{v}",
    },
    "turing-test": {
        "STUDY": "--study {v}",
        "DB": "--db {v}",
        "TRIALS": "--trials {v}",
        "SHOW_MS": "--show-ms {v}",
        "PORT": "--port {v}",
    },
    "turing-report": {"STUDY": "--db {v}/answers.sqlite", "DB": "--db {v}", "OUT": "--csv {v}"},
}
# Variables a command cannot start without; given (as "given") whenever another variable is checked.
REQUIRED = {"shards": {"DATA": "given", "OUT": "given"}, "turing-test": {"STUDY": "given"}}
# Variables whose value a recipe reads as one thing: an override, a number.
VALUE = {"ARGS": "extra.key=given"}


def makefile_variables() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Z][A-Z_]*) \?=", text, flags=re.MULTILINE))


def documented() -> dict[str, list[str]]:
    """Target -> the Makefile variables its ``make help`` line names."""
    help_text = subprocess.run(
        ["make", "-s", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    variables = makefile_variables()
    found = {}
    for line in help_text.splitlines():
        target, _, description = line.strip().removeprefix("make ").partition(" ")
        # A parenthesis that points at another command ("instead of DATA: make shards' OUT") names its variables.
        description = re.sub(r"\([^)]*\bmake [^)]*\)", "", description)
        named = [word for word in re.findall(r"\b[A-Z][A-Z_]*\b", description) if word in variables]
        if named:
            found[target] = list(dict.fromkeys(named))
    return found


def printed_command(target: str, assignments: dict[str, str]) -> list[str]:
    """The shell words of ``target``'s command line as ``make -n`` prints it (nothing runs)."""
    result = subprocess.run(
        [
            "make",
            "-n",
            "--no-print-directory",
            target,
            *(f"{name}={value}" for name, value in assignments.items()),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    joined = result.stdout.replace("\\\n", " ")
    [command] = [line for line in joined.splitlines() if "bin/python" in line][-1:]  # after setup's lines
    return shlex.split(command)


def contains_run(words: list[str], run: list[str]) -> bool:
    return any(words[start : start + len(run)] == run for start in range(len(words) - len(run) + 1))


def test_every_command_with_variables_in_make_help_is_covered_here():
    assert {target: sorted(names) for target, names in documented().items()} == {
        target: sorted(expected) for target, expected in EXPECTED.items()
    }


@pytest.mark.parametrize("target", sorted(EXPECTED))
def test_each_documented_variable_reaches_its_key(target):
    for name, template in EXPECTED[target].items():
        value = VALUE.get(name, f"{name.lower()}-value")
        assignments = {**REQUIRED.get(target, {}), name: value}
        words = printed_command(target, assignments)
        expected = shlex.split(template.format(v=value))
        assert contains_run(words, expected), f"make {target} {name}={value}: {expected} not in {words}"
