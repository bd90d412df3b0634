"""Network factory and pretrained-weight loading, on tiny real MONAI networks (CPU, a few seconds)."""

from __future__ import annotations

import argparse
import copy
import functools
import os
import re

import pytest
import torch
import yaml

from seapeft_monailabel.models import (
    NetworkSpec,
    WeightLoadError,
    build_network,
    count_parameters,
    fit_patch,
    head_module_names,
    load_pretrained,
    spatial_multiple,
)

SWIN = NetworkSpec(name="swinunetr", out_channels=3, feature_size=12)
UNET = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2), num_res_units=2)


@functools.lru_cache(maxsize=None)
def _built(spec: NetworkSpec, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(spec).eval()


def _net(spec: NetworkSpec, seed: int) -> torch.nn.Module:
    """A fresh copy of the network built from ``spec`` with seed ``seed`` (built once per run)."""
    return copy.deepcopy(_built(spec, seed))


def _input(spec: NetworkSpec) -> torch.Tensor:
    """(1, C_in, D, H, W): SwinUNETR needs multiples of 32 and more than one voxel at its D/32 bottleneck
    (instance norm), so 64 x 32 x 32; the small UNet takes 16^3."""
    shape = (64, 32, 32) if spec.name == "swinunetr" else (16, 16, 16)
    return torch.randn(1, spec.in_channels, *shape, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def _same_output(a: torch.nn.Module, b: torch.nn.Module, spec: NetworkSpec) -> bool:
    x = _input(spec)
    return torch.equal(a.eval()(x), b.eval()(x))


def _tensors_equal(a: dict, b: dict, keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


# ----------------------------------------------------------------------------- factory


def test_spec_round_trip_through_yaml():
    spec = NetworkSpec(name="UNet", out_channels=4, channels=[8, 16, 32], strides=[2, 2], num_res_units=1)
    assert spec.name == "unet" and spec.channels == (8, 16, 32)
    text = yaml.safe_dump(spec.to_dict())
    assert NetworkSpec.from_dict(yaml.safe_load(text)) == spec


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"name": "swinunetr", "feature_size": 18}, "divisible by 12"),
        ({"name": "vnet"}, "must be one of"),
        ({"name": "unet", "channels": (8, 16, 32), "strides": (2,)}, "len(channels) - 1"),
        ({"out_channels": 0}, "out_channels"),
        ({"num_res_units": -1}, "num_res_units"),
    ],
)
def test_spec_rejects_bad_values_clearly(kwargs, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        NetworkSpec(**kwargs)


def test_spec_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown key"):
        NetworkSpec.from_dict({"name": "unet", "featuresize": 12})


def test_build_networks_shapes_and_sizes():
    swin = build_network(NetworkSpec(out_channels=2, feature_size=12))
    assert type(swin).__name__ == "SwinUNETR"
    assert count_parameters(swin) == 4_078_064  # measured for MONAI 1.6.1, F = 12, out = 2
    unet = build_network(NetworkSpec(name="unet", out_channels=2))
    assert type(unet).__name__ == "UNet"
    assert count_parameters(unet) == 1_186_765  # (16, 32, 64, 128), strides (2, 2, 2), res 2
    unet.requires_grad_(False)
    assert count_parameters(unet, trainable_only=True) == 0
    with torch.no_grad():  # SwinUNETR's output shape is checked in test_swinunetr_output_reproduced_after_loading
        assert _net(UNET, 0)(_input(UNET)).shape == (1, 3, 16, 16, 16)
    assert spatial_multiple(SWIN) == 32 and spatial_multiple(UNET) == 4


def test_fit_patch_rounds_up_to_the_network_multiple():
    assert fit_patch((48, 48, 30), UNET) == (48, 48, 32)
    assert fit_patch((32, 32, 32), SWIN) == (64, 32, 32)  # SwinUNETR's bottleneck needs 64 along one axis


def test_head_module_names_point_at_class_outputs():
    assert head_module_names(SWIN) == ["out.conv.conv"]
    assert head_module_names(UNET) == ["model.2.0.conv", "model.2.1.conv.unit0.conv"]
    plain = NetworkSpec(name="unet", out_channels=3, channels=(8, 16, 32), strides=(2, 2), num_res_units=0)
    assert head_module_names(plain) == ["model.2.conv"]
    for spec in (SWIN, UNET, plain):
        net = build_network(spec)
        for name in head_module_names(spec, net):
            assert net.get_submodule(name).out_channels == spec.out_channels


# ----------------------------------------------------------------------------- accepted formats


def _save_plain(sd, path):
    torch.save(sd, path)
    return path


def _save_state_dict_key(sd, path):
    torch.save({"state_dict": sd, "epoch": 3, "best_metric": 0.5}, path)
    return path


def _save_model_key(sd, path):
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


def _save_nested(sd, path):
    torch.save({"checkpoint": 1, "model": {"state_dict": sd}, "epoch": 3}, path)
    return path


def _save_module_prefix(sd, path):
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    return path


def _save_bundle(sd, path):
    bundle = path.parent / "my_bundle"
    (bundle / "models").mkdir(parents=True)
    (bundle / "configs").mkdir()
    (bundle / "configs" / "metadata.json").write_text("{}")
    torch.save(sd, bundle / "models" / "model.pt")
    return bundle


FORMATS = [_save_plain, _save_state_dict_key, _save_model_key, _save_nested, _save_module_prefix, _save_bundle]


@pytest.mark.parametrize("spec", [SWIN, UNET], ids=["swinunetr", "unet"])
@pytest.mark.parametrize("save", FORMATS, ids=[f.__name__[6:] for f in FORMATS])
def test_every_format_reproduces_the_saved_network(tmp_path, spec, save):
    src, dst = _net(spec, 1), _net(spec, 2)
    path = save(src.state_dict(), tmp_path / "base.pt")
    report = load_pretrained(dst, path, head_names=head_module_names(spec))
    saved, loaded = src.state_dict(), dst.state_dict()
    assert saved.keys() == loaded.keys() and _tensors_equal(saved, loaded, saved)
    if spec.name == "unet":  # cheap enough to run for every format; SwinUNETR's run is below
        assert _same_output(src, dst, spec)
    assert len(report.loaded) == len(loaded)
    assert not (report.missing or report.unexpected or report.head_reinitialised or report.kept_initialisation)
    assert "base.pt" in report.summary() or "model.pt" in report.summary()


def test_swinunetr_output_reproduced_after_loading(tmp_path):
    src, dst = _net(SWIN, 1), _net(SWIN, 2)
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "swin.pt")
    load_pretrained(dst, tmp_path / "swin.pt", head_names=head_module_names(SWIN))
    x = _input(SWIN)
    with torch.no_grad():
        out = src(x)
        assert out.shape == (1, 3, 64, 32, 32)
        assert torch.equal(dst(x), out)


