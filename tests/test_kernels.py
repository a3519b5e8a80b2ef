"""Each optimised kernel and fused block vs the plain-loop reference in csrc/ref, over odd shapes.

The checks run in C++ (csrc/tests/checks.cpp, through the test-only module pyfer._checks): random
data, optimised kernel for the given ISA, reference op, return max |opt - ref| / max(1, |ref|).
Every map a kernel writes is guarded (sentinels in its border, its pixels' other channels and the
buffer's slack): a write outside it raises RuntimeError naming the map and how many floats it hit.
pyfer._checks is built with PYFER_BUILD_TESTS (cmake, editable installs), never into a wheel: there
this file skips, and the C++ self-test and the golden tests cover the shipped kernels.
"""
from __future__ import annotations


import pytest

_engine = pytest.importorskip("pyfer._engine")
T = pytest.importorskip("pyfer._checks", reason="the test-only module pyfer._checks is not built here (a wheel, "
                                                "or PYFER_BUILD_TESTS=OFF): kernel checks need a dev build")
TOL = 1e-4

from conftest import isa_params  # noqa: E402


@pytest.fixture(params=isa_params(_engine.build_info()))
def isa(request):
    return request.param


@pytest.mark.parametrize("n,h,w", [(1, 1, 1), (1, 5, 3), (7, 4, 4), (1, 9, 8)])
@pytest.mark.parametrize("k,stride", [(1, 1), (1, 2), (3, 1), (3, 2), (7, 2)])
@pytest.mark.parametrize("cin,cout", [(1, 24), (3, 17), (29, 58), (58, 33)])
def test_conv(isa, n, h, w, k, stride, cin, cout):
    err = T.conv(isa, n, h, w, cin, cout, k, stride, True, "plain", seed=n * 31 + cin)
    assert err <= TOL, err


def test_conv_kernel_sizes_up_to_the_driver_s_table(isa):
    """The conv driver keeps a tap offset per kernel position in a fixed table (k*k <= 64): 8x8
    computes right, 9x9 is refused when the weights are packed (it wrote past the table)."""
    assert T.conv(isa, 1, 9, 9, 3, 5, 8, 1, True, "plain", seed=8) <= TOL
    with pytest.raises(ValueError, match="9x9: the engine takes 1x1 to 8x8"):
        T.conv(isa, 1, 9, 9, 3, 5, 9, 1, True, "plain", seed=9)


