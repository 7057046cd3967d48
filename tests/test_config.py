"""Parameter strings, parameter files and the strict GRU4RecConfig."""
import dataclasses
import json
from importlib import resources

import pytest

from nextitem.config import ConfigError, load_param_file, parse_param_string
from nextitem.models.gru4rec import GRU4RecConfig

SHIPPED = sorted(p.name for p in resources.files("nextitem.paramfiles").iterdir()
                 if p.name.endswith(".py") and not p.name.startswith("_"))


def test_parse_param_string():
    got = parse_param_string("loss=bpr-max, layers=100/100,constrained_embedding=False,embedding=layersize,,n_sample=0")
    assert got == {"loss": "bpr-max", "layers": "100/100", "constrained_embedding": "False",
                   "embedding": "layersize", "n_sample": "0"}
    assert parse_param_string("") == {}
    assert parse_param_string("a=b=c") == {"a": "b=c"}


def test_parse_param_string_rejects_missing_equals():
    with pytest.raises(ConfigError, match="layers100"):
        parse_param_string("loss=bpr-max,layers100")


def test_param_string_to_config():
    cfg = GRU4RecConfig.from_dict(parse_param_string(
        "loss=bpr-max,layers=100/64,constrained_embedding=False,embedding=layersize,batch_size=32,"
        "learning_rate=0.07,momentum=0.3,n_sample=0,elu_param=1,bpreg=1.5,dropout_p_hidden=0.25,n_epochs=2.0"))
    assert cfg.loss == "bpr-max" and cfg.layers == [100, 64]
    assert cfg.constrained_embedding is False and cfg.embedding == "layersize"
    assert cfg.embedding_mode == "separate" and cfg.embedding_size == 100
    assert cfg.batch_size == 32 and isinstance(cfg.batch_size, int)
    assert cfg.learning_rate == 0.07 and cfg.momentum == 0.3 and cfg.n_sample == 0
    assert cfg.elu_param == 1.0 and isinstance(cfg.elu_param, float) and cfg.bpreg == 1.5
    assert cfg.dropout_p_hidden == 0.25 and cfg.n_epochs == 2


@pytest.mark.parametrize("text,value", [("True", True), ("False", False), ("1", True), ("0", False),
                                        ("true", True), ("false", False)])
def test_booleans(text, value):
    assert GRU4RecConfig.from_dict(parse_param_string(f"constrained_embedding={text}")).constrained_embedding is value
    assert GRU4RecConfig.from_dict({"constrained_embedding": value}).constrained_embedding is value


@pytest.mark.parametrize("params,mode,size", [
    ({}, "shared", 0),
    ({"constrained_embedding": "False", "embedding": "0"}, "none", 0),
    ({"constrained_embedding": "False", "embedding": "32"}, "separate", 32),
    ({"constrained_embedding": "False", "embedding": "layersize", "layers": "48/16"}, "separate", 48),
    ({"constrained_embedding": "True", "embedding": "32"}, "shared", 32),
])
def test_embedding_modes(params, mode, size):
    cfg = GRU4RecConfig.from_dict(params)
    assert cfg.embedding_mode == mode and cfg.embedding_size == size


def test_defaults_match_reference():
    cfg = GRU4RecConfig.from_dict({})
    assert (cfg.layers, cfg.loss, cfg.batch_size, cfg.dropout_p_embed, cfg.dropout_p_hidden, cfg.learning_rate,
            cfg.momentum, cfg.sample_alpha, cfg.n_sample, cfg.embedding, cfg.constrained_embedding, cfg.n_epochs,
            cfg.bpreg, cfg.elu_param, cfg.logq) == \
        ([100], "cross-entropy", 64, 0.0, 0.0, 0.05, 0.0, 0.5, 2048, 0, True, 10, 1.0, 0.5, 0.0)


@pytest.mark.parametrize("wrong,right", [("learnig_rate", "learning_rate"), ("layer", "layers"),
                                         ("n_samples", "n_sample"), ("dropout_p_embedding", "dropout_p_embed"),
                                         ("batchsize", "batch_size")])
def test_unknown_key_suggests_nearest(wrong, right):
    with pytest.raises(ConfigError) as e:
        GRU4RecConfig.from_dict({wrong: "1"})
    msg = str(e.value)
    assert repr(wrong) in msg and f"Did you mean {right!r}" in msg


def test_unknown_key_without_close_match():
    with pytest.raises(ConfigError) as e:
        GRU4RecConfig.from_dict({"zzzzqqq": 1})
    assert "'zzzzqqq'" in str(e.value) and "Did you mean" not in str(e.value)


@pytest.mark.parametrize("key,value", [
    ("loss", "foo"), ("loss", "bpr_max"), ("dropout_p_embed", 1.5), ("dropout_p_hidden", "-0.1"), ("dropout_p_hidden", 1.0),
    ("layers", 0), ("layers", "100/0"), ("layers", ""), ("batch_size", 0), ("batch_size", "2.5"), ("batch_size", True),
    ("learning_rate", 0), ("learning_rate", "fast"), ("momentum", 1.0), ("n_sample", -1), ("n_epochs", -1),
    ("embedding", "foo"), ("embedding", -3), ("constrained_embedding", "maybe"), ("constrained_embedding", 2),
    ("elu_param", -0.5), ("bpreg", -1), ("logq", -1), ("learning_rate", True),
])
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as e:
        GRU4RecConfig.from_dict({key: value})
    assert key in str(e.value)