def test_bundle_layout_is_named(tmp_path):
    src, dst = _net(UNET, 1), _net(UNET, 2)
    report = load_pretrained(dst, _save_bundle(src.state_dict(), tmp_path / "x"), head_names=head_module_names(UNET))
    assert "bundle" in report.layout and report.source.endswith(os.path.join("models", "model.pt"))


def test_module_prefix_is_reported(tmp_path):
    src, dst = _net(UNET, 1), _net(UNET, 2)
    report = load_pretrained(dst, _save_module_prefix(src.state_dict(), tmp_path / "ddp.pt"),
                             head_names=head_module_names(UNET))
    assert "'module.' stripped" in report.layout and "checkpoint['state_dict']" in report.layout


# ----------------------------------------------------------------------------- self-supervised Swin weights


def test_swin_encoder_only_checkpoint_loads_encoder_and_keeps_decoder(tmp_path):
    src, dst = _net(SWIN, 1), _net(SWIN, 2)
    before = copy.deepcopy(dst.state_dict())
    encoder = {k: v for k, v in src.state_dict().items() if k.startswith("swinViT.")}
    torch.save({"state_dict": encoder}, tmp_path / "ssl_encoder.pt")

    report = load_pretrained(dst, tmp_path / "ssl_encoder.pt", head_names=head_module_names(SWIN))

    after = dst.state_dict()
    assert _tensors_equal(after, src.state_dict(), encoder)
    rest = [k for k in after if not k.startswith("swinViT.")]
    assert rest and _tensors_equal(after, before, rest)
    assert sorted(report.kept_initialisation) == sorted(rest)
    assert "out.conv.conv.weight" in report.kept_initialisation
    assert sorted(report.loaded) == sorted(encoder) and not report.missing
    assert "encoder only" in report.layout