@pytest.mark.parametrize("mode", ["plain", "res", "acc", "out2", "pool", "shuf"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("n,h,cin,cout,k,s", [(1, 1, 5, 7, 3, 1), (7, 5, 13, 21, 3, 1), (2, 6, 9, 16, 1, 2)])
def test_conv_epilogues(isa, mode, relu, n, h, cin, cout, k, s):
    err = T.conv(isa, n, h, h, cin, cout, k, s, relu, mode, seed=3)
    assert err <= TOL, (mode, err)


# small 1x1 convs with a plain epilogue (YuNet's pointwise convs) take a row-tile path in the AVX2
# backend: full 16-channel panels, weights up to 8192 floats ((128, 64) is the last size that takes
# it, (129, 64) the generic driver, as does a partial panel: (16, 24)), widths leaving every
# remainder of the 6-pixel tile, both with and without ReLU
@pytest.mark.parametrize("n,h,w", [(1, 1, 1), (2, 3, 7), (1, 5, 11), (3, 2, 6), (1, 2, 16), (1, 1, 9), (2, 1, 8)])
@pytest.mark.parametrize("cin,cout", [(3, 16), (16, 16), (16, 32), (64, 64), (64, 16), (17, 48), (128, 64),
                                      (129, 64), (16, 24)])
@pytest.mark.parametrize("relu", [False, True])
def test_conv_1x1_small(isa, n, h, w, cin, cout, relu):
    err = T.conv(isa, n, h, w, cin, cout, 1, 1, relu, "plain", seed=n * 13 + cin)
    assert err <= TOL, err
    # and exactly the generic driver's sums (its accumulating store onto zeros)
    assert T.conv(isa, n, h, w, cin, cout, 1, 1, relu, "vs_driver", seed=n * 13 + cin) == 0.0


# the zero-skipping 1x1 conv (pw1 of every unit, conv5): channel counts across the mask-word
# (64) and block (12 vectors) boundaries, all-zero and dense inputs, 1x1 maps, batch 1 and 7
@pytest.mark.parametrize("n,h,w", [(1, 1, 1), (7, 3, 5), (1, 8, 8), (2, 4, 4)])
@pytest.mark.parametrize("cin,cout", [(1, 3), (13, 58), (58, 58), (64, 17), (65, 100), (116, 116), (232, 232),
                                      (464, 1024)])
@pytest.mark.parametrize("zero_frac", [0.0, 0.5, 1.0])
def test_conv_skip0(isa, n, h, w, cin, cout, zero_frac):
    seed = n * 7 + cin
    assert T.conv_skip0(isa, n, h, w, cin, cout, zero_frac, "plain", seed) <= TOL
    assert T.conv_skip0(isa, n, h, w, cin, cout, zero_frac, "pool", seed) <= TOL
    # skipping exact zeros leaves the dense kernel's sums unchanged, bit for bit
    assert T.conv_skip0(isa, n, h, w, cin, cout, zero_frac, "dense", seed) == 0.0


# without ReLU (a stride-1 1x1 shortcut reading a block's output: its epilogue has none)
@pytest.mark.parametrize("n,h,w", [(1, 1, 1), (7, 3, 5)])
@pytest.mark.parametrize("cin,cout", [(13, 58), (65, 100), (232, 232)])
def test_conv_skip0_no_relu(isa, n, h, w, cin, cout):
    for mode in ("plain", "pool"):
        assert T.conv_skip0(isa, n, h, w, cin, cout, 0.5, mode, seed=cin, relu=False) <= TOL, mode
    assert T.conv_skip0(isa, n, h, w, cin, cout, 0.5, "dense", seed=cin, relu=False) == 0.0


@pytest.mark.parametrize("cin,cout", [(58, 58), (464, 1024)])
def test_conv_skip0_propagates_nan(isa, cin, cout):
    assert T.conv_skip0(isa, 2, 3, 3, cin, cout, 0.5, "nan", 1) == 0.0


# output widths >= 12 take the AVX2 kernel's 6-pixel steps (then quads, a pair, a single): 11
# (below the limit) and widths leaving remainders 0-5 after the sixes, at stride 1 and 2
@pytest.mark.parametrize("n,h,w", [(1, 1, 1), (7, 5, 3), (1, 8, 9), (2, 2, 2), (1, 3, 11), (1, 3, 12), (1, 3, 13),
                                   (2, 2, 15), (1, 2, 17), (2, 4, 25), (1, 2, 23), (1, 2, 29), (1, 2, 33), (1, 2, 40)])
@pytest.mark.parametrize("c", [1, 7, 8, 13, 16, 32, 58, 64, 116])  # 16, 32, 64: no channel tail on any set
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("relu", [False, True])
def test_dw3x3(isa, n, h, w, c, stride, relu):
    assert T.dw3x3(isa, n, h, w, c, stride, relu, seed=c) <= TOL


# Channel slices: the ops the engine runs on a channel slice of a wider map (FFE's groups Y.ch(i*w)
# written and X.ch(i*w) read by its 3x3 convs, direct or Winograd; a shuffle unit's pw1 on
# in.ch(half), its shuffle store's source, its buffers P / D / B1 with a pixel stride rounded up to
# 8). In slice mode every map of the check is a slice of a wider map whose other channels, border
# and slack hold a sentinel: a write outside the slice fails the check (RuntimeError naming the map
# and the count), an over-read that leaks into the result shows as an error. Channel counts leave
# tails of every length for 8 and 16 lanes and none: 1-17, 31 (a full vector plus a tail), 32.
SLICE_CHANNELS = list(range(1, 18)) + [31, 32]


@pytest.mark.parametrize("c", SLICE_CHANNELS)
@pytest.mark.parametrize("mode", ["plain", "acc", "out2", "shuf", "res", "wino_plain", "wino_acc", "wino_out2"])
def test_conv_slice(isa, c, mode):
    # 1x1 (the AVX-512 small-1x1 row path, plain mode) and 3x3 (the driver); 7 columns: a partial
    # tile of pixels on every backend; cin = c too (the Winograd input transform's tail)
    for k in ((3,) if mode.startswith("wino") else (1, 3)):
        err = T.conv(isa, 2, 7, 7, c, c, k, 1, True, mode, seed=c, slice=True)
        assert err <= TOL, (k, err)


@pytest.mark.parametrize("c", SLICE_CHANNELS)
def test_conv_skip0_slice(isa, c):
    for relu in (False, True):
        assert T.conv_skip0(isa, 2, 3, 5, c, c, 0.5, "plain", seed=c, relu=relu, slice=True) <= TOL, relu
        assert T.conv_skip0(isa, 2, 3, 5, c, c, 0.5, "dense", seed=c, relu=relu, slice=True) == 0.0, relu


@pytest.mark.parametrize("c", SLICE_CHANNELS)
@pytest.mark.parametrize("stride", [1, 2])
def test_dw3x3_slice(isa, c, stride):
    # output widths 13 and 25 at stride 1, 7 and 13 at stride 2: the AVX2 six-pixel steps, then a
    # quad, a pair and a single (the last pixel of a row, whose tail store is next to the border)
    for w in (13, 25):
        assert T.dw3x3(isa, 2, 3, w, c, stride, stride == 1, seed=c, slice=True) <= TOL, w


@pytest.mark.parametrize("n,h,w,c", [(1, 1, 1, 3), (7, 5, 7, 24), (1, 8, 8, 13), (2, 64, 64, 24), (1, 2, 3, 64),
                                     (8, 5, 7, 24)])
def test_pools(isa, n, h, w, c):
    assert T.maxpool(isa, n, h, w, c) <= TOL
    assert T.avgpool(isa, n, h, w, c) <= TOL


# every channel tail after full vectors: 1-15 after none, 1-15 after one 16-wide block (17, 25,
# 31: the AVX-512 pools' masked tail behind a whole vector), 7 and 1 after two and four
@pytest.mark.parametrize("c", [*range(1, 18), 25, 31, 32, 39, 65])
def test_pool_and_upsample_channel_tails(isa, c):
    assert T.maxpool(isa, 2, 5, 7, c, seed=c) <= TOL
    assert T.avgpool(isa, 2, 5, 7, c, seed=c) <= TOL
    assert T.maxpool2s2(isa, 2, 5, 7, c, seed=c) <= TOL
    assert T.upsample2_add(isa, 2, 5, 7, c, seed=c) <= TOL


# YuNet's 2x2/2 max pool and its feature pyramid's upsample + add: odd sides (the last row and
# column of an odd map are dropped by the pool, half-covered by the upsampling), channel tails
@pytest.mark.parametrize("n,h,w", [(1, 1, 1), (1, 2, 2), (2, 5, 7), (1, 8, 9), (3, 16, 10)])
@pytest.mark.parametrize("c", [1, 3, 8, 13, 16, 64])
def test_yunet_pool_and_upsample(isa, n, h, w, c):
    if h >= 2 and w >= 2:
        assert T.maxpool2s2(isa, n, h, w, c, seed=c) <= TOL
    assert T.upsample2_add(isa, n, h, w, c, seed=c + 1) <= TOL


@pytest.mark.parametrize("n,i,o", [(1, 1, 2), (7, 1024, 8), (1, 17, 3), (3, 512, 7), (8, 464, 7)])
def test_linear(isa, n, i, o):
    assert T.linear(isa, n, i, o) <= TOL


# a full group (8 images, the engine's group size) in one call (n0 = 0), and split into [0, n0) and
# [n0, 8): the second call has n0 > 0, as the engine's per-image calls (shuffle units, stem, pw1 on
# the zero-skipping kernel); pool rows are indexed by the image's own n (kernels.hpp, Epilogue)
@pytest.mark.parametrize("n0", [0, 1, 7])
def test_kernels_on_a_group_of_8(isa, n0):
    for mode in ("plain", "res", "acc", "out2", "pool", "shuf"):
        assert T.conv(isa, 8, 5, 4, 13, 21, 3, 1, True, mode, seed=n0, n0=n0) <= TOL, ("conv 3x3", mode)
        assert T.conv(isa, 8, 3, 5, 40, 24, 1, 1, True, mode, seed=n0, n0=n0) <= TOL, ("conv 1x1", mode)
    for relu in (False, True):
        for mode in ("plain", "pool"):
            assert T.conv_skip0(isa, 8, 3, 5, 65, 100, 0.5, mode, seed=n0, relu=relu, n0=n0) <= TOL, (mode, relu)
        assert T.conv_skip0(isa, 8, 3, 5, 65, 100, 0.5, "dense", seed=n0, relu=relu, n0=n0) == 0.0
    for c in (13, 32):
        assert T.dw3x3(isa, 8, 7, 6, c, 1, True, seed=c, n0=n0) <= TOL
        assert T.dw3x3(isa, 8, 7, 6, c, 2, False, seed=c, n0=n0) <= TOL
        assert T.maxpool(isa, 8, 7, 9, c, seed=c, n0=n0) <= TOL
        assert T.maxpool2s2(isa, 8, 7, 9, c, seed=c, n0=n0) <= TOL
        assert T.upsample2_add(isa, 8, 7, 9, c, seed=c, n0=n0) <= TOL


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("h,cin,cout", [(1, 24, 116), (9, 24, 116), (8, 116, 232), (3, 15, 18)])
def test_shuffle_down_unit(isa, n, h, cin, cout):
    assert T.block(isa, "shuffle_down", n, h, cin, cout, 2) <= TOL


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("h,c", [(1, 116), (4, 464), (5, 58), (16, 116), (7, 18)])
def test_shuffle_basic_unit(isa, n, h, c):
    assert T.block(isa, "shuffle_basic", n, h, c, c, 1) <= TOL


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("h,cin,cout,s", [(1, 12, 12, 1), (5, 36, 36, 1), (4, 20, 36, 2), (3, 28, 28, 1)])
def test_ffe_block(isa, n, h, cin, cout, s):
    assert T.block(isa, "ffe", n, h, cin, cout, s) <= TOL


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("h,cin,cout,s", [(1, 16, 16, 1), (7, 16, 32, 2), (5, 13, 13, 1), (2, 8, 24, 2)])
def test_basic_block(isa, n, h, cin, cout, s):
    assert T.block(isa, "basic", n, h, cin, cout, s) <= TOL


@pytest.mark.parametrize("n,size,cin,cout,k,s", [
    (1, 64, 1, 24, 3, 1), (7, 48, 1, 24, 3, 2), (1, 9, 3, 64, 7, 2), (2, 33, 1, 64, 3, 1), (1, 8, 1, 5, 7, 2),
])
@pytest.mark.parametrize("seed", [0, 1, 2])  # seed % 3: 0 im2col + 1x1 GEMM, 1 implicit GEMM, 2 direct (default)
def test_stem(isa, n, size, cin, cout, k, s, seed):
    assert T.stem(isa, n, size, cin, cout, k, s, seed) <= TOL


@pytest.mark.parametrize("n,size,cin,cout,k,s", [
    (1, 1, 1, 1, 3, 1), (3, 5, 1, 7, 3, 1), (1, 13, 3, 33, 3, 2), (2, 11, 3, 64, 7, 2), (1, 9, 2, 40, 5, 1),
    (1, 17, 1, 24, 3, 1), (1, 6, 3, 70, 3, 1),
])
def test_stem_direct_odd_shapes(isa, n, size, cin, cout, k, s):
    assert T.stem(isa, n, size, cin, cout, k, s, 2) <= TOL


# the direct small-cin conv alone: the stem check sees only what its max pool keeps, always with
# ReLU; here every output pixel, with and without ReLU, output channel tails of each vector width
@pytest.mark.parametrize("cout", [1, 5, 8, 9, 16, 17, 24, 31, 33, 64, 70])
@pytest.mark.parametrize("cin,k,s", [(1, 3, 1), (3, 3, 2), (2, 5, 1), (3, 7, 2)])
@pytest.mark.parametrize("relu", [False, True])
def test_conv_small(isa, cout, cin, k, s, relu):
    assert T.conv_small(isa, 2, 7, 9, cin, cout, k, s, relu, seed=cout) <= TOL
    assert T.conv_small(isa, 3, 1, 1, cin, cout, k, s, relu, seed=cout + 1, n0=1) <= TOL


@pytest.mark.parametrize("mode", ["plain", "res", "acc", "out2"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("n,h,cin,cout", [(1, 1, 1, 1), (1, 2, 3, 5), (7, 5, 13, 21), (2, 6, 16, 16), (1, 9, 29, 58),
                                          (3, 4, 64, 70), (1, 8, 130, 33), (2, 7, 8, 130),
                                          (2, 12, 200, 180)])
def test_winograd_conv(isa, mode, relu, n, h, cin, cout):
    # Winograd F(2x2,3x3) transforms + GEMMs vs the direct reference conv (odd maps hit the
    # phantom tile row/column, odd channel counts the vector tails; chunking by tile blocks)
    err = T.conv(isa, n, h, h, cin, cout, 3, 1, relu, "wino_" + mode, seed=n * 7 + cin)
    assert err <= TOL, (mode, err)


@pytest.mark.parametrize("kind", ["basic", "ffe"])
@pytest.mark.parametrize("n,h,cin,cout,s", [(1, 8, 16, 16, 1), (2, 13, 16, 32, 2), (7, 7, 36, 36, 1), (2, 9, 28, 28, 1),
                                            (3, 16, 20, 36, 2), (1, 5, 12, 12, 1)])
def test_blocks_winograd(isa, kind, n, h, cin, cout, s):
    # blocks with Winograd weights packed: maps of >= 7x7 (16 tiles) take the Winograd path, the
    # 5x5 case checks the fallback to implicit GEMM
    assert T.block(isa, kind + "_wino", n, h, cin, cout, s) <= TOL


def test_unknown_isa_is_an_error():
    with pytest.raises(ValueError):
        T.conv("sse9", 1, 2, 2, 1, 1, 1, 1)
