"""The command lines: one flag per concept over every ``python -m`` entry point, defaults in ``--help`` that
are the parameter models', and ``--config FILE`` filling the same model the Prefect UI's form fills."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic_core import PydanticUndefined

from flows.cli import COMMANDS, build_params, parser_for


def _field_default(model, path: str):
    """The parameter model's default at a dotted field path (``train.evaluation.k``)."""
    head, *rest = path.split(".")
    value = model.model_fields[head].get_default(call_default_factory=True)
    for name in rest:
        value = value[name] if isinstance(value, dict) else getattr(value, name)
    return value


def _model(flow: str):
    import flows.params

    return getattr(flows.params, COMMANDS[flow].model)


def _entry_point_parsers():
    """Every ``python -m`` entry point's parser: each flow's, the service's and the registry's sub-commands."""
    import argparse

    from serve.__main__ import build_parser as serve_parser
    from serve.registry import build_parser as registry_parser

    parsers = {f"flows.{flow}": parser_for(flow) for flow in COMMANDS}
    parsers["serve"] = serve_parser()
    registry = registry_parser()
    parsers["serve.registry"] = registry
    for action in registry._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.update({f"serve.registry {name}": sub for name, sub in action.choices.items()})
    return parsers


def test_every_entry_point_shows_how_it_is_run_and_each_option_its_default():
    for name, parser in _entry_point_parsers().items():
        assert parser.prog.startswith(f"python -m {name.split()[0]}"), (name, parser.prog)
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flags = action.option_strings
            assert all(flag.startswith("--") for flag in flags), (name, flags)  # no one-letter aliases
            switch = action.nargs == 0
            assert action.help and (switch or "default" in action.help), (name, flags, action.help)


# one flag per concept: the field each shared flag names, whatever the command
CONCEPTS = {
    "--k": "k",
    "--workspace": "workspace",
    "--splits": "split",  # split ids: several to evaluate, one to judge a search
    "--split-seeds": "seeds",
    "--model-seed": "seed",
    "--search-seed": "seed",
    "--data": "data",
    "--runner": "kind",
    "--lightfm-loss": "lightfm_loss",
    "--lightfm-max-epochs": "lightfm_max_epochs",
    "--output": "output",
}


def test_one_flag_per_concept_across_the_flows():
    seen: dict[str, set[str]] = {}
    for flow, command in COMMANDS.items():
        flags = [option.flag for _, option in command.options()]
        assert len(flags) == len(set(flags)), (flow, flags)
        assert "--seed" not in flags and "-k" not in flags  # which seed, which K: always said
        for _, option in command.options():
            leaves = {path.rsplit(".", 1)[-1].removesuffix("s") for path in option.paths}
            seen.setdefault(option.flag, set()).update(leaves)
    for flag, leaves in seen.items():
        assert len(leaves) == 1, (flag, leaves)
    for flag, field in CONCEPTS.items():
        assert seen[flag] == {field.removesuffix("s")}, (flag, seen[flag])
    # the service and the registry name the workspace the same way
    for name, parser in _entry_point_parsers().items():
        options = {flag for action in parser._actions for flag in action.option_strings}
        if name.startswith("serve"):
            assert "--workspace" in options or name == "serve.registry", name


@pytest.mark.parametrize("flow", sorted(COMMANDS))
def test_help_defaults_are_the_parameter_models(flow):
    model = _model(flow)
    for _, option in COMMANDS[flow].options():
        for path in option.paths:
            if "const" in option.kwargs:  # a switch
                continue
            default = _field_default(model, path) if "lm_overrides." not in path else None
            if option.default in (None, (), {}):  # none, empty or required: the help says what happens
                assert default in (None, {}, ()) or default is PydanticUndefined, (flow, option.flag, path, default)
            else:
                shown = tuple(option.default) if isinstance(option.default, list | tuple) else option.default
                value = tuple(default) if isinstance(default, list | tuple) else default
                assert shown == value, (flow, option.flag, path, shown, value)


