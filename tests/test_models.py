import re

import pytest
import torch
from torch import nn

from resbench.models import ConvBN, build_model, parse_model_name, plain, resnet
from resbench.models.blocks import BasicBlock, Bottleneck


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def projection_params(model: nn.Module, everywhere: bool) -> int:
    """Parameters a 1x1 conv + BN projection adds where dimensions grow (B) or everywhere (C)."""
    total = 0
    for block in model.modules():
        if isinstance(block, (BasicBlock, Bottleneck)):
            conv_in = block.conv1[0]
            last = block.conv3 if isinstance(block, Bottleneck) else block.conv2
            in_ch, out_ch = conv_in.in_channels, last[0].out_channels
            if everywhere or in_ch != out_ch or conv_in.stride != (1, 1) or block.conv2[0].stride != (1, 1):
                total += in_ch * out_ch + 2 * out_ch
    return total


@pytest.mark.parametrize("depth, exact", [(20, 269_722), (32, 464_154), (44, 658_586),
                                          (56, 853_018), (110, 1_727_962)])
def test_cifar_parameter_counts(depth, exact):
    assert n_params(resnet(depth)) == exact


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_option_a_resnet_and_plain_twin_have_identical_parameters(depth):
    res, pl = resnet(depth), plain(depth)
    assert [p.shape for p in res.parameters()] == [p.shape for p in pl.parameters()]


@pytest.mark.parametrize("name, base", [("resnet20_B", "resnet20"), ("resnet34_B", "resnet34")])
def test_option_b_adds_exactly_the_projections(name, base):
    assert n_params(build_model(name)) - n_params(build_model(base)) == projection_params(build_model(base), False)


@pytest.mark.parametrize("name, base", [("resnet20_C", "resnet20"), ("resnet34_C", "resnet34")])
def test_option_c_projects_every_shortcut(name, base):
    assert n_params(build_model(name)) - n_params(build_model(base)) == projection_params(build_model(base), True)


@pytest.mark.parametrize("name", ["resnet20", "plain56", "resnet20_B", "cifar_resnet50"])
def test_cifar_output_shape(name):
    assert build_model(name)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet18", "plain34", "resnet50", "resnet50_v1.5", "resnet34_C"])
def test_imagenet_output_shape(name):
    with torch.no_grad():
        assert build_model(name).eval()(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_v1_strides_the_first_1x1_and_v15_the_3x3():
    v1 = build_model("resnet50").blocks[3]  # conv3_1, the first downsampling block
    v15 = build_model("resnet50_v1.5").blocks[3]
    assert v1.conv1[0].stride == (2, 2) and v1.conv2[0].stride == (1, 1)
    assert v15.conv1[0].stride == (1, 1) and v15.conv2[0].stride == (2, 2)


def test_option_a_zero_pads_and_subsamples():
    block = resnet(20).blocks[3]  # first block of the 32-filter stage
    x = torch.randn(1, 16, 32, 32)
    out = block.shortcut(x)
    assert out.shape == (1, 32, 16, 16)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and not out[:, 16:].any()


def test_paper_defaults_for_shortcuts():
    assert parse_model_name("resnet56").shortcut == "A"
    assert parse_model_name("resnet34").shortcut == "A"
    assert parse_model_name("resnet50").shortcut == "B"
    assert parse_model_name("plain20").shortcut is None
    assert parse_model_name("resnet152").dataset == "imagenet"
    assert parse_model_name("cifar_resnet152").dataset == "cifar"


def test_he_init_and_no_tricks_by_default():
    model = resnet(20)
    conv = model.blocks[0].conv1[0]
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.2)
    assert all(m[1].weight.eq(1).all() for m in model.modules() if isinstance(m, ConvBN))
    zeroed = resnet(20, zero_init_last_bn=True)
    assert not zeroed.blocks[0].conv2[1].weight.any()


@pytest.mark.parametrize("name", ["resnet21", "plain19", "resnet4", "resnet_56", "resnet18_v1.5",
                                  "plain20_B", "vgg11", "imagenet_resnet20", "alexnet"])
def test_bad_names_fail_clearly(name):
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        build_model(name)


def test_invalid_depth_message_says_6n_plus_2():
    with pytest.raises(ValueError, match=r"6n\+2"):
        resnet(21)
