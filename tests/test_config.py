"""shared.config: inheritance, overrides, path rules, errors naming file and key."""
import json

import pytest
import yaml

from shared.config import (Config, ConfigError, build_parser, config_from_args, load_config,
                           parse_override)
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
    assert trainer_config({"epochs": 2})["patience"] == 10  # documented default


def test_parser_creates_out_and_saves_resolved(tmp_path):
    path = write(tmp_path / "conf/c.yaml", {"training": {"epochs": 4}, "data": {"cache_dir": "d"}})
    args = build_parser().parse_args(["--config", str(path), "--out", str(tmp_path / "o/deep"),
                                      "--set", "training.epochs=2", "training.seed=3",
                                      "--set", "model.width=8"])
    assert args.resume == "auto"
    cfg = config_from_args(args)
    assert (tmp_path / "o/deep").is_dir()
    saved = yaml.safe_load((tmp_path / "o/deep/config.resolved.yaml").read_text())
    assert saved == dict(cfg)
    assert cfg["training"] == {"epochs": 2, "seed": 3} and cfg["model"] == {"width": 8}
    assert saved["data"]["cache_dir"] == str(tmp_path / "conf/d")
