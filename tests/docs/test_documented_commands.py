"""Every ``make`` and ``python -m`` command line the README and the guides show parses and resolves.

A command that loads a config runs with ``--print-config`` (the config is loaded and checked, nothing is
written); the others answer ``--help``. ``make`` lines go through ``make -n`` so the Makefile's own mapping of
variables to overrides is what is checked. Paths under /data/ are made as empty image folders;
``my.yaml`` is a user config setting ``trainer.max_steps``.
"""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", "docs/pretraining.md", "docs/data.md", "docs/reliability.md", "docs/transfer.md"]
# Commands that load a config and so take --print-config.
CONFIG_COMMANDS = {
    "lit_colorization.cli.pretrain",
    "lit_colorization.cli.priors",
    "lit_colorization.cli.eval_color",
    "transfer.cli.probe",
    "transfer.cli.voc_cls",
    "transfer.cli.voc_det",
    "transfer.cli.voc_seg",
}


def documented_commands() -> list[tuple[str, str]]:
    """(file, command line) of each make / python -m line inside a bash block of the docs."""
    found = []
    for name in DOCS:
        in_block = False
        for line in (ROOT / name).read_text().splitlines():
            if line.startswith("```"):
                in_block = line.strip() == "```bash"
                continue
            command = line.split("  #")[0].strip()
            if in_block and re.match(r"^(make [a-z]|python -m )", command) and not command.endswith("\\"):
                found.append((name, command))
    return found


def module_argv(command: str, data_root: Path) -> list[str]:
    """``python -m`` argv of a documented line (a make line as ``make -n`` expands it)."""
    command = command.replace("/data/", f"{data_root}/")
    if command.startswith("make "):
        words = shlex.split(command)
        expanded = subprocess.run(
            ["make", "-n", "--no-print-directory", *words[1:], f"VENV={Path(sys.executable).parent.parent}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.replace("\\\n", " ")  # a recipe's continued lines, joined
        # The command's own line: not the set-up recipe's (pip) that make -n shows when the venv is out of date.
        command = next(
            (line for line in expanded.splitlines() if re.search(r" -m (lit_colorization|transfer)\.", line)),
            "python -m none",
        )
    words = shlex.split(command)
    return words[words.index("-m") + 1 :]


@pytest.mark.parametrize(("doc", "command"), documented_commands())
def test_documented_command_parses_and_resolves(doc, command, tmp_path, monkeypatch, capsys):
    for split in ("train", "val"):
        (tmp_path / "data" / "imagenet" / split).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "places205" / split).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "shards" / split).mkdir(parents=True, exist_ok=True)
    (tmp_path / "my.yaml").write_text("trainer:\n  max_steps: 1234\n")  # the README's --config example
    monkeypatch.chdir(tmp_path)
    module, *argv = module_argv(command, tmp_path / "data")
    if not module.startswith(("lit_colorization.", "transfer.")):
        return  # make test, make lint: make -n expanded them
    main = importlib.import_module(module).main
    flag = "--print-config" if module in CONFIG_COMMANDS else "--help"
    try:
        main([*argv, flag])
    except SystemExit as exit:
        assert exit.code == 0, f"{doc}: `{command}` failed: {capsys.readouterr().err.strip()}"
    out = capsys.readouterr().out
    assert out.strip(), f"{doc}: `{command}` printed nothing"
    if flag == "--print-config":
        assert sorted(path.name for path in tmp_path.iterdir()) == ["data", "my.yaml"], (
            "--print-config wrote files"
        )
        assert "max_steps: 1234" in out or "my.yaml" not in command


def test_the_docs_show_commands():
    assert len(documented_commands()) >= 10
