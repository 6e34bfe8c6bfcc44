"""VarGFaceNet and its blocks against the paper's sizes, closed forms and hand computations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fkdlib.errors import ConfigError
from fkdlib.evaluation.complexity import count_flops, count_parameters
from fkdlib.models import create_model
from fkdlib.models.layers import (
    SqueezeExcitation,
    VarGConv,
    VarGDownBlock,
    VarGNormalBlock,
    VarGSeparable,
    scale_channels,
)
from fkdlib.models.vargfacenet import VarGFaceNet

# VarGFaceNet paper (Yan et al., ICCVW 2019) at 112x112, 512-d (Table 1).
PAPER_PARAMS_M = {True: 5.20, False: 4.96}  # with / without SE
PAPER_GFLOPS = 1.02  # 0.51 G multiply-adds, counting 2 FLOPs per multiply-add


def closed_form_counts(input_size, width=1.0, embedding=512, group_size=8, use_se=True,
                       units=(3, 7, 4)):
    """Parameters and conv/linear MACs of VarGFaceNet, written out from its description."""
    params = macs = 0

    def sep(cin, cout, res_out, expansion=2, pointwise_act=True):
        nonlocal params, macs
        mid = cin * expansion
        # 3x3 group conv: each of the `mid` filters sees `group_size` input channels.
        params += 9 * group_size * mid + 3 * mid + mid * cout + 2 * cout
        params += cout if pointwise_act else 0
        macs += (9 * group_size * mid + mid * cout) * res_out**2

    def se(c):
        nonlocal params, macs
        q = c // 4
        params += c * q + q + q + q * c + c  # conv + bias, PReLU, conv + bias
        macs += 2 * c * q

    def normal(cin, cout, res_out, expansion=2, projected=False):
        nonlocal params
        sep(cin, cout, res_out, expansion)
        sep(cout, cout, res_out, expansion, pointwise_act=False)
        if use_se:
            se(cout)
        if projected:
            sep(cin, cout, res_out, expansion, pointwise_act=False)
        params += cout

    def down(cin, cout, res_out):
        nonlocal params
        for _ in range(3):  # two branches and the shortcut
            sep(cin, cout, res_out, pointwise_act=False)
        sep(cout, cout, res_out, pointwise_act=False)
        params += 2 * cout

    c0, c1, c2, c3 = (scale_channels(c, width) for c in (40, 80, 160, 320))
    expanded, reduced = scale_channels(1024, width), scale_channels(512, width)
    r = input_size
    params += 3 * 9 * c0 + 3 * c0
    macs += 3 * 9 * c0 * r**2
    r //= 2
    normal(c0, c0, r, expansion=1, projected=True)
    for cin, cout, stage_units in zip((c0, c1, c2), (c1, c2, c3), units):
        r //= 2
        down(cin, cout, r)
        for _ in range(stage_units - 1):
            normal(cout, cout, r)
    params += c3 * expanded + 3 * expanded
    macs += c3 * expanded * r**2
    params += expanded * group_size * r * r + 2 * expanded  # group conv over the r x r map
    macs += expanded * group_size * r * r
    params += expanded * reduced + 3 * reduced
    macs += expanded * reduced
    params += reduced * embedding + embedding + 2 * embedding  # FC with bias, BN1d
    macs += reduced * embedding
    return params, macs


def randomise_norms(module):
    """Non-trivial BatchNorm statistics and PReLU slopes, so hand computations can disagree."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.normal_()
            layer.running_var.uniform_(0.5, 2.0)
            layer.weight.data.normal_()
            layer.bias.data.normal_()
        elif isinstance(layer, torch.nn.PReLU):
            layer.weight.data.uniform_(-0.5, 0.5)
    return module.eval()


def bn(layer, t):
    return F.batch_norm(t, layer.running_mean, layer.running_var, layer.weight, layer.bias,
                        eps=layer.eps)


def sep_by_hand(unit, x, stride):
    groups = x.shape[1] // unit.group_conv.group_size
    out = F.conv2d(x, unit.group_conv.weight, stride=stride, padding=1, groups=groups)
    out = F.prelu(bn(unit.group_bn, out), unit.group_act.weight)
    out = bn(unit.pointwise.bn, F.conv2d(out, unit.pointwise.conv.weight))
    if isinstance(unit.pointwise.act, torch.nn.PReLU):
        out = F.prelu(out, unit.pointwise.act.weight)
    return out


