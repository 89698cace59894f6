"""The model store: versions, promotion, slim checkpoints, refusals; and its CLI.

Every test taking ``store`` runs on a folder store and on an S3 store (moto's server; see conftest)."""
import json
import threading

import pytest
import torch

from serving.store import ModelStore, NotFoundError, PromotionConflict
from translate.checkpoint import CHECKPOINT_FORMAT, GeneratorSpec
from translate.errors import ConfigError, ModelError, TranslateError
from translate.networks import define_G
from translate_cli.main import main

from .conftest import leftovers, pointer_as_stored, stored


@pytest.fixture
def store(store_factory):
    return store_factory()


def fake_checkpoint(path, seed=0):
    """A training checkpoint as training.loop writes it (with the optimizer state a slim copy drops; a run without
    class maps has no palette)."""
    torch.manual_seed(seed)
    G = define_G("unet_32", ngf=8)
    arch = {"name": "unet_32", "ngf": 8}
    torch.save({"format": CHECKPOINT_FORMAT, "method": "pix2pix", "config": {"netG": "unet_32", "lr": 2e-4},
                "step": 7, "networks": {"G": G.state_dict()}, "optimizers": {"G": {"state": {}}},
                "schedulers": {}, "rng": {"torch": 1}, "extra": {}, "last_val": {"l1": 0.25}, "palette": None,
                "generators": {"AtoB": GeneratorSpec("G", arch, batch_stats=True).to_dict()}}, path)
    return path


def assert_slim_copy_of(stored, ckpt) -> None:
    """``stored`` is the slim copy of the training checkpoint ``ckpt``: its model's part, every weight equal."""
    slim, full = torch.load(stored, weights_only=False), torch.load(ckpt, weights_only=False)
    assert set(slim) == {"format", "method", "config", "step", "networks", "generators", "palette"}
    assert {k: slim[k] for k in slim if k != "networks"} == {k: full[k] for k in slim if k != "networks"}
    assert slim["networks"].keys() == full["networks"].keys()
    for net, weights in full["networks"].items():
        assert slim["networks"][net].keys() == weights.keys()
        assert all(torch.equal(slim["networks"][net][k], w) for k, w in weights.items()), net


def test_first_version_is_promoted_and_meta_read_from_the_model(store, onnx_a, onnx_b):
    assert store.register("maps", onnx_a, meta={"metrics": {"l1": 0.3}}) == "v0001"
    assert store.register("maps", onnx_b) == "v0002"
    assert store.current("maps") == "v0001" and store.versions("maps") == ["v0001", "v0002"]
    meta = store.meta("maps")
    assert meta["version"] == "v0001" and meta["method"] == "pix2pix" and meta["direction"] == "AtoB"
    assert meta["size_multiple"] == 32 and meta["channels"] == 3 and meta["metrics"] == {"l1": 0.3}
    assert meta["config"]["netG"] == "unet_32" and meta["created"].endswith("+00:00")
    assert store.model_path("maps", "v0002").read_bytes() == onnx_b
    assert store.checkpoint_path("maps") is None
    listing = store.list()
    assert [m["name"] for m in listing] == ["maps"] and listing[0]["current"] == "v0001"
    assert [v["version"] for v in listing[0]["versions"]] == ["v0001", "v0002"]


def test_promote_switches_the_pointer(store, onnx_a, onnx_b):
    store.register("maps", onnx_a)
    store.register("maps", onnx_b, promote=True)
    assert store.current("maps") == "v0002" and store.model_path("maps").read_bytes() == onnx_b
    store.promote("maps", "v0001")
    assert pointer_as_stored(store, "maps") == "v0001"
    with pytest.raises(NotFoundError):
        store.promote("maps", "v0003")


