"""The command line: every command has help, and bad input is one sentence and exit 1."""

from __future__ import annotations

import pytest

from gridlake.cli import COMMAND_MODULES, build_parser, main


def test_help_lists_every_command_with_a_description(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    names = [action for action in build_parser()._subparsers._group_actions[0].choices]
    assert set(names) >= {"generate", "stream", "backfill", "rollup", "reprocess", "demo"}
    for name in names:
        assert name in out


@pytest.mark.parametrize("name", [m.replace("_", "-") for m in COMMAND_MODULES])
def test_each_command_has_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert "usage: gridlake" in capsys.readouterr().out


def _one_sentence_error(capsys, argv) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_source_scheme(capsys, tmp_path):
    err = _one_sentence_error(capsys, ["stream", "--source", "ftp://x", "--lake", str(tmp_path)])
    assert "unknown source 'ftp://x'" in err


def test_missing_source_folder(capsys, tmp_path):
    err = _one_sentence_error(
        capsys, ["stream", "--source", f"files:{tmp_path}/nope", "--lake", str(tmp_path / "l")])
    assert "does not exist" in err


def test_bad_kafka_address(capsys, tmp_path):
    err = _one_sentence_error(
        capsys, ["stream", "--source", "kafka:localhost/topic", "--lake", str(tmp_path)])
    assert "kafka:" in err


def test_folder_that_is_not_a_lake(spark, capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("my files")
    source = tmp_path / "landing"
    source.mkdir()
    err = _one_sentence_error(
        capsys, ["stream", "--source", f"files:{source}", "--lake", str(tmp_path)])
    assert "is not empty and is not a gridlake lake" in err


def test_bad_date_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--out", "x", "--start", "2026-13-40"])
    assert exit_.value.code == 2
    assert "'2026-13-40' is not a date; expected YYYY-MM-DD" in capsys.readouterr().err


@pytest.mark.parametrize(("trigger", "complaint"), [
    ("0", "must be greater than 0"), ("-1", "must be greater than 0"),
    ("nan", "is not a finite number"), ("inf", "is not a finite number")])
def test_a_trigger_interval_must_be_a_finite_positive_number(capsys, trigger, complaint):
    with pytest.raises(SystemExit) as exit_:
        main(["stream", "--source", "files:x", "--lake", "l", "--trigger", trigger])
    assert exit_.value.code == 2
    assert f"{trigger!r} {complaint}" in capsys.readouterr().err


def test_a_path_the_system_refuses_is_one_sentence(capsys, tmp_path):
    taken = tmp_path / "a-file"
    taken.write_text("x")
    err = _one_sentence_error(capsys, ["generate", "--out", str(taken / "sub"), "--devices", "1"])
    assert str(taken / "sub") in err and "Not a directory" in err


@pytest.mark.parametrize("argv", [
    ["generate", "--out", "{tmp}/fleet", "--start", "9999-12-31", "--days", "2"],
    ["lineage", "--lake", "{tmp}/lake", "--device", "D1", "--ts", "0001-01-01T00:00:00+01:00"],
    ["compact", "--lake", "{tmp}/lake", "--days", "1000000"],
])
def test_a_date_past_the_calendar_is_one_sentence_and_writes_nothing(capsys, tmp_path, argv):
    err = _one_sentence_error(capsys, [a.format(tmp=tmp_path) for a in argv])
    assert err.startswith(f"gridlake {argv[0]}: ") and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_generate_can_be_run_again(tmp_path, monkeypatch, capsys):
    import gridlake.generator

    def interrupt(*_):
        raise KeyboardInterrupt

    argv = ["generate", "--out", str(tmp_path / "fleet"), "--devices", "4", "--late-devices", "1"]
    with monkeypatch.context() as patch:
        patch.setattr(gridlake.generator, "_write_late", interrupt)
        assert main(argv) == 130
    assert '"complete": false' in (tmp_path / "fleet" / "manifest.json").read_text()
    assert main(argv) == 0
    capsys.readouterr()
    manifest = (tmp_path / "fleet" / "manifest.json").read_text()
    assert '"complete": true' in manifest and '"readings"' in manifest


def test_the_lake_comes_from_gridlake_lake_when_lake_is_not_given(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("GRIDLAKE_LAKE", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["rollup", "--from", "2026-11-02", "--to", "2026-11-01"])
    assert exit_.value.code == 2
    assert "the following arguments are required: --lake" in capsys.readouterr().err
    # Named by the environment, --lake may be left out: the command goes on to check the range.
    monkeypatch.setenv("GRIDLAKE_LAKE", str(tmp_path))
    err = _one_sentence_error(capsys, ["rollup", "--from", "2026-11-02", "--to", "2026-11-01"])
    assert "2026-11-02" in err and "--lake" not in err


def test_an_empty_lake_is_refused_rather_than_replaced_by_the_default(capsys, monkeypatch,
                                                                       tmp_path):
    # `--lake "$LAKE"` with LAKE unset must not fall back to $GRIDLAKE_LAKE or ./lake.
    monkeypatch.setenv("GRIDLAKE_LAKE", str(tmp_path))
    for argv in (["forget", "--lake", "", "--device", "D00001"],
                 ["quarantine", "--lake", " ", "list"], ["quarantine", "list", "--lake", ""]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert "the lake is empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["quarantine", "list"], ["quarantine", "replay"],
                                     ["sites", "load", "sites.csv"]])
def test_lake_may_follow_the_action(capsys, monkeypatch, tmp_path, command):
    monkeypatch.delenv("GRIDLAKE_LAKE", raising=False)
    lake = str(tmp_path / "given")
    args = build_parser().parse_args([*command, "--lake", lake])
    assert args.lake == lake
    assert build_parser().parse_args([command[0], "--lake", lake, *command[1:]]).lake == lake
    # Given nowhere (and no $GRIDLAKE_LAKE): a usage error naming --lake, before any work.
    with pytest.raises(SystemExit) as exit_:
        main(command)
    assert exit_.value.code == 2
    assert f"{command[0]}: --lake is required" in capsys.readouterr().err


def test_a_site_registry_that_is_not_utf8_or_lists_no_site_is_refused(cli, tmp_path):
    lake = tmp_path / "lake"
    latin1 = tmp_path / "sites-latin1.csv"
    latin1.write_bytes("site_id,timezone\nS0001,Europe/Zürich\n".encode("latin-1"))
    header_only = tmp_path / "sites-empty.csv"
    header_only.write_text("site_id,timezone\n", encoding="utf-8")
    status, _, err = cli("sites", "load", latin1, "--lake", lake)
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert "is not UTF-8 text" in err and "Traceback" not in err
    status, _, err = cli("sites", "--lake", lake, "load", header_only)
    assert status == 1 and "lists no site" in err and len(err.strip().splitlines()) == 1