def _published_ssl_layout(swin: torch.nn.Module) -> dict:
    """The layout of MONAI's model_swinvit.pt: DataParallel prefix, no swinViT., fc1/fc2, pretext heads."""
    state = {}
    for key, value in swin.state_dict().items():
        if key.startswith("swinViT."):
            key = key[len("swinViT."):].replace("mlp.linear1", "mlp.fc1").replace("mlp.linear2", "mlp.fc2")
            state[f"module.{key}"] = value.clone()
    g = torch.Generator().manual_seed(3)
    state["module.rotation_head.weight"] = torch.randn(4, 192, generator=g)
    state["module.rotation_head.bias"] = torch.randn(4, generator=g)
    state["module.contrastive_head.weight"] = torch.randn(512, 192, generator=g)
    state["module.contrastive_head.bias"] = torch.randn(512, generator=g)
    state["module.convTrans3d.weight"] = torch.randn(192, 1, 1, 1, 1, generator=g)
    state["module.convTrans3d.bias"] = torch.randn(1, generator=g)
    return {"epoch": 100, "state_dict": state}


def test_published_ssl_layout_matches_monai_load_from(tmp_path):
    src, dst = _net(SWIN, 1), _net(SWIN, 2)
    reference = copy.deepcopy(dst)
    weights = _published_ssl_layout(src)
    torch.save(weights, tmp_path / "model_swinvit.pt")

    report = load_pretrained(dst, tmp_path / "model_swinvit.pt", head_names=head_module_names(SWIN))
    reference.load_from(weights)  # MONAI's own loader for this layout

    ours, theirs = dst.state_dict(), reference.state_dict()
    assert _tensors_equal(ours, theirs, ours)
    assert _tensors_equal(ours, src.state_dict(), [k for k in ours if k.startswith("swinViT.")])
    assert any(k.endswith("mlp.linear1.weight") for k in report.loaded)
    assert sorted(report.ignored) == sorted(k[len("module."):] for k in weights["state_dict"] if "head" in k
                                            or "convTrans3d" in k)
    assert not report.missing and not report.unexpected
    assert "self-supervised" in report.layout


# ----------------------------------------------------------------------------- head with another class count


def test_swin_head_recreated_and_mapped_rows_copied(tmp_path):
    src = _net(SWIN, 1)  # 3 classes
    dst_spec = NetworkSpec(name="swinunetr", out_channels=4, feature_size=12)
    dst = _net(dst_spec, 2)
    fresh = copy.deepcopy(dst.state_dict())
    torch.save(src.state_dict(), tmp_path / "base.pt")

    report = load_pretrained(dst, tmp_path / "base.pt", head_names=head_module_names(dst_spec),
                             label_map={0: 0, 3: 2})

    w, b = dst.out.conv.conv.weight, dst.out.conv.conv.bias
    sw, sb = src.out.conv.conv.weight, src.out.conv.conv.bias
    assert w.shape == (4, 12, 1, 1, 1)
    assert torch.equal(w[0], sw[0]) and torch.equal(w[3], sw[2])
    assert torch.equal(b[0], sb[0]) and torch.equal(b[3], sb[2])
    assert torch.equal(w[1:3], fresh["out.conv.conv.weight"][1:3])
    assert torch.equal(b[1:3], fresh["out.conv.conv.bias"][1:3])
    assert sorted(report.head_reinitialised) == ["out.conv.conv.bias", "out.conv.conv.weight"]
    assert report.copied_classes == {0: 0, 3: 2}
    body = [k for k in fresh if not k.startswith("out.")]
    assert _tensors_equal(dst.state_dict(), src.state_dict(), body)
    assert "3<-2" in report.summary()


