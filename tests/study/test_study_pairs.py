"""Study folder discovery: pairing by name, unmatched names skipped with a warning, clear errors."""

import logging

import pytest

from lit_colorization.study.pairs import ImagePair, find_pairs


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_pairs_match_by_stem_across_png_and_jpg(tmp_path):
    _touch(tmp_path / "real", "a.png", "b.jpg", "notes.txt")
    _touch(tmp_path / "colorized", "a.png", "b.png")
    pairs = find_pairs(tmp_path)
    assert pairs == {
        "a": ImagePair(tmp_path / "real" / "a.png", tmp_path / "colorized" / "a.png"),
        "b": ImagePair(tmp_path / "real" / "b.jpg", tmp_path / "colorized" / "b.png"),
    }


def test_unmatched_names_are_skipped_with_a_count(tmp_path, caplog):
    _touch(tmp_path / "real", "a.png", "only_real.png")
    _touch(tmp_path / "colorized", "a.jpg", "only_fake_1.png", "only_fake_2.png")
    with caplog.at_level(logging.WARNING):
        pairs = find_pairs(tmp_path)
    assert list(pairs) == ["a"]
    assert "skipping 3 image(s)" in caplog.text
    assert "only_real" in caplog.text


def test_missing_folders_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_pairs(tmp_path / "nowhere")
    _touch(tmp_path / "real", "a.png")
    with pytest.raises(FileNotFoundError, match="colorized"):
        find_pairs(tmp_path)


def test_no_common_name_is_an_error(tmp_path):
    _touch(tmp_path / "real", "a.png")
    _touch(tmp_path / "colorized", "b.png")
    with pytest.raises(ValueError, match="no image pairs"):
        find_pairs(tmp_path)


def test_two_files_with_one_stem_are_ambiguous(tmp_path):
    _touch(tmp_path / "real", "a.png", "a.jpg")
    _touch(tmp_path / "colorized", "a.png")
    with pytest.raises(ValueError, match="two images named 'a'"):
        find_pairs(tmp_path)
