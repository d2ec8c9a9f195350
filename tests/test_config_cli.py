"""Dataclass configs on the command line (hi4dfix.config_cli), as the train and pretrain entry points use them."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field

import pytest

from hi4dfix.config_cli import config_from_argv, dataclass_parser, option_help, parse_bool
from hi4dfix.difix.pretrain import PretrainConfig
from hi4dfix.difix.train_config import TrainConfig
from hi4dfix.logs import log_to_stderr


@dataclass
class Example:
    out: str = field(metadata=option_help("where to write"))
    steps: int = field(default=3, metadata=option_help("how many"))
    crop: int | None = field(default=None, metadata=option_help("optional size"))
    rate: float = 0.5
    flag: bool = True


def test_fields_become_typed_options_with_defaults_and_help():
    parser = dataclass_parser(Example, "prog", "an example")
    cfg = config_from_argv(Example, ["--out", "x", "--crop", "32", "--rate", "1e-3", "--flag", "no"], "prog", "")
    assert cfg == Example(out="x", steps=3, crop=32, rate=1e-3, flag=False)
    text = parser.format_help()
    assert "where to write" in text and "how many (default: 3)" in text and "BOOL" in text
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --out has no default: required


def test_parse_bool():
    assert parse_bool("TRUE") and parse_bool("on") and not parse_bool("0")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a boolean"):
        parse_bool("maybe")


def test_train_and_pretrain_share_the_parser():
    pretrain = config_from_argv(PretrainConfig, ["--output", "b.pkl", "--work-dir", "w", "--vae-crop", "32"], "p", "")
    assert pretrain.vae_crop == 32  # an int, as PretrainConfig says (the old parser of pretrain gave "32")
    train = config_from_argv(
        TrainConfig, ["--triplets", "t.json", "--output", "m.pkl", "--output-dir", "w", "--use-ref", "false"], "t", ""
    )
    assert train.use_ref is False and train.long_side is None


def test_log_to_stderr_once_and_not_to_the_root(capfd):
    logger = logging.getLogger("hi4dfix.test_config_cli")
    log_to_stderr(logger)
    log_to_stderr(logger, logging.WARNING)  # a second call sets the level only
    assert len(logger.handlers) == 1 and not logger.propagate
    logger.info("hidden")
    logger.warning("shown")
    err = capfd.readouterr().err
    assert "hi4dfix.test_config_cli: shown" in err and "hidden" not in err
