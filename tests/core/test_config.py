"""Typed config: schema declaration, YAML loading and the errors users see."""

from dataclasses import dataclass, field
from typing import Tuple

import pytest

from hilserl_core.formats import config as cfg


@dataclass(frozen=True)
class Inner:
    stiffness_n_per_m: Tuple[float, ...] = cfg.param((600.0, 600.0, 600.0), "translational stiffness", units="N/m", low=0.0, high=5000.0)


@dataclass(frozen=True)
class Outer:
    batch_size: int = cfg.param(256, "transitions per gradient step", low=1, high=65536)
    discount: float = cfg.param(0.97, "reward discount", low=0.0, high=1.0)
    mode: str = cfg.param("twist", "action space", choices=("twist", "wrench"))
    use_augmentation: bool = cfg.param(True, "random-shift image augmentation")
    speed_scale: float = cfg.param(1.0, "operator twist gain", low=0.0, high=5.0, live=True)
    impedance: Inner = field(default_factory=Inner)


def test_defaults_and_overrides_are_typed():
    c = cfg.from_mapping(Outer, {"batch_size": 128, "discount": 1, "impedance": {"stiffness_n_per_m": [100, 200, 300]}})
    assert c.batch_size == 128
    assert isinstance(c.discount, float) and c.discount == 1.0
    assert c.impedance.stiffness_n_per_m == (100.0, 200.0, 300.0)
    assert c.mode == "twist" and c.use_augmentation is True


def test_out_of_range_names_file_key_range_and_units():
    with pytest.raises(cfg.ConfigError) as e:
        cfg.from_mapping(Outer, {"impedance": {"stiffness_n_per_m": [100, -1, 0]}}, source="config/x.yaml")
    msg = str(e.value)
    assert "config/x.yaml" in msg
    assert "impedance.stiffness_n_per_m" in msg and "[0.0, 5000.0]" in msg and "N/m" in msg
    with pytest.raises(cfg.ConfigError, match=r"batch_size = 0 is out of range \[1, 65536\]"):
        cfg.from_mapping(Outer, {"batch_size": 0})


def test_unknown_key_is_an_error_listing_valid_keys():
    with pytest.raises(cfg.ConfigError, match="unknown key.*bach_size.*valid keys here: batch_size"):
        cfg.from_mapping(Outer, {"bach_size": 3})


def test_unknown_key_names_the_file_and_the_closest_valid_key():
    with pytest.raises(cfg.ConfigError) as e:
        cfg.from_mapping(Outer, {"bach_size": 3, "impedance": {}}, source="config/x.yaml")
    assert str(e.value).startswith("config/x.yaml: unknown key(s) bach_size (did you mean 'batch_size'?);")
    with pytest.raises(cfg.ConfigError, match=r"unknown key\(s\) impedance.stifness_n_per_m \(did you mean 'stiffness_n_per_m'\?\)"):
        cfg.from_mapping(Outer, {"impedance": {"stifness_n_per_m": [1, 2, 3]}}, source="config/x.yaml")
    # nothing alike: no guess, only the valid keys
    with pytest.raises(cfg.ConfigError) as e:
        cfg.from_mapping(Outer, {"colour": "red"})
    assert "did you mean" not in str(e.value) and "valid keys here: batch_size, discount" in str(e.value)
    assert cfg.closest("updates_per_transtion", ["updates_per_transition", "batch_size"]) == "updates_per_transition"
    assert cfg.closest("zzz", ["updates_per_transition"]) is None


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({"batch_size": "big"}, "expected an integer"),
        ({"batch_size": 2.5}, "expected an integer"),
        ({"use_augmentation": 1}, "expected true/false"),
        ({"discount": float("nan")}, "must be finite"),
        ({"mode": "torque"}, "one of 'twist', 'wrench'"),
        ({"impedance": 3}, "must be a mapping"),
    ],
)
def test_type_errors(data, pattern):
    with pytest.raises(cfg.ConfigError, match=pattern):
        cfg.from_mapping(Outer, data)


def test_describe_flattens_sections_and_marks_live_params():
    specs = {s.name: s for s in cfg.describe(Outer)}
    assert set(specs) == {"batch_size", "discount", "mode", "use_augmentation", "speed_scale", "impedance.stiffness_n_per_m"}
    assert specs["speed_scale"].live and not specs["batch_size"].live
    assert specs["impedance.stiffness_n_per_m"].units == "N/m"


def test_yaml_section_roundtrip_and_missing_file(tmp_path):
    import yaml

    p = tmp_path / "learner.yaml"
    p.write_text(yaml.safe_dump({"learner": {"agent": cfg.to_dict(Outer(batch_size=64))}}))
    c = cfg.load_yaml(Outer, p, section="learner.agent")
    assert c == Outer(batch_size=64)
    with pytest.raises(cfg.ConfigError, match="missing section 'learner.actor'"):
        cfg.load_yaml(Outer, p, section="learner.actor")
    with pytest.raises(cfg.ConfigError, match="not found"):
        cfg.load_yaml(Outer, tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(cfg.ConfigError, match="not valid YAML"):
        cfg.load_yaml(Outer, tmp_path / "bad.yaml")


def test_a_yaml_syntax_error_is_one_line_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 3\ndiscount: 0.9\nmode: [twist\nspeed_scale: 1\n")
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load_yaml(Outer, bad)
    msg = str(e.value)
    # the line where parsing failed, and where the unclosed list starts
    assert msg == f"{bad}:4: not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence from line 3)"
    bad.write_text("batch_size: 3\nmode: [twist\n")
    with pytest.raises(cfg.ConfigError, match=rf"^{bad}:2: not valid YAML: .*'<stream end>' \(while parsing a flow"):
        cfg.load_yaml(Outer, bad)  # at the end of the file: the line where the list starts
    assert "\n" not in msg
    bad.write_text("a: 1\n  b: 2\n")
    with pytest.raises(cfg.ConfigError, match=rf"^{bad}:2: not valid YAML: mapping values are not allowed here$"):
        cfg.read_yaml_file(bad)
    with pytest.raises(cfg.ConfigError, match=rf"^params file not found: {tmp_path / 'nope.yaml'}$"):
        cfg.read_yaml_file(tmp_path / "nope.yaml", "params file")


def test_replace_checks_ranges():
    c = Outer()
    assert cfg.replace(c, speed_scale=2.0).speed_scale == 2.0
    with pytest.raises(cfg.ConfigError, match="speed_scale = 9.0 is out of range"):
        cfg.replace(c, speed_scale=9.0)


def test_field_without_description_is_rejected():
    @dataclass
    class Bad:
        x: int = 3

    with pytest.raises(TypeError, match="config.param"):
        cfg.describe(Bad)


def test_nest_and_flatten_are_inverse_on_dotted_names():
    flat = {"batch_size": 64, "impedance.stiffness_n_per_m": [1.0, 2.0, 3.0], "a.b.c": True}
    nested = cfg.nest(flat)
    assert nested == {"batch_size": 64, "impedance": {"stiffness_n_per_m": [1.0, 2.0, 3.0]}, "a": {"b": {"c": True}}}
    assert cfg.flatten(nested) == flat
    assert cfg.from_mapping(Outer, cfg.nest({"impedance.stiffness_n_per_m": [5, 5, 5]})).impedance.stiffness_n_per_m == (5.0, 5.0, 5.0)
