"""The ``hi4dfix`` command (install-profile) and the multi-GPU launch command of DiFix tuning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hi4dfix import cli
from hi4dfix.difix import launch

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm"


@pytest.fixture
def xdg(tmp_path, monkeypatch) -> Path:
    """A private $XDG_CONFIG_HOME, so no test touches the user's real Snakemake profiles."""
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


# ---- install-profile ---------------------------------------------------------------------------


def test_profiles_dir_follows_xdg_config_home(xdg):
    assert cli.snakemake_profiles_dir() == xdg / "snakemake"


def test_profiles_dir_defaults_to_dot_config(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.snakemake_profiles_dir() == tmp_path / ".config" / "snakemake"


def test_install_links_the_repository_profile(xdg, capsys):
    assert cli.main(["install-profile"]) == 0
    target = xdg / "snakemake" / "slurm"
    assert target.is_symlink() and target.resolve() == SLURM_PROFILE.resolve()
    assert (target / "config.yaml").read_text() == (SLURM_PROFILE / "config.yaml").read_text()
    assert "linked" in capsys.readouterr().out


def test_install_twice_is_a_no_op(xdg, capsys):
    assert cli.main(["install-profile"]) == 0
    assert cli.main(["install-profile"]) == 0
    assert "already linked" in capsys.readouterr().out
    assert sorted(p.name for p in (xdg / "snakemake").iterdir()) == ["slurm"]


def test_refuses_to_replace_a_different_profile_without_force(xdg, capsys):
    existing = xdg / "snakemake" / "slurm"
    existing.mkdir(parents=True)
    (existing / "config.yaml").write_text("executor: slurm\njobs: 3\n")
    assert cli.main(["install-profile"]) == 1
    err = capsys.readouterr().err
    assert str(existing) in err and "--force" in err
    assert not existing.is_symlink() and (existing / "config.yaml").read_text() == "executor: slurm\njobs: 3\n"


def test_refuses_to_replace_a_link_elsewhere_without_force(xdg, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("executor: slurm\n")
    link = xdg / "snakemake" / "slurm"
    link.parent.mkdir(parents=True)
    link.symlink_to(other)
    with pytest.raises(cli.CliError, match="already exists"):
        cli.install_profile(cli.InstallProfileConfig())
    assert link.resolve() == other.resolve()


def test_force_moves_the_old_profile_aside(xdg):
    existing = xdg / "snakemake" / "slurm"
    existing.mkdir(parents=True)
    (existing / "config.yaml").write_text("jobs: 3\n")
    result = cli.install_profile(cli.InstallProfileConfig(force=True))
    assert result.changed and result.target.resolve() == SLURM_PROFILE.resolve()
    assert result.moved_aside is not None and (result.moved_aside / "config.yaml").read_text() == "jobs: 3\n"


def test_other_source_name_and_folder(tmp_path):
    source = tmp_path / "site-profile"
    source.mkdir()
    (source / "config.yaml").write_text("executor: slurm\n")
    result = cli.install_profile(cli.InstallProfileConfig(source=source, name="mysite", profiles_dir=tmp_path / "p"))
    assert result.target == tmp_path / "p" / "mysite" and result.target.resolve() == source.resolve()


@pytest.mark.parametrize("name", ["", "a/b", ".."])
def test_bad_name_is_refused(tmp_path, name):
    with pytest.raises(cli.CliError, match="invalid profile name"):
        cli.install_profile(cli.InstallProfileConfig(name=name, profiles_dir=tmp_path))


def test_source_without_config_is_refused(tmp_path):
    with pytest.raises(cli.CliError, match="has no config.yaml"):
        cli.install_profile(cli.InstallProfileConfig(source=tmp_path, profiles_dir=tmp_path / "p"))


def test_snakemake_finds_the_installed_profile_by_name_from_the_repository_root(xdg, tmp_path):
    """`snakemake --profile slurm` resolves the link and reads the profile's settings."""
    cli.install_profile(cli.InstallProfileConfig())
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-d", str(tmp_path / "work"),
         "--configfile", str(REPO / "config" / "config.yaml"), "-n", "results/scenes/hi4d_pair00_dance"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Using profile slurm" in result.stderr
    # the profile's default resources reached the jobs
    assert "slurm_partition=" in result.stdout and "cpus_per_task=1" in result.stdout


def test_unknown_subcommand_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2


def test_console_script_is_declared():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["hi4dfix"] == "hi4dfix.cli:main"


# ---- launch: one process per granted and visible GPU -------------------------------------------


@pytest.mark.parametrize(
    "granted, visible, expected",
    [(0, 0, 1), (0, 2, 1), (1, 0, 1), (2, 0, 1), (1, 1, 1), (1, 2, 1), (2, 1, 1), (2, 2, 2), (2, 4, 2)],
)
def test_num_processes(granted, visible, expected):
    assert launch.num_processes(granted, visible) == expected


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_launch_command_without_gpus_runs_one_cpu_process():
    for granted, visible in [(0, 0), (0, 2), (2, 0)]:
        command = launch.launch_command(granted, visible, ["--steps", "4"])
        assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
        assert _option(command, "--num_processes") == "1"
        assert "--cpu" in command and "--multi_gpu" not in command
        assert command[-4:] == ["-m", "hi4dfix.difix.train", "--steps", "4"]


def test_launch_command_with_one_gpu_is_a_single_gpu_process():
    command = launch.launch_command(1, 1, ["--steps", "4"])
    assert _option(command, "--num_processes") == "1"
    assert "--cpu" not in command and "--multi_gpu" not in command


def test_launch_command_with_two_gpus_is_multi_gpu():
    command = launch.launch_command(2, 2, ["--steps", "4"])
    assert _option(command, "--num_processes") == "2"
    assert "--multi_gpu" in command and "--cpu" not in command
    assert _option(command, "--num_machines") == "1"


def test_launch_main_passes_the_training_options_after_the_separator(monkeypatch):
    calls = []
    monkeypatch.setattr(launch, "visible_gpus", lambda: 2)
    monkeypatch.setattr(launch.os, "execv", lambda path, command: calls.append((path, command)))
    launch.main(["--gpus", "2", "--", "--triplets", "t.json", "--steps", "4"])
    (path, command), = calls
    assert path == sys.executable == command[0]
    assert _option(command, "--num_processes") == "2" and "--multi_gpu" in command
    assert command[-6:] == ["-m", "hi4dfix.difix.train", "--triplets", "t.json", "--steps", "4"]