def test_source_is_named():
    with pytest.raises(ConfigError, match="my.json"):
        GRU4RecConfig.from_dict({"lossy": 1}, source="my.json")


# ---------------------------------------------------------------------------------- param files
PY_FILE = """\
from collections import OrderedDict
gru4rec_params = OrderedDict([
    ('loss', 'bpr-max'),
    ('layers', [64, 32]),
    ('embedding', 'layersize'),
    ('constrained_embedding', False),
    ('learning_rate', 0.07),
])
"""


def test_py_file_ordered_dict(tmp_path):
    path = tmp_path / "p.py"
    path.write_text(PY_FILE)
    params = load_param_file(path)
    assert params == {"loss": "bpr-max", "layers": [64, 32], "embedding": "layersize",
                      "constrained_embedding": False, "learning_rate": 0.07}
    assert list(params) == ["loss", "layers", "embedding", "constrained_embedding", "learning_rate"]
    cfg = GRU4RecConfig.from_dict(params)
    assert cfg.layers == [64, 32] and cfg.embedding_size == 64


@pytest.mark.parametrize("body", [
    "gru4rec_params = {'loss': 'bpr-max', 'layers': [64, 32]}",
    "gru4rec_params = dict(loss='bpr-max', layers=[64, 32])",
    "import collections\ngru4rec_params = collections.OrderedDict([('loss', 'bpr-max'), ('layers', [64, 32])])",
    "gru4rec_params = dict([('loss', 'bpr-max'), ('layers', [64, 32])])",
])
def test_py_file_other_literal_forms(tmp_path, body):
    path = tmp_path / "p.py"
    path.write_text(body + "\n")
    assert load_param_file(path) == {"loss": "bpr-max", "layers": [64, 32]}


def test_py_file_is_not_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.py"
    path.write_text(
        "import os\n"
        f"os.system('touch {marker}')\n"
        f"open({str(marker)!r}, 'w').write('x')\n"
        + PY_FILE
    )
    params = load_param_file(path)
    assert params["loss"] == "bpr-max"
    assert not marker.exists()


@pytest.mark.parametrize("value", [
    "OrderedDict([('loss', __import__('os').system('touch {marker}'))])",
    "dict(loss=open('{marker}', 'w').write('x'))",
    "{{'loss': str(open('{marker}', 'w'))}}",
    "make_params()",
])
def test_py_file_with_code_in_the_value_is_refused(tmp_path, value):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.py"
    path.write_text("from collections import OrderedDict\ngru4rec_params = " + value.format(marker=marker) + "\n")
    with pytest.raises(ConfigError, match="literal"):
        load_param_file(path)
    assert not marker.exists()


def test_py_file_without_the_variable(tmp_path):
    path = tmp_path / "p.py"
    path.write_text("params = {'loss': 'bpr-max'}\n")
    with pytest.raises(ConfigError, match="gru4rec_params"):
        load_param_file(path)
    path.write_text("gru4rec_params = (\n")
    with pytest.raises(ConfigError, match="not valid Python"):
        load_param_file(path)


def test_json_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"loss": "cross-entropy", "layers": [16], "logq": 1, "constrained_embedding": True}))
    cfg = GRU4RecConfig.from_dict(load_param_file(path))
    assert cfg.layers == [16] and cfg.logq == 1.0 and cfg.constrained_embedding is True
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="JSON"):
        load_param_file(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        load_param_file(path)


@pytest.mark.parametrize("text", [
    'loss = "bpr-max"\nlayers = [16, 8]\nmomentum = 0.2\nconstrained_embedding = false\nembedding = 12\n',
    '[gru4rec_params]\nloss = "bpr-max"\nlayers = [16, 8]\nmomentum = 0.2\nconstrained_embedding = false\nembedding = 12\n',
])
def test_toml_file(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    cfg = GRU4RecConfig.from_dict(load_param_file(path))
    assert cfg.loss == "bpr-max" and cfg.layers == [16, 8] and cfg.momentum == 0.2
    assert cfg.embedding_mode == "separate" and cfg.embedding_size == 12


def test_bad_toml_and_unknown_suffix_and_missing_file(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("loss = \n")
    with pytest.raises(ConfigError, match="TOML"):
        load_param_file(path)
    path = tmp_path / "p.yaml"
    path.write_text("loss: x\n")
    with pytest.raises(ConfigError, match="unknown parameter file type"):
        load_param_file(path)
    with pytest.raises(ConfigError, match="no such parameter file"):
        load_param_file(tmp_path / "missing.json")


def test_there_are_shipped_param_files():
    assert len(SHIPPED) >= 1


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_param_files_load(name):
    path = resources.files("nextitem.paramfiles") / name
    params = load_param_file(str(path))
    cfg = GRU4RecConfig.from_dict(params, source=name)
    assert set(params) <= {f.name for f in dataclasses.fields(GRU4RecConfig)}
    for key, value in params.items():
        got = getattr(cfg, key)
        assert got == value or (key == "layers" and got == list(value)), key
