"""shared.config: inheritance, overrides, path rules, errors naming file and key."""
import json

import pytest
import yaml

from shared.cli import parser
from shared.config import Config, ConfigError, load_config, parse_override
from shared.run import Run
from shared.schema import Any_, Choice, Custom, Int, List, Section, Str, validate
from shared.training import trainer_config


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data) if path.suffix != ".json" else json.dumps(data))
    return path


def test_inheritance_paths_and_placeholders(tmp_path):
    write(tmp_path / "presets/paper.yaml",
          {"data": {"train_path": "../data/train.h5", "n": 100},
           "training": {"epochs": 300, "batch_size": 128, "learning_rate": 1.6e-3}})
    cpu = write(tmp_path / "cpu/cpu.yaml",
                {"base": "../presets/paper.yaml",
                 "training": {"epochs": 3},
                 "data": {"cache_dir": "cache", "name": "relative/not/a/path"},
                 "output": {"samples_file": "{out}/samples.h5"}})
    cfg = load_config(cpu, out=tmp_path / "run")
    assert isinstance(cfg, Config) and cfg.source == str(cpu)
    # merged: child overrides one key, keeps the base's others
    assert cfg["training"] == {"epochs": 3, "batch_size": 128, "learning_rate": 1.6e-3}
    # paths relative to the file that wrote them
    assert cfg["data"]["train_path"] == str(tmp_path / "data/train.h5")
    assert cfg["data"]["cache_dir"] == str(tmp_path / "cpu/cache")
    assert cfg["data"]["name"] == "relative/not/a/path"  # not a path key: untouched
    assert cfg["output"]["samples_file"] == str(tmp_path / "run/samples.h5")
    assert "base" not in cfg


def test_overrides_parse_yaml_scalars(tmp_path, monkeypatch):
    cfg_file = write(tmp_path / "c.json", {"training": {"epochs": 5}, "data": {"n": 1}})
    monkeypatch.chdir(tmp_path / ".")
    cfg = load_config(cfg_file, ["training.epochs=7", "training.learning_rate=1e-3",
                                 "training.jit_compile=true", "training.clip_norm=null",
                                 "model.layers=[1, 2]", "model.name=set", "data.test_path=x.h5"])
    t = cfg["training"]
    assert t["epochs"] == 7 and t["learning_rate"] == pytest.approx(1e-3)
    assert t["jit_compile"] is True and t["clip_norm"] is None
    assert cfg["model"] == {"layers": [1, 2], "name": "set"}
    assert cfg["data"]["test_path"] == str(tmp_path / "x.h5")  # --set paths: relative to cwd
    assert parse_override("a.b=hello world") == ("a.b", "hello world")


def test_exponent_floats_in_files(tmp_path):
    # PyYAML alone reads 1e-3 as a string; configs must get floats
    (tmp_path / "c.yaml").write_text("training: {learning_rate: 1e-3, min_learning_rate: 5E-6}\n"
                                     "tag: '1e-3'\n")
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg["training"] == {"learning_rate": 1e-3, "min_learning_rate": 5e-6}
    assert cfg["tag"] == "1e-3"


@pytest.mark.parametrize("content, overrides, key, fragment", [
    ("training: [1, 2", [], None, "cannot parse"),
    ("- 1\n- 2\n", [], None, "must be a mapping"),
    ("base: missing.yaml\n", [], "base", "not found"),
    ("training: {epochs: 3}\n", ["training.epochs.x=1"], "training.epochs", "cannot set"),
    ("training: {epochs: 3}\n", ["noequals"], "noequals", "key.sub=value"),
    ("out_dir: '{out}/x'\n", [], "out_dir", "no --out"),
])
def test_errors_name_file_and_key(tmp_path, content, overrides, key, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    assert str(path) in str(err.value) and fragment in str(err.value)
    if key:
        assert f"'{key}'" in str(err.value)


def test_inheritance_cycle_and_missing_file(tmp_path):
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"inherit": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_required_key_and_trainer_validation(tmp_path):
    path = write(tmp_path / "t.yaml", {"training": {"epochs": 0}})
    cfg = load_config(path)
    with pytest.raises(ConfigError, match=r"t\.yaml: key 'model.width'"):
        cfg.get_key("model.width")
    with pytest.raises(ConfigError) as err:
        trainer_config(cfg.section("training"))
    assert str(path) in str(err.value) and "'epochs'" in str(err.value)
    with pytest.raises(ConfigError, match="'training.epoch'"):   # a typo is an error, not ignored
        trainer_config({"epoch": 3}, prefix="training")
    assert trainer_config({"epochs": 2})["patience"] == 10  # documented default


def test_parser_creates_out_and_saves_resolved(tmp_path):
    path = write(tmp_path / "conf/c.yaml", {"training": {"epochs": 4}, "data": {"cache_dir": "d"}})
    args = parser(data_dir=False).parse_args(["--config", str(path), "--out", str(tmp_path / "o/deep"),
                                              "--set", "training.epochs=2", "training.seed=3",
                                              "--set", "model.width=8"])
    assert args.resume == "auto"
    schema = Section({"training": Custom(lambda v, k, s: trainer_config(v, k, s), default={}),
                      "data": Section({"cache_dir": Str(None)}),
                      "model": Section({"width": Int(16, min=1)})})
    run = Run.from_args(args, schema)
    cfg = run.cfg
    assert (tmp_path / "o/deep").is_dir() and run.data_dir == tmp_path / "o/deep/data"
    saved = yaml.safe_load((tmp_path / "o/deep/config.resolved.yaml").read_text())
    assert saved == dict(cfg)
    assert cfg["training"]["epochs"] == 2 and cfg["training"]["seed"] == 3
    assert cfg["training"]["patience"] == 10          # defaults filled in and saved
    assert cfg["model"] == {"width": 8}
    assert saved["data"]["cache_dir"] == str(tmp_path / "conf/d")


def test_schema_names_unknown_keys_and_bad_types(tmp_path):
    schema = Section({"seed": Int(0), "data": Section({
        "n_train": Int(None, min=1), "source": Choice("embedded", "files", default="embedded"),
        "features": List(Choice("eta", "mass"), default=["eta"]), "extra": Any_(None)})})
    path = write(tmp_path / "c.yaml", {"data": {"n_train": 10}})
    good = validate(load_config(path), schema)
    assert good == {"seed": 0, "data": {"n_train": 10, "source": "embedded", "features": ["eta"],
                                        "extra": None}}
    for over, key, fragment in ((["data.n_trian=10"], "data.n_trian", "unknown key"),
                                (["train.epochs=abc"], "train", "unknown key"),
                                (["data.n_train=abc"], "data.n_train", "integer"),
                                (["data.n_train=-5"], "data.n_train", ">= 1"),
                                (["data.source=web"], "data.source", "one of"),
                                (["data.features=[eta, pt]"], "data.features[1]", "one of"),
                                (["seed=true"], "seed", "integer")):
        with pytest.raises(ConfigError) as err:
            validate(load_config(path, over), schema)
        assert f"'{key}'" in str(err.value) and fragment in str(err.value) and str(path) in str(err.value)
    # a config whose top level is not a mapping of sections
    with pytest.raises(ConfigError, match="'data'"):
        validate(load_config(write(tmp_path / "d.yaml", {"data": 3})), schema)