@pytest.mark.parametrize("use_se", [True, False])
def test_size_and_cost_at_112_match_the_paper(use_se):
    with torch.device("meta"):
        model = create_model("vargfacenet", use_se=use_se)
    report = count_flops(model, 112)
    assert report.params / 1e6 == pytest.approx(PAPER_PARAMS_M[use_se], rel=0.01)
    if use_se:
        assert report.gflops == pytest.approx(PAPER_GFLOPS, rel=0.01)
    assert (report.params, report.macs) == closed_form_counts(112, use_se=use_se)


@pytest.mark.parametrize(
    "input_size, width, embedding, group_size, use_se",
    [(32, 0.25, 64, 8, True), (48, 0.5, 128, 1, False), (16, 0.125, 32, 4, True)],
)
def test_counts_follow_the_closed_form_for_other_sizes_widths_and_groups(
    input_size, width, embedding, group_size, use_se
):
    with torch.device("meta"):
        model = create_model("vargfacenet", input_size=input_size, width=width,
                             embedding_size=embedding, group_size=group_size, use_se=use_se)
    report = count_flops(model, input_size)
    assert (report.params, report.macs) == closed_form_counts(
        input_size, width, embedding, group_size, use_se
    )


def test_depthwise_variant_has_fewer_flops_and_parameters():
    with torch.device("meta"):
        varg = create_model("vargfacenet")
        depthwise = create_model("vargfacenet_dw")
        explicit = create_model("vargfacenet", group_size=1)
    varg_report, dw_report = count_flops(varg, 112), count_flops(depthwise, 112)
    assert dw_report.macs < varg_report.macs and dw_report.params < varg_report.params
    assert (dw_report.params, dw_report.macs) == closed_form_counts(112, group_size=1)
    assert count_parameters(explicit) == dw_report.params
    assert depthwise.group_size == 1
    assert all(m.groups == m.in_channels for m in depthwise.modules()
               if isinstance(m, VarGConv))


@pytest.mark.parametrize("group_size", [8, 1])
def test_every_variable_group_conv_has_input_channels_over_s_groups(group_size):
    with torch.device("meta"):
        model = create_model("vargfacenet", group_size=group_size)
    convs = [m for m in model.modules() if isinstance(m, VarGConv)]
    # head block: 3 units; stages: 4 per down block + 2 per normal block; embedding: 1.
    assert len(convs) == 3 + (4 + 2 * 2) + (4 + 6 * 2) + (4 + 3 * 2) + 1
    assert all(m.groups * group_size == m.in_channels for m in convs)
    if group_size == 8:
        # Head block on 40 channels: 5 groups; stage 3's down block reads 160 channels: 20
        # groups; the embedding's 7x7 conv: 1024 / 8 = 128 groups (the paper's Fig. 1).
        assert model.layer1.sep1.group_conv.groups == 5
        assert model.layer4[0].branch1.group_conv.groups == 20
        assert model.embed_group_conv.groups == 128
        assert model.embed_group_conv.kernel_size == (7, 7)


def test_published_layout_channels_units_and_se_placement():
    with torch.device("meta"):
        model = create_model("vargfacenet")
    assert model.stage_channels == [40, 80, 160, 320]
    assert model.stem.conv.kernel_size == (3, 3) and model.stem.conv.stride == (1, 1)
    # The head's normal block keeps 40 channels inside its units (the authors' factor=1) and
    # projects its shortcut because it has stride 2.
    head = model.layer1
    assert head.sep1.group_conv.out_channels == 40 and head.sep1.group_conv.stride == (2, 2)
    assert isinstance(head.shortcut, VarGSeparable) and head.se.reduce.out_channels == 10
    for stage, units, channels in ((model.layer2, 3, 80), (model.layer3, 7, 160),
                                   (model.layer4, 4, 320)):
        assert len(stage) == units and isinstance(stage[0], VarGDownBlock)
        assert not any(isinstance(m, SqueezeExcitation) for m in stage[0].modules())
        for block in stage[1:]:
            assert isinstance(block, VarGNormalBlock)
            assert isinstance(block.shortcut, torch.nn.Identity)
            assert block.sep1.group_conv.out_channels == 2 * channels  # C -> 2C
            assert block.se.reduce.out_channels == channels // 4       # SE reduction 4
    assert model.embed_expand.conv.out_channels == 1024
    assert model.embed_reduce.conv.out_channels == 512
    assert model.head.fc.in_features == 512
    assert not any(isinstance(m, SqueezeExcitation)
                   for m in create_model("vargfacenet", input_size=16, use_se=False).modules())