@pytest.mark.parametrize("flow", sorted(COMMANDS))
def test_every_option_sets_its_field(flow):
    """Each option given on the command line lands in the field its path names, validated by the model."""
    samples = {int: 700, float: 0.25}  # within every bound
    parser = parser_for(flow)
    dicts = {"--lightfm-params": '{"no_components": 8}', "--lm-overrides": '{"max_epochs": 2}'}
    for _, option in COMMANDS[flow].options():
        action = next(a for a in parser._actions if option.flag in a.option_strings)
        if "const" in option.kwargs:
            argv = [option.flag]
        elif action.choices:
            argv = [option.flag, list(action.choices)[-1]]
        elif option.flag in dicts:
            argv = [option.flag, dicts[option.flag]]
        elif option.flag == "--fractions":
            argv = [option.flag, "0.6", "0.2", "0.2"]
        elif option.flag == "--folds":
            argv = [option.flag, "7"]  # K: 2 to 20
        elif option.flag == "--rating-scale":
            argv = [option.flag, "1", "10"]
        elif option.flag == "--map":
            argv = [option.flag, "user_id=a,item_id=b,rating=c"]
        else:
            value = samples.get(option.kwargs.get("type"), "x7")
            argv = [option.flag, str(value)]
        required = {"recommend": "--user", "forget": "--user-id"}.get(flow)  # no default: given with every sample
        given = vars(parser.parse_args(argv + ([required, "u"] if required and option.flag != required else [])))
        params = build_params(COMMANDS[flow], given)
        for path in option.paths:
            value = params
            for name in path.split("."):
                value = value[name] if isinstance(value, dict) else getattr(value, name)
            expected = given[option.dest]
            expected = tuple(expected) if isinstance(expected, list) else expected
            value = tuple(value) if isinstance(value, list | tuple) else value
            if option.flag == "--user":
                expected = tuple(given["user"])
            assert value == expected, (flow, option.flag, path, value, expected)


def test_a_config_file_is_the_ui_form_and_the_command_line_overrides_it(tmp_path):
    from flows.params import FullParams

    yaml_file = tmp_path / "gift-cards.yaml"
    yaml_file.write_text(
        "prepare:\n"
        "  data: ../shared/data/amazon2018-gift-cards\n"
        "  data_card: {max_twin_share: 0.1}\n"
        "  split: {protocols: [random, temporal], seed: 3}   # split.seed is not on the command line: a file sets it\n"
        "train:\n"
        "  train: {models: [bias_als, lightfm_hybrid]}\n"
        "  evaluation: {k: 20, n_boot: 500}\n"
    )
    full = COMMANDS["full"]
    from_file = build_params(full, {}, str(yaml_file))
    assert from_file.prepare.data_card.max_twin_share == 0.1 and from_file.train.evaluation.k == 20
    assert from_file.prepare.split.seed == 3
    assert from_file.train.train.models == ("bias_als", "lightfm_hybrid")
    # options given on the command line override the file, field by field
    given = vars(parser_for("full").parse_args(["--k", "5", "--lm-encoder", "/models/x"]))
    both = build_params(full, given, str(yaml_file))
    assert both.train.evaluation.k == 5 and both.train.evaluation.n_boot == 500
    assert both.train.train.lm_overrides == {"encoder": "/models/x"}
    # the same run from JSON (what the UI's form submits, and what --print-config prints)
    json_file = tmp_path / "run.json"
    json_file.write_text(both.model_dump_json())
    assert (
        build_params(full, {}, str(json_file)) == both == FullParams.model_validate(json.loads(both.model_dump_json()))
    )


