"""Every `labkit` subcommand is wired: its help prints, and a bad invocation fails with a message."""
import pytest

from labkit import cli

COMMANDS = [["lab"], ["data"], ["course"], ["strip"], ["grade"], ["handout"], ["quiz"], ["env"], ["bench", "models"],
            ["bench", "serving"], ["serve"], ["loadtest"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_help_prints(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    assert "usage: labkit" in capsys.readouterr().out


def test_unknown_command_fails(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