def test_unet_head_recreated_in_all_class_dimensions(tmp_path):
    src = _net(UNET, 1)  # 3 classes
    dst_spec = NetworkSpec(name="unet", out_channels=2, channels=(8, 16, 32), strides=(2, 2), num_res_units=2)
    dst = _net(dst_spec, 2)
    fresh = copy.deepcopy(dst.state_dict())
    torch.save(src.state_dict(), tmp_path / "base.pt")

    report = load_pretrained(dst, tmp_path / "base.pt", head_names=head_module_names(dst_spec),
                             label_map={0: 0, 1: 2})

    s, d = src.state_dict(), dst.state_dict()
    # ConvTranspose3d(16 -> C): weight (in, out, k, k, k), classes on dim 1
    assert d["model.2.0.conv.weight"].shape == (16, 2, 3, 3, 3)
    assert torch.equal(d["model.2.0.conv.weight"][:, 1], s["model.2.0.conv.weight"][:, 2])
    assert torch.equal(d["model.2.0.conv.bias"], s["model.2.0.conv.bias"][[0, 2]])
    # Conv3d(C -> C): classes on dims 0 and 1
    w, sw = d["model.2.1.conv.unit0.conv.weight"], s["model.2.1.conv.unit0.conv.weight"]
    assert w.shape == (2, 2, 3, 3, 3)
    for t, src_t in ((0, 0), (1, 2)):
        for u, src_u in ((0, 0), (1, 2)):
            assert torch.equal(w[t, u], sw[src_t, src_u])
    assert len(report.head_reinitialised) == 4
    body = [k for k in fresh if not k.startswith("model.2.") or ".adn." in k]
    assert _tensors_equal(d, s, body)


def test_head_without_label_map_keeps_fresh_init(tmp_path):
    src = _net(SWIN, 1)
    dst_spec = NetworkSpec(name="swinunetr", out_channels=2, feature_size=12)
    dst = _net(dst_spec, 2)
    fresh = copy.deepcopy(dst.state_dict())
    torch.save(src.state_dict(), tmp_path / "base.pt")
    report = load_pretrained(dst, tmp_path / "base.pt", head_names=head_module_names(dst_spec))
    assert _tensors_equal(dst.state_dict(), fresh, ["out.conv.conv.weight", "out.conv.conv.bias"])
    assert report.copied_classes == {} and len(report.head_reinitialised) == 2
    assert "out.conv.conv.weight" not in report.loaded


def test_label_map_out_of_range_is_an_error(tmp_path):
    torch.save(_net(SWIN, 1).state_dict(), tmp_path / "base.pt")
    dst = _net(NetworkSpec(out_channels=4), 2)
    with pytest.raises(WeightLoadError, match=r"base\.pt.*source class 5"):
        load_pretrained(dst, tmp_path / "base.pt", head_names=["out.conv.conv"], label_map={1: 5})


# ----------------------------------------------------------------------------- errors