def test_config_errors_are_one_line(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("prepare: [1\n")
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"prepare": {"colour": "red"}}')
    a_list = tmp_path / "list.json"
    a_list.write_text("[1, 2]")
    lm_typo = tmp_path / "lm.json"  # a misspelt LM setting stops the command, not the LM's turn after every fit
    lm_typo.write_text('{"train": {"train": {"lm_overrides": {"max_epoch": 3, "batch_size": 1}}}}')
    cases = [
        (tmp_path / "missing.yaml", "does not exist"),
        (bad_yaml, "is not valid YAML"),
        (unknown, "invalid parameters: prepare.colour: Extra inputs are not permitted"),
        (a_list, "must hold a mapping of parameter names"),
        (lm_typo, "max_epoch: not a setting of the LM (models/lm/config.py LMConfig)"),
    ]
    for path, message in cases:
        out = subprocess.run(
            [sys.executable, "-m", "flows.full", "--config", str(path), "--print-config"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_print_config_prints_the_validated_parameters():
    out = subprocess.run(
        [sys.executable, "-m", "flows.study", "--data", "a", "b", "--runner", "threads", "--k", "7", "--print-config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["data"] == ["a", "b"] and printed["runner"]["kind"] == "threads"
    assert printed["experiment"]["train"]["evaluation"]["k"] == 7
    assert printed["experiment"]["train"]["runner"]["kind"] == "sequential"  # each dataset trains its splits in turn
    # not the fields the flow sets itself (the UI's form hides them too)
    assert "workspace" not in printed["experiment"]["train"] and "run_id" not in printed["experiment"]["report"]
    assert not {"data", "name", "workspace"} & set(printed["experiment"]["prepare"])  # the study's, per dataset
    assert "split" in printed["experiment"]["prepare"]


def test_the_shipped_config_files_are_valid_parameters():
    """configs/<flow>-<name>.yaml: each validates against its flow's parameter model."""
    from pathlib import Path

    files = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert files
    for path in files:
        flow = path.name.split("-")[0]
        params = build_params(COMMANDS[flow], {}, str(path))
        assert (
            params.model_dump()
            != type(params).model_validate({} if flow != "recommend" else {"users": ["u"]}).model_dump()
        )


def test_one_k_for_the_evaluation_and_the_data_card():
    """``--k 20`` ranks at 20, and the experiment's parameters hold one ranking cut-off: the evaluation's (the data
    card's gates, the builders, the fusion and the promotion gate are passed it)."""
    from pydantic import BaseModel

    def k_fields(model: BaseModel, prefix: str = "") -> list[str]:
        found = []
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                found += k_fields(value, f"{prefix}{name}.")
            elif name == "k":
                found.append(prefix + name)
        return found

    for flow, where in (("full", "train.evaluation.k"), ("study", "experiment.train.evaluation.k")):
        params = build_params(COMMANDS[flow], vars(parser_for(flow).parse_args(["--k", "20"])))
        assert k_fields(params) == [where]
        experiment = params if flow == "full" else params.experiment
        assert experiment.train.evaluation.k == 20


def test_every_field_is_an_option_unless_kept_off():
    """A field of a command's parameter model is on its command line unless ``FLAGS`` (``split.seed``: the
    seeds are ``--split-seeds``) or the command keeps it off: a setting added to a component's config is an
    option of every command that holds it."""
    from pydantic import BaseModel

    def leaves(model, prefix: str = ""):
        for name, info in model.model_fields.items():
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                yield from leaves(info.annotation, f"{prefix}{name}.")
            else:
                yield prefix + name

    searched_not = "models lightfm_trials lightfm_params lm_profile lm_overrides lm_encoders sequential_protocols "
    searched_not += "sequential_trials lm_sequential_trials overlap"
    kept_off = {
        "prepare": {"split.seed"},
        "full": {"prepare.split.seed"},
        "search": {f"train.{name}" for name in searched_not.split()},  # the search tunes LightFM only
        "study": {"experiment.prepare.split.seed", "experiment.report.output", "experiment.report.dataset"}
        | {f"experiment.train.runner.{name}" for name in ("kind", "workers", "address")},  # the study's runner
    }
    for flow, command in COMMANDS.items():
        offered = {path for _, option in command.options() for path in option.paths}
        assert set(leaves(command.model_class())) - offered == kept_off.get(flow, set()), flow
    # --lm-encoder: a key of the LM's settings, an option of its own
    encoder = {"train": "train", "full": "train.train", "study": "experiment.train.train"}
    for flow, mount in encoder.items():
        assert f"{mount}.lm_overrides.encoder" in {p for _, o in COMMANDS[flow].options() for p in o.paths}, flow
