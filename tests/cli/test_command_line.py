"""Commands that explain themselves: fast --help, --print-config, --config layering, completion, Makefile typos."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lit_colorization.cli.pretrain import main as pretrain_main

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**ENV, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "module",
    ["lit_colorization.cli.pretrain", "transfer.cli.probe", "transfer.cli.voc_cls", "transfer.cli.voc_seg"],
)
def test_help_lists_presets_and_config_groups_without_importing_torch(module):
    result = run_python(
        f"import sys\nfrom {module} import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
        "    print('torch imported:', 'torch' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("torch imported: False")
    assert "presets (configs/presets/" in result.stdout and "config groups" in result.stdout
    groups = result.stdout.split("config groups (override any key as group.key=value):\n")[1].splitlines()
    logger = [line for line in groups if line.strip().startswith("logger ")]
    assert logger and logger[0].split(None, 1)[1].startswith("Where metrics go")


def test_pretrain_help_names_every_preset_and_group():
    result = run_python("from lit_colorization.cli.pretrain import main\nmain(['--help'])")
    for name in ("alexnet_imagenet", "eccv16_imagenet", "resnet50_imagenet", "sample"):
        assert name in result.stdout
    for group in ("model", "data", "targets", "optim", "trainer", "logger", "online_eval"):
        assert f"\n  {group} " in result.stdout


def test_print_config_prints_the_resolved_config_and_the_scale_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    pretrain_main(["--print-config", "run=checked", "data.source=synthetic"])
    out = capsys.readouterr().out
    assert "run: checked\n" in out and "  source: synthetic\n" in out
    assert out.rstrip().splitlines()[-1].startswith("# scale: global batch 16 = 1 device x 16 | lr 1e-3")
    assert list(tmp_path.iterdir()) == []


def test_config_file_layers_after_the_preset_and_before_the_overrides(tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text("trainer:\n  max_steps: 7\ndata:\n  source: synthetic\n  batch_size: 8\n")
    monkeypatch.chdir(tmp_path)
    pretrain_main(["--preset", "sample", "--config", str(mine), "data.batch_size=4", "--print-config"])
    out = capsys.readouterr().out
    assert "  max_steps: 7\n" in out and "  batch_size: 4\n" in out and "  source: synthetic\n" in out


def test_a_bad_config_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text("trainer:\n  max_step: 7\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        pretrain_main(["--config", str(mine), "--print-config"])
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(error) == 1
    assert error[0].startswith(f"error: {mine}: unknown config key 'trainer.max_step'")


def test_tab_completion_offers_flags_and_presets(tmp_path):
    pytest.importorskip("argcomplete", reason="the completion extra (make setup installs it)")
    answers = tmp_path / "answers.txt"
    line = "python -m lit_colorization.cli.pretrain --preset e"
    result = subprocess.run(
        [sys.executable, "-m", "lit_colorization.cli.pretrain"],
        cwd=ROOT,
        env={
            **ENV,
            "_ARGCOMPLETE": "3",  # python -m <module>: the words before the command's own
            "_ARGCOMPLETE_STDOUT_FILENAME": str(answers),
            "_ARGCOMPLETE_IFS": " ",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert answers.read_text().split() == ["eccv16_imagenet"]
    # The shell's global hook completes `python -m <module>` only for modules carrying argcomplete's marker.
    for module in ("lit_colorization.cli.pretrain", "transfer.cli.probe", "transfer.cli.voc_det"):
        check = subprocess.run(
            [sys.executable, "-m", "argcomplete._check_module", module],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
        )
        assert check.returncode == 0, module


def test_the_makefile_refuses_an_unknown_variable_with_the_known_ones():
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "pretrain", "GPU=8", "LAYERS=conv3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "unknown variable GPU (did you mean GPUS" in result.stderr
    assert "unknown variable LAYERS (did you mean LAYER" in result.stderr
    assert "Known: ARGS BATCH" in result.stderr
    known = subprocess.run(
        [
            "make",
            "-n",
            "--no-print-directory",
            "pretrain",
            "GPUS=8",
            f"VENV={Path(sys.executable).parent.parent}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert known.returncode == 0 and "trainer.devices=8" in known.stdout