def test_text_file_is_rejected_with_its_name(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(WeightLoadError, match=r"notes\.pt: not a PyTorch checkpoint"):
        load_pretrained(_net(UNET, 0), path, head_names=head_module_names(UNET))


def test_random_bytes_are_rejected_with_their_name(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(WeightLoadError, match=r"garbage\.pth: not a PyTorch checkpoint"):
        load_pretrained(_net(UNET, 0), path, head_names=head_module_names(UNET))


def test_unet_checkpoint_into_swinunetr_is_rejected(tmp_path):
    torch.save(_net(UNET, 0).state_dict(), tmp_path / "base.pt")
    with pytest.raises(WeightLoadError) as info:
        load_pretrained(_net(SWIN, 0), tmp_path / "base.pt", head_names=head_module_names(SWIN))
    message = str(info.value)
    assert message.startswith("base.pt: ")
    assert "network keys missing" in message and "UNet checkpoint" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    "content, words",
    [({}, "is empty"), ({"state_dict": {}}, "is empty"), ({"epoch": 3}, "no state dict found"),
     ([1, 2, 3], "holds a list")],
)
def test_empty_or_tensorless_checkpoints_are_rejected(tmp_path, content, words):
    torch.save(content, tmp_path / "empty.pt")
    with pytest.raises(WeightLoadError, match=rf"empty\.pt: .*{words}"):
        load_pretrained(_net(UNET, 0), tmp_path / "empty.pt", head_names=head_module_names(UNET))


def test_missing_file_and_non_bundle_directory(tmp_path):
    with pytest.raises(WeightLoadError, match=r"nothere\.pt: no such file"):
        load_pretrained(_net(UNET, 0), tmp_path / "nothere.pt", head_names=[])
    (tmp_path / "somedir").mkdir()
    with pytest.raises(WeightLoadError, match=r"somedir: is a directory but not a MONAI bundle"):
        load_pretrained(_net(UNET, 0), tmp_path / "somedir", head_names=[])


def test_pickled_python_objects_are_refused(tmp_path):
    torch.save({"state_dict": _net(UNET, 0).state_dict(), "args": argparse.Namespace(lr=1e-4)},
               tmp_path / "trainer.pt")
    with pytest.raises(WeightLoadError, match=r"trainer\.pt: holds Python objects \(argparse\.Namespace\).*weights_only"):
        load_pretrained(_net(UNET, 0), tmp_path / "trainer.pt", head_names=head_module_names(UNET))


def test_shape_mismatch_outside_the_head_names_key_and_shapes(tmp_path):
    torch.save(_net(NetworkSpec(in_channels=2, out_channels=3), 0).state_dict(), tmp_path / "two_channel.pt")
    with pytest.raises(WeightLoadError) as info:
        load_pretrained(_net(SWIN, 0), tmp_path / "two_channel.pt", head_names=head_module_names(SWIN))
    message = str(info.value)
    assert "two_channel.pt" in message and "swinViT.patch_embed.proj.weight" in message
    assert "(12, 2, 2, 2, 2)" in message and "(12, 1, 2, 2, 2)" in message


def test_strict_missing_and_unexpected_keys(tmp_path):
    src = _net(UNET, 1)
    state = src.state_dict()
    dropped = "model.0.conv.unit0.conv.bias"
    del state[dropped]
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "partial.pt")
    heads = head_module_names(UNET)

    with pytest.raises(WeightLoadError) as info:
        load_pretrained(_net(UNET, 2), tmp_path / "partial.pt", head_names=heads)
    message = str(info.value)
    assert message.startswith("partial.pt: ") and dropped in message and "extra.weight" in message

    dst = _net(UNET, 2)
    fresh_bias = dst.state_dict()[dropped].clone()
    report = load_pretrained(dst, tmp_path / "partial.pt", head_names=heads, strict=False)
    assert report.missing == [dropped] and report.unexpected == ["extra.weight"]
    assert torch.equal(dst.state_dict()[dropped], fresh_bias)
    assert "MISSING" in report.summary() and "UNEXPECTED" in report.summary()


def test_missing_head_is_allowed_and_reported(tmp_path):
    src = _net(UNET, 1)
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("model.2.1.")}
    torch.save(state, tmp_path / "nohead.pt")
    report = load_pretrained(_net(UNET, 2), tmp_path / "nohead.pt", head_names=head_module_names(UNET))
    assert sorted(report.head_reinitialised) == ["model.2.1.conv.unit0.conv.bias", "model.2.1.conv.unit0.conv.weight"]
    assert not report.missing