def test_racing_promotions_exactly_one_wins(store, onnx_a, onnx_b):
    for onnx in (onnx_a, onnx_b, onnx_b):
        store.register("maps", onnx)
    real, both_read, first_read = store.backend.read_pointer, threading.Barrier(2, timeout=30), set()

    def read_pointer_then_wait(name):  # both promotions read the pointer before either writes it
        pointer = real(name)
        if threading.get_ident() not in first_read:
            first_read.add(threading.get_ident())
            both_read.wait()
        return pointer

    outcomes = {}

    def promote(version):
        try:
            store.promote("maps", version)
            outcomes[version] = "won"
        except PromotionConflict as e:
            outcomes[version] = e

    store.backend.read_pointer = read_pointer_then_wait
    try:
        threads = [threading.Thread(target=promote, args=(v,)) for v in ("v0002", "v0003")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        del store.backend.read_pointer
    winners = [v for v, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == 2 and len(winners) == 1, outcomes
    loser = next(outcome for outcome in outcomes.values() if outcome != "won")
    assert f"another promotion changed the promoted version from v0001 to {winners[0]}" in str(loser)
    assert store.current("maps") == winners[0] == pointer_as_stored(store, "maps")
    # a promotion that names the version it replaces refuses once that is no longer the promoted one
    with pytest.raises(PromotionConflict, match="not v0001 as expected"):
        store.promote("maps", "v0001", expected="v0001")
    store.promote("maps", "v0001", expected=winners[0])
    assert store.current("maps") == "v0001"


def test_register_from_a_file_with_a_slim_checkpoint(store, onnx_a, tmp_path):
    (tmp_path / "m.onnx").write_bytes(onnx_a)
    ckpt = fake_checkpoint(tmp_path / "step.pt")
    v = store.register("maps", tmp_path / "m.onnx", checkpoint=ckpt)
    assert_slim_copy_of(store.checkpoint_path("maps", v), ckpt)
    assert store.meta("maps", v)["metrics"] == {"l1": 0.25}  # the run's last validation scores


def test_concurrent_registers_get_distinct_versions(store, onnx_a):
    got = []
    threads = [threading.Thread(target=lambda: got.append(store.register("maps", onnx_a))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == ["v0001", "v0002", "v0003", "v0004"] and store.current("maps") == "v0001"
    assert not leftovers(store, "maps")  # no temp dirs or unnamed uploads left


def test_a_bad_model_or_checkpoint_leaves_nothing_behind(store, onnx_a, tmp_path):
    with pytest.raises(ModelError):
        store.register("maps", b"not an onnx model")
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(ModelError):
        store.register("maps", onnx_a, checkpoint=tmp_path / "bad.pt")
    assert store.names() == [] and not stored(store, "maps")


def test_delete_refuses_the_current_version_while_others_exist(store, onnx_a, onnx_b):
    store.register("maps", onnx_a)
    store.register("maps", onnx_b)
    with pytest.raises(ConfigError, match="promote another"):
        store.delete("maps", "v0001")
    store.delete("maps", "v0002")
    assert store.versions("maps") == ["v0001"]
    store.delete("maps", "v0001")  # the only one: the model goes
    assert store.names() == []
    store.register("other", onnx_a)
    store.delete("other")
    assert store.names() == []


BAD_NAMES = ["../x", "a/b", "Maps", "", "maps\n", "x" * 65]
BAD_VERSIONS = ["../v0001", "1", "v01", "v0001/..", "V0001"]
BAD_CASES = ([(call, name, "v0001", "name") for call in ("register", "promote", "meta", "model_path", "delete",
                                                           "versions") for name in BAD_NAMES]
             + [(call, "maps", v, "version") for call in ("promote", "meta", "model_path", "delete")
                for v in BAD_VERSIONS])


@pytest.fixture(scope="module")
def one_model_store(store_factory, onnx_a):
    store = store_factory()
    store.register("maps", onnx_a)
    return store


@pytest.mark.parametrize("call,name,version,field", BAD_CASES)
def test_bad_names_and_versions_are_config_errors(one_model_store, onnx_a, call, name, version, field):
    store = one_model_store
    args = {"register": (name, onnx_a), "versions": (name,)}.get(call, (name, version))
    with pytest.raises(ConfigError) as e:
        getattr(store, call)(*args)
    assert e.value.field == field
    assert store.versions("maps") == ["v0001"]  # refused before anything changed


def test_unknown_names_and_versions_are_not_found(store, onnx_a):
    store.register("maps", onnx_a)
    for call in (lambda: store.meta("nope"), lambda: store.model_path("maps", "v0009"),
                 lambda: store.delete("nope"), lambda: store.promote("maps", "v0002")):
        with pytest.raises(NotFoundError) as e:
            call()
        assert isinstance(e.value, KeyError) and isinstance(e.value, TranslateError)
    assert store.current("nope") is None and store.versions("nope") == []


def test_default_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSLATE_STORE", str(tmp_path / "s"))
    assert ModelStore().root == tmp_path / "s"


def test_cli_export_register_and_models_commands(tmp_path, capsys):
    store = tmp_path / "store"
    ckpt = fake_checkpoint(tmp_path / "latest.pt")
    for _ in range(2):
        main(["export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--register", "maps", "--store", str(store)])
    out = capsys.readouterr().out
    assert "registered maps v0001" in out and "registered maps v0002" in out
    assert_slim_copy_of(ModelStore(store).checkpoint_path("maps", "v0002"), ckpt)
    main(["models", "promote", "maps", "v0002", "--store", str(store)])
    main(["models", "list", "--json", "--store", str(store)])
    listing = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert listing[0]["current"] == "v0002" and len(listing[0]["versions"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["models", "delete", "maps", "v0002", "--store", str(store)])
    assert e.value.code == 2 and "promote another" in capsys.readouterr().err
    main(["models", "delete", "maps", "v0001", "--store", str(store)])
    main(["models", "list", "--store", str(store)])
    assert "* v0002" in capsys.readouterr().out
