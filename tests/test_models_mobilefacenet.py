"""MobileFaceNet (insightface and thesis Table 4.11) against reference sizes and formulas."""

import pytest
import torch
import torch.nn.functional as F

from fkdlib.errors import ConfigError
from fkdlib.evaluation.complexity import count_flops
from fkdlib.models import create_model
from fkdlib.models.layers import DepthwiseBottleneck, scale_channels


def closed_form_counts(scale, input_size, width, embedding):
    """Parameters and MACs of MobileFaceNet written out from thesis Table 4.11's rows."""
    params = macs = 0

    def conv_bn(cin, cout, kernel, resolution, groups=1, prelu=True):
        nonlocal params, macs
        params += kernel * kernel * cin // groups * cout + 2 * cout + (cout if prelu else 0)
        macs += kernel * kernel * cin // groups * cout * resolution**2

    def bottleneck(cin, cout, expansion, res_in, res_out):
        conv_bn(cin, expansion, 1, res_in)
        conv_bn(expansion, expansion, 3, res_out, groups=expansion)
        conv_bn(expansion, cout, 1, res_out, prelu=False)

    narrow, wide = scale_channels(64 * scale, width), scale_channels(128 * scale, width)
    e128, e256, e512 = (scale_channels(c, width) for c in (128, 256, 512))
    head = scale_channels(512, width)
    r = input_size // 2
    conv_bn(3, narrow, 3, r)                                 # conv_block 3 -> 64, stride 2
    conv_bn(narrow, narrow, 3, r, groups=narrow // scale)    # conv_block 64 -> 64, grouped
    rows = [(narrow, e128, narrow, 4), (narrow, e256, wide, 6), (wide, e512, wide, 2)]
    residual_expansions = [e128, e256, e256]
    for (cin, expansion, cout, repeats), res_expansion in zip(rows, residual_expansions):
        bottleneck(cin, cout, expansion, r, r // 2)          # stride-2 bottleneck
        r //= 2
        for _ in range(repeats):
            bottleneck(cout, cout, res_expansion, r, r)
    conv_bn(wide, head, 1, r)                                # conv_block 128 -> 512
    conv_bn(head, head, r, 1, groups=head, prelu=False)      # 7x7 global depthwise (linear)
    params += head * embedding + 2 * embedding               # Linear (no bias) + BN1d
    macs += head * embedding
    return params, macs


@pytest.mark.parametrize(
    "name, params_m, gmacs",
    [
        ("mobilefacenet", 2.06, 0.44),          # insightface_model_sizes
        ("mobilefacenet_thesis", 1.2, None),    # thesis text beside Table 4.12: "(1.2M)"
    ],
)
def test_size_and_cost_at_112_match_the_published_values(name, params_m, gmacs):
    with torch.device("meta"):
        model = create_model(name)
    report = count_flops(model, 112)
    assert report.params / 1e6 == pytest.approx(params_m, rel=0.01)
    if gmacs is not None:
        assert report.macs / 1e9 == pytest.approx(gmacs, rel=0.01)
    scale = 2 if name == "mobilefacenet" else 1
    assert (report.params, report.macs) == closed_form_counts(scale, 112, 1.0, 512)


@pytest.mark.parametrize(
    "name, scale, input_size, width, embedding",
    [("mobilefacenet", 2, 32, 0.25, 64), ("mobilefacenet_thesis", 1, 48, 0.5, 128),
     ("mobilefacenet", 2, 16, 0.1, 32)],
)
def test_counts_follow_the_closed_form_for_other_sizes_and_widths(name, scale, input_size,
                                                                  width, embedding):
    with torch.device("meta"):
        model = create_model(name, input_size=input_size, width=width, embedding_size=embedding)
    report = count_flops(model, input_size)
    assert (report.params, report.macs) == closed_form_counts(scale, input_size, width, embedding)


def test_thesis_table_4_11_channels_groups_and_resolutions():
    torch.manual_seed(0)
    model = create_model("mobilefacenet_thesis", input_size=32).eval()
    # Table 4.11: conv_block 3->64 /2; conv_block 64->64 with 64 groups (depthwise).
    assert model.stem.conv.out_channels == 64 and model.stem.conv.stride == (2, 2)
    assert model.layer1.conv.groups == 64
    # Bottleneck rows (in, groups, out) at stride 2, then `repeats` rows (out, groups, out).
    rows = [(model.layer2, 64, 128, 64, 4, 128), (model.layer3, 64, 256, 128, 6, 256),
            (model.layer4[:-1], 128, 512, 128, 2, 256)]
    for stage, cin, groups, cout, repeats, residual_groups in rows:
        assert len(stage) == 1 + repeats
        first = stage[0]
        assert first.expand.conv.in_channels == cin and not first.residual
        assert first.depthwise.conv.groups == groups and first.depthwise.conv.stride == (2, 2)
        assert first.project.conv.out_channels == cout
        for block in stage[1:]:
            assert block.residual and block.depthwise.conv.groups == residual_groups
    assert model.layer4[-1].conv.kernel_size == (1, 1) and model.layer4[-1].conv.out_channels == 512
    assert model.gdc.conv.kernel_size == (2, 2) and model.gdc.conv.groups == 512  # 32 / 16 = 2
    with torch.no_grad():
        shapes = {k: tuple(v.shape) for k, v in model.forward_features(torch.randn(2, 3, 32, 32))
                  .items()}
    assert shapes == {
        "stem": (2, 64, 16, 16), "layer1": (2, 64, 16, 16), "layer2": (2, 64, 8, 8),
        "layer3": (2, 128, 4, 4), "layer4": (2, 512, 2, 2), "pooled": (2, 512),
        "embedding": (2, 512),
    }
    assert model.stage_channels == [64, 64, 128, 512]


def test_insightface_variant_doubles_channels_and_keeps_64_stem_groups():
    with torch.device("meta"):
        model = create_model("mobilefacenet")
    assert model.stage_channels == [128, 128, 256, 512]
    assert model.layer1.conv.groups == 64  # two channels per group
    assert model.layer2[0].depthwise.conv.groups == 128  # expansions are not scaled
    assert model.layer4[0].depthwise.conv.groups == 512


def test_stages_align_spatially_with_iresnet():
    x = torch.randn(1, 3, 32, 32)
    teacher = create_model("iresnet18", input_size=32, width=0.125).eval()
    student = create_model("mobilefacenet", input_size=32, width=0.125).eval()
    with torch.no_grad():
        t_maps, s_maps = teacher.forward_features(x), student.forward_features(x)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        assert t_maps[name].shape[-2:] == s_maps[name].shape[-2:]


def test_bottleneck_matches_a_hand_written_forward():
    torch.manual_seed(1)
    block = DepthwiseBottleneck(6, 6, expanded_channels=12, residual=True)
    for module in block.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
    block.eval()
    x = torch.randn(2, 6, 5, 5)

    def unit(t, layer, **conv_args):
        out = F.conv2d(t, layer.conv.weight, **conv_args)
        out = F.batch_norm(out, layer.bn.running_mean, layer.bn.running_var, layer.bn.weight,
                           layer.bn.bias, eps=1e-5)
        return F.prelu(out, layer.act.weight) if isinstance(layer.act, torch.nn.PReLU) else out

    out = unit(x, block.expand)
    out = unit(out, block.depthwise, padding=1, groups=12)
    out = unit(out, block.project)  # linear bottleneck: no activation
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + out)


def test_residual_bottleneck_refuses_a_shape_change():
    with pytest.raises(ConfigError, match="residual"):
        DepthwiseBottleneck(8, 16, expanded_channels=16, residual=True)


def test_embedding_head_is_linear_without_bias_and_trainable_bn():
    model = create_model("mobilefacenet_thesis", input_size=16, width=0.125, embedding_size=8,
                         dropout=0.2)
    assert model.head.fc.bias is None
    assert model.head.bn.weight.requires_grad
    assert model.head.dropout.p == 0.2


def test_wrong_input_size_is_reported():
    model = create_model("mobilefacenet", input_size=16, width=0.125).eval()
    with pytest.raises(ConfigError, match=r"built for inputs of shape \(batch, 3, 16, 16\)"):
        model(torch.randn(1, 3, 112, 112))