@pytest.mark.parametrize(
    "input_size, width, channels, expanded, embedding",
    [(16, 0.25, [8, 24, 40, 80], 256, 32), (32, 0.5, [24, 40, 80, 160], 512, 64),
     (48, 0.125, [8, 8, 24, 40], 128, 16)],
)
def test_forward_features_names_shapes_and_resolutions(input_size, width, channels, expanded,
                                                       embedding):
    torch.manual_seed(0)
    model = create_model("vargfacenet", input_size=input_size, width=width,
                         embedding_size=embedding).eval()
    assert model.stage_channels == channels
    assert model.input_size == input_size and model.embedding_size == embedding
    final = input_size // 16
    assert model.embed_group_conv.kernel_size == (final, final)
    assert model.embed_group_conv.groups == expanded // 8
    x = torch.randn(2, 3, input_size, input_size)
    with torch.no_grad():
        features = model.forward_features(x)
        embedding_out = model(x)
    s = input_size
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "stem": (2, channels[0], s, s),
        "layer1": (2, channels[0], s // 2, s // 2),
        "layer2": (2, channels[1], s // 4, s // 4),
        "layer3": (2, channels[2], s // 8, s // 8),
        "layer4": (2, channels[3], s // 16, s // 16),
        "pooled": (2, expanded // 2),
        "embedding": (2, embedding),
    }
    torch.testing.assert_close(embedding_out, features["embedding"])


def test_embedding_path_matches_a_hand_written_computation():
    torch.manual_seed(1)
    model = randomise_norms(create_model("vargfacenet", input_size=32, width=0.125,
                                         embedding_size=16))
    model.head.bn.running_mean.normal_()
    model.head.bn.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        features = model.forward_features(torch.randn(3, 3, 32, 32))
        expand, reduce = model.embed_expand, model.embed_reduce
        out = F.prelu(bn(expand.bn, F.conv2d(features["layer4"], expand.conv.weight)),
                      expand.act.weight)
        # 2x2 final map, groups of 8 channels: a (128, 8, 2, 2) kernel and 16 groups.
        out = bn(model.embed_group_bn, F.conv2d(out, model.embed_group_conv.weight,
                                                 groups=128 // 8))
        assert out.shape[-2:] == (1, 1)
        pooled = F.prelu(bn(reduce.bn, F.conv2d(out, reduce.conv.weight)), reduce.act.weight)
        pooled = pooled.flatten(1)
        head = model.head
        embedding = F.batch_norm(F.linear(pooled, head.fc.weight, head.fc.bias),
                                 head.bn.running_mean, head.bn.running_var, head.bn.weight,
                                 head.bn.bias, eps=head.bn.eps)
    torch.testing.assert_close(features["pooled"], pooled)
    torch.testing.assert_close(features["embedding"], embedding)


def test_squeeze_excitation_equals_an_independent_numpy_computation():
    torch.manual_seed(2)
    se = SqueezeExcitation(8)
    se.act.weight.data.uniform_(-0.5, 0.5)
    x = torch.randn(2, 8, 3, 4)
    with torch.no_grad():
        out = se(x).numpy()
    xs = x.numpy().astype(np.float64)
    w1 = se.reduce.weight.detach().numpy()[:, :, 0, 0]
    b1 = se.reduce.bias.detach().numpy()
    w2 = se.expand.weight.detach().numpy()[:, :, 0, 0]
    b2 = se.expand.bias.detach().numpy()
    slope = se.act.weight.detach().numpy()
    squeezed = xs.mean(axis=(2, 3)) @ w1.T + b1                   # (2, 2): 8 / 4 channels
    squeezed = np.where(squeezed > 0, squeezed, slope * squeezed)  # per-channel PReLU
    gate = 1.0 / (1.0 + np.exp(-(squeezed @ w2.T + b2)))           # (2, 8)
    np.testing.assert_allclose(out, xs * gate[:, :, None, None], rtol=1e-5, atol=1e-6)
    assert w1.shape == (2, 8) and slope.shape == (2,)


def test_variable_group_conv_equals_per_group_convolutions():
    torch.manual_seed(3)
    conv = VarGConv(16, 32, 3, stride=2, group_size=8)
    assert conv.groups == 2 and conv.bias is None and conv.padding == (1, 1)
    x = torch.randn(1, 16, 7, 7)
    # Group g maps input channels [8g, 8g + 8) to output channels [16g, 16g + 16).
    parts = [F.conv2d(x[:, 8 * g:8 * g + 8], conv.weight[16 * g:16 * g + 16], stride=2,
                      padding=1) for g in range(2)]
    with torch.no_grad():
        torch.testing.assert_close(conv(x), torch.cat(parts, 1))
    assert VarGConv(16, 16, group_size=1).groups == 16  # S = 1: depthwise


@pytest.mark.parametrize("stride, cin, cout", [(1, 16, 16), (2, 8, 16)])
def test_normal_block_matches_a_hand_written_forward(stride, cin, cout):
    torch.manual_seed(4)
    block = randomise_norms(VarGNormalBlock(cin, cout, stride=stride))
    x = torch.randn(2, cin, 6, 6)
    with torch.no_grad():
        body = sep_by_hand(block.sep2, sep_by_hand(block.sep1, x, stride), 1)
        body = block.se(body)  # checked on its own above
        shortcut = x if stride == 1 else sep_by_hand(block.shortcut, x, stride)
        expected = F.prelu(body + shortcut, block.act.weight)
        torch.testing.assert_close(block(x), expected)
    assert not isinstance(block.sep2.pointwise.act, torch.nn.PReLU)  # pointwise stays linear
    assert isinstance(block.sep1.pointwise.act, torch.nn.PReLU)


def test_down_block_matches_a_hand_written_forward():
    torch.manual_seed(5)
    block = randomise_norms(VarGDownBlock(8, 16))
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        merged = sep_by_hand(block.branch1, x, 2) + sep_by_hand(block.branch2, x, 2)
        merged = F.prelu(merged, block.merge_act.weight)
        expected = F.prelu(sep_by_hand(block.sep, merged, 1) + sep_by_hand(block.shortcut, x, 2),
                           block.act.weight)
        torch.testing.assert_close(block(x), expected)
    assert expected.shape == (2, 16, 3, 3)


def test_every_parameter_receives_a_gradient():
    torch.manual_seed(6)
    model = create_model("vargfacenet", input_size=16, width=0.125, embedding_size=8,
                         dropout=0.2).train()
    assert model.head.dropout.p == 0.2
    model(torch.randn(4, 3, 16, 16)).pow(2).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


@pytest.mark.parametrize("input_size", [0, 8, 20, 113, 112.0, True])
def test_input_size_must_be_a_multiple_of_16(input_size):
    with pytest.raises(ConfigError, match="multiple of 16"):
        create_model("vargfacenet", input_size=input_size)


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (1, 1, 16, 16), (3, 16, 16)])
def test_wrong_input_shape_says_what_the_model_was_built_for(shape):
    model = create_model("vargfacenet", input_size=16, width=0.125).eval()
    with pytest.raises(ConfigError) as excinfo:
        model(torch.randn(*shape))
    assert "(batch, 3, 16, 16)" in str(excinfo.value) and str(tuple(shape)) in str(excinfo.value)


def test_indivisible_channels_are_refused_with_a_clear_message():
    with pytest.raises(ConfigError) as excinfo:
        VarGConv(12, 24, group_size=8)
    message = str(excinfo.value)
    assert "group_size=8" in message and "12" in message and "multiple of 8" in message
    with pytest.raises(ConfigError, match="output channel count divisible by 2"):
        VarGConv(16, 15, group_size=8)
    with pytest.raises(ConfigError) as excinfo:
        create_model("vargfacenet", group_size=16)
    message = str(excinfo.value)
    assert "group_size=16" in message and "[40, 80, 160, 320, 1024]" in message
    assert "does not divide [40]" in message  # 80, 160, 320 and 1024 are multiples of 16
    with pytest.raises(ConfigError, match="group_size must be a positive integer"):
        create_model("vargfacenet", group_size=0)
    with pytest.raises(ConfigError, match="squeeze to 0 channels"):
        SqueezeExcitation(3)
    with pytest.raises(ConfigError, match="it accepts: input_size"):
        create_model("vargfacenet_dw", group_size=8)



def test_stage_units_option_changes_depth_and_is_validated():
    with torch.device("meta"):
        model = VarGFaceNet(input_size=32, width=0.25, stage_units=(1, 2, 1))
    assert [len(model.layer2), len(model.layer3), len(model.layer4)] == [1, 2, 1]
    report = count_flops(model, 32)
    assert (report.params, report.macs) == closed_form_counts(32, 0.25, units=(1, 2, 1))
    with pytest.raises(ConfigError, match=r"stage_units needs 3 counts"):
        VarGFaceNet(input_size=16, stage_units=(3, 7))
    with pytest.raises(ConfigError, match="each stage_units count must be a positive integer"):
        VarGFaceNet(input_size=16, stage_units=(3, 0, 4))
