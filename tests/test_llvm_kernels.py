"""The llvm target's TIR kernel generators, compiled with TVM and checked against small numpy references.

Data are small integers (or multiples of 1/4), so every float sum is exact whatever the summation order:
outputs must match exactly, k-WTA ties are real ties, and tie handling is tested, not tolerated.
"""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from sparsecc.compiler.ir.layer import ConvGeometry, Epilogue, Kwta, LinearGeometry  # noqa: E402
from sparsecc.targets.llvm.kernels.common import build, np_float_key  # noqa: E402
from sparsecc.targets.llvm.kernels.conv_dense import conv2d_dense  # noqa: E402
from sparsecc.targets.llvm.kernels.conv_sparse_sparse import conv2d_sparse_sparse  # noqa: E402
from sparsecc.targets.llvm.kernels.conv_weight_sparse import conv2d_weight_sparse  # noqa: E402
from sparsecc.targets.llvm.kernels.kwta import kwta_global, kwta_local  # noqa: E402
from sparsecc.targets.llvm.kernels.linear import linear_dense, linear_scatter, linear_sparse  # noqa: E402
from sparsecc.targets.llvm.kernels.plan import conv2d, linear  # noqa: E402

# ---------------------------------------------------------------------------------------------------------
# numpy references (float compares, no key tricks)


def ref_conv(x, w, b, stride=(1, 1), pad=(0, 0, 0, 0)):
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad[0], pad[2]), (pad[1], pad[3])))
    o, _, kh, kw = w.shape
    ho = (xp.shape[2] - kh) // stride[0] + 1
    wo = (xp.shape[3] - kw) // stride[1] + 1
    out = np.zeros((x.shape[0], o, ho, wo))
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky : ky + stride[0] * ho : stride[0], kx : kx + stride[1] * wo : stride[1]]
            out += np.einsum("bchw,oc->bohw", patch, w[:, :, ky, kx].astype(np.float64))
    return (out + b.reshape(1, o, 1, 1)).astype(np.float32)


def ref_select(boosted, x, k, break_ties):
    """k-WTA of one group (1-D arrays in flat order)."""
    thr = np.sort(boosted)[::-1][k - 1]
    keep = ~(boosted < thr)
    if break_ties:
        keep = boosted > thr
        need = k - int(keep.sum())
        ties = np.nonzero(boosted == thr)[0][:need]
        keep[ties] = True
    return np.where(keep, x, np.float32(0))


def ref_kwta(x, k, boost=None, local=False, break_ties=False):
    """Global (per sample) or local (per pixel over channels) k-WTA; boost per channel (4-D) or unit (2-D)."""
    if boost is None:
        boosted = x.copy()
    elif x.ndim == 4:
        boosted = x * boost.reshape(1, -1, 1, 1)
    else:
        boosted = x * boost.reshape(1, -1)
    out = np.zeros_like(x)
    for b in range(x.shape[0]):
        if local:
            for i in range(x.shape[2]):
                for j in range(x.shape[3]):
                    out[b, :, i, j] = ref_select(boosted[b, :, i, j], x[b, :, i, j], k, break_ties)
        else:
            out[b] = ref_select(boosted[b].reshape(-1), x[b].reshape(-1), k, break_ties).reshape(x.shape[1:])
    return out


def ref_pool(x, p):
    b, c, h, w = x.shape
    return x[:, :, : h // p * p, : w // p * p].reshape(b, c, h // p, p, w // p, p).max(axis=(3, 5))


def run(kernel, x, out_shape):
    mod = build([kernel])
    y = tvm.runtime.tensor(np.zeros(out_shape, np.float32))
    mod[kernel.name](tvm.runtime.tensor(x), *[tvm.runtime.tensor(c) for c in kernel.constants], y)
    return y.numpy()


def ints(rng, shape, lo=-3, hi=4, density=1.0):
    v = rng.integers(lo, hi, shape).astype(np.float32)
    if density < 1.0:
        v *= rng.random(shape) < density
    return v


def sparse_filters(rng, shape, keep):
    """Integer weights with exactly ``keep`` non-zeros per output unit (fixed fan-in)."""
    w = np.zeros((shape[0], int(np.prod(shape[1:]))), np.float32)
    for o in range(shape[0]):
        idx = rng.choice(w.shape[1], keep, replace=False)
        w[o, idx] = rng.choice([-3, -2, -1, 1, 2, 3], keep)
    return w.reshape(shape)


# ---------------------------------------------------------------------------------------------------------
# k-WTA


def test_float_key_orders_like_ieee_and_merges_signed_zeros():
    v = np.array([-np.inf, -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, np.inf], np.float32)
    keys = np_float_key(v)
    assert keys[3] == keys[4]
    assert np.all(np.diff(keys.astype(np.int64))[[0, 1, 2, 4, 5, 6]] > 0)


@pytest.mark.parametrize("batch", [1, 3])
def test_kwta_1d_keeps_all_ties_and_negative_winners(batch):
    rng = np.random.default_rng(0)
    x = ints(rng, (batch, 100), -4, 3)  # values mostly negative: winners can be negative
    x[:, ::9] = -0.0
    x[:, 1::9] = 0.0
    kern = kwta_global((100,), Kwta.select(10, 2))
    y = run(kern, x, x.shape)
    np.testing.assert_array_equal(y, ref_kwta(x, 10))
    assert (np.count_nonzero(y, axis=1) >= 1).all()


def test_kwta_1d_break_ties_keeps_exactly_k_lowest_index_first():
    rng = np.random.default_rng(1)
    x = ints(rng, (3, 100), 0, 3)  # lots of equal values
    boost = rng.choice([0.5, 1.0, 2.0], 100).astype(np.float32)
    kern = kwta_global((100,), Kwta.select(17, 2, ties="break", boost=boost))
    y = run(kern, x, x.shape)
    np.testing.assert_array_equal(y, ref_kwta(x, 17, boost, break_ties=True))


@pytest.mark.parametrize(("shape", "k"), [((4, 4, 8), 30), ((8, 5, 5), 21), ((16, 16, 16), 300)])
def test_kwta_2d_global_with_channel_boost(shape, k):
    """H*W multiple of 16 (per-channel factor per vector), not a multiple (expanded boost), and a group
    large enough for radix selection."""
    rng = np.random.default_rng(2)
    x = (ints(rng, (3, *shape), -8, 9) / 4).astype(np.float32)
    boost = rng.choice([0.5, 1.0, 1.5, 2.0], shape[0]).astype(np.float32)
    kern = kwta_global(shape, Kwta.select(k, 4, boost=boost))
    y = run(kern, x, x.shape)
    np.testing.assert_array_equal(y, ref_kwta(x, k, boost))


def test_kwta_2d_global_break_ties():
    rng = np.random.default_rng(3)
    x = ints(rng, (2, 6, 4, 4), 0, 4)
    boost = rng.choice([1.0, 2.0], 6).astype(np.float32)
    kern = kwta_global((6, 4, 4), Kwta.select(13, 4, ties="break", boost=boost))
    y = run(kern, x, x.shape)
    np.testing.assert_array_equal(y, ref_kwta(x, 13, boost, break_ties=True))
    assert (np.count_nonzero(y.reshape(2, -1), axis=1) <= 13).all()


@pytest.mark.parametrize("adversarial", [False, True])
def test_kwta_sampled_bracket_and_its_fallback(adversarial):
    """Groups of >= 16384 use a sampled bracket; values planted at the sampled positions make it miss and
    exercise the exact fallback."""
    rng = np.random.default_rng(4)
    shape = (16, 32, 32)
    x = (ints(rng, (1, *shape), -400, 400) / 8).astype(np.float32)
    if adversarial:
        x.reshape(-1)[:: 16384 // 1024] = 1000.0
    kern = kwta_global(shape, Kwta.select(1555, 4, boost=rng.choice([0.5, 1.0], 16).astype(np.float32)))
    boost = kern.constants[0]
    y = run(kern, x, x.shape)
    np.testing.assert_array_equal(y, ref_kwta(x, 1555, boost))


@pytest.mark.parametrize("k", [9000, 12000, 16000])
def test_kwta_sampled_bracket_at_signed_zeros_and_negative_thresholds(k):
    """The sampled bracket compares floats with bounds decoded from keys: thresholds at -0.0/+0.0 (a third of
    the values, signs mixed), below zero and at the most negative values must give the keys' result."""
    rng = np.random.default_rng(7)
    shape = (16, 32, 32)
    x = (ints(rng, (2, *shape), -300, 60) / 4).astype(np.float32)
    flat = x.reshape(2, -1)
    zeros = rng.random(flat.shape) < 0.33
    flat[zeros] = np.where(rng.random(int(zeros.sum())) < 0.5, -0.0, 0.0).astype(np.float32)
    kern = kwta_global(shape, Kwta.select(k, 4))
    y = run(kern, x, x.shape)
    want = ref_kwta(x, k)
    np.testing.assert_array_equal(y, want)
    assert np.array_equal(np.signbit(y), np.signbit(want))  # -0.0 winners keep their sign


@pytest.mark.parametrize(("shape", "break_ties"), [((24, 3, 7), False), ((24, 3, 7), True), ((5, 2, 3), True)])
def test_kwta_local_per_pixel(shape, break_ties):
    rng = np.random.default_rng(5)
    x = ints(rng, (3, *shape), -3, 3)
    x[:, :, 0, 0] = -0.0
    boost = rng.choice([1.0, 2.0], shape[0]).astype(np.float32)
    k = 4 if shape[0] > 5 else 2
    kern = kwta_local(shape, Kwta.select(k, 4, local=True, ties="break" if break_ties else "keep", boost=boost))
    y = run(kern, x, x.shape)
    np.testing.assert_array_equal(y, ref_kwta(x, k, boost, local=True, break_ties=break_ties))


# ---------------------------------------------------------------------------------------------------------
# convolutions


@pytest.mark.parametrize("batch", [1, 3])
def test_weight_sparse_conv_fused_kwta_maxpool(batch):
    rng = np.random.default_rng(6)
    w = sparse_filters(rng, (16, 3, 3, 3), 13)
    b = ints(rng, 16)
    x = ints(rng, (batch, 3, 12, 12))
    spec = Kwta.select(60, 4, boost=rng.choice([0.5, 1.0, 2.0], 16).astype(np.float32))
    kern = conv2d_weight_sparse(ConvGeometry((3, 12, 12), w.shape, pads=(1, 1, 1, 1)), w, b,
                                Epilogue.fused(4, kwta=spec, pool=2))
    y = run(kern, x, (batch, 16, 6, 6))
    want = ref_pool(ref_kwta(ref_conv(x, w, b, pad=(1, 1, 1, 1)), 60, spec.boost), 2)
    np.testing.assert_array_equal(y, want)


def test_weight_sparse_conv_stride2_relu_asymmetric_padding():
    rng = np.random.default_rng(7)
    w = sparse_filters(rng, (16, 4, 3, 3), 9)
    b = ints(rng, 16)
    x = ints(rng, (3, 4, 9, 11))
    kern = conv2d_weight_sparse(ConvGeometry((4, 9, 11), w.shape, (2, 2), (1, 0, 2, 1)), w, b,
                                Epilogue.fused(4, relu=True))
    want = np.maximum(ref_conv(x, w, b, (2, 2), (1, 0, 2, 1)), 0)
    np.testing.assert_array_equal(run(kern, x, want.shape), want)


#: (in_shape, filters, kernel, keep, padding, relu, k-WTA (k, local, break ties) or None, pool, pool first):
#: output widths below, at and above one native vector, channel blocks (64 channels), GSC conv1/conv2 shapes
FLAT_CASES = [
    ((2, 7, 7), 8, 3, 10, (0, 0, 0, 0), True, None, None, False),
    ((3, 12, 14), 16, 5, 30, (0, 0, 0, 0), False, (70, False, False), 2, False),
    ((64, 14, 14), 16, 5, 320, (0, 0, 0, 0), False, (200, False, True), 2, False),
    ((1, 32, 32), 16, 5, 12, (0, 0, 0, 0), False, (1200, False, False), 2, False),
    ((4, 9, 13), 16, 3, 20, (1, 2, 0, 1), True, (3, True, False), None, False),
    ((5, 11, 11), 16, 3, 25, (1, 1, 1, 1), False, (40, False, False), 2, True),
]


@pytest.mark.parametrize("mcpu", ["haswell", "x86-64-v2"])
def test_weight_sparse_conv_flat_planes_for_every_width(mcpu):
    """Stride-1 layers whose output width is not a multiple of the native vector run as one flat pixel plane
    (AVX2, SSE2, NEON): every width, padding, channel blocking and epilogue order matches numpy exactly."""
    from sparsecc.runtime.host import cannot_execute
    from sparsecc.targets.llvm.cpu import resolve_cpu

    cpu = resolve_cpu(mcpu)
    if cannot_execute(cpu.manifest_entry()) is not None:
        pytest.skip(f"this host cannot run {mcpu} code")
    rng = np.random.default_rng(21)
    kernels, cases = [], []
    for i, (shape, filters, ks, keep, pad, relu, kw, pool, pool_first) in enumerate(FLAT_CASES):
        w = sparse_filters(rng, (filters, shape[0], ks, ks), keep)
        b = ints(rng, filters)
        x = ints(rng, (3, *shape))
        spec = None if kw is None else Kwta.select(kw[0], 4, local=kw[1], ties="break" if kw[2] else "keep",
                                                    boost=rng.choice([0.5, 1.0, 2.0], filters).astype(np.float32))
        epilogue = Epilogue.fused(4, relu=relu, kwta=spec, pool=pool, pool_first=pool_first)
        kernels.append(conv2d_weight_sparse(ConvGeometry(shape, w.shape, pads=pad), w, b, epilogue, f"flat{i}",
                                            isa=cpu.isa))
        want = ref_conv(x, w, b, pad=pad)
        if relu:
            want = np.maximum(want, 0)
        if pool and pool_first:
            want = ref_pool(want, pool)
        if spec is not None:
            want = ref_kwta(want, spec.k, spec.boost, kw[1], kw[2])
        if pool and not pool_first:
            want = ref_pool(want, pool)
        cases.append((x, want))
    mod = build(kernels, cpu.tvm_target())
    for kernel, (x, want) in zip(kernels, cases, strict=True):
        for batch in (1, 3):
            y = tvm.runtime.tensor(np.zeros((batch, *want.shape[1:]), np.float32))
            mod[kernel.name](tvm.runtime.tensor(x[:batch]), *[tvm.runtime.tensor(c) for c in kernel.constants], y)
            np.testing.assert_array_equal(y.numpy(), want[:batch], err_msg=f"{kernel.name} batch {batch} {mcpu}")


@pytest.mark.parametrize("batch", [1, 3])
def test_dense_conv_small_map_odd_channel_count(batch):
    rng = np.random.default_rng(8)
    w = ints(rng, (20, 6, 3, 3))
    b = ints(rng, 20)
    x = ints(rng, (batch, 6, 5, 4))
    kern = conv2d_dense(ConvGeometry((6, 5, 4), w.shape, pads=(1, 1, 1, 1)), w, b, Epilogue.fused(4, relu=True))
    want = np.maximum(ref_conv(x, w, b, pad=(1, 1, 1, 1)), 0)
    np.testing.assert_array_equal(run(kern, x, want.shape), want)


@pytest.mark.parametrize("batch", [1, 3])
def test_dense_conv_large_map_fused_local_kwta_maxpool(batch):
    rng = np.random.default_rng(9)
    w = ints(rng, (16, 2, 3, 3))
    b = ints(rng, 16)
    x = ints(rng, (batch, 2, 17, 16))
    spec = Kwta.select(5, 4, local=True, boost=rng.choice([1.0, 2.0], 16).astype(np.float32))
    # the AVX-512 register budget picks the 16 x 16 transposed tile (portable code: it runs on any host)
    geometry = ConvGeometry((2, 17, 16), w.shape, pads=(1, 1, 1, 1))
    kern = conv2d_dense(geometry, w, b, Epilogue.fused(4, kwta=spec, pool=2), isa="avx512")
    assert kern.info["tile"] == (16, 1)
    want = ref_pool(ref_kwta(ref_conv(x, w, b, pad=(1, 1, 1, 1)), 5, spec.boost, local=True), 2)
    np.testing.assert_array_equal(run(kern, x, want.shape), want)


def test_dense_conv_global_kwta_break_ties():
    rng = np.random.default_rng(10)
    w = ints(rng, (16, 3, 3, 3), -1, 2)
    b = np.zeros(16, np.float32)
    x = ints(rng, (2, 3, 6, 6), 0, 2)
    spec = Kwta.select(40, 4, ties="break")
    kern = conv2d_dense(ConvGeometry((3, 6, 6), w.shape), w, b, Epilogue.fused(4, kwta=spec))
    want = ref_kwta(ref_conv(x, w, b), 40, break_ties=True)
    np.testing.assert_array_equal(run(kern, x, want.shape), want)


@pytest.mark.parametrize("batch", [1, 3])
def test_sparse_sparse_conv_fused_kwta_maxpool(batch):
    rng = np.random.default_rng(11)
    w = sparse_filters(rng, (20, 8, 3, 3), 14)
    b = ints(rng, 20)
    x = ints(rng, (batch, 8, 9, 9), density=0.2)
    spec = Kwta.select(30, 4, boost=rng.choice([0.5, 1.0], 20).astype(np.float32))
    kern = conv2d_sparse_sparse(ConvGeometry((8, 9, 9), w.shape, pads=(1, 1, 1, 1)), w, b,
                                Epilogue.fused(4, kwta=spec, pool=2))
    want = ref_pool(ref_kwta(ref_conv(x, w, b, pad=(1, 1, 1, 1)), 30, spec.boost), 2)
    np.testing.assert_array_equal(run(kern, x, want.shape), want)


def test_pool_then_kwta_order_for_fpga_style_layers():
    """conv -> max-pool -> k-WTA (the FPGA net's order), with a 5 %-active input."""
    rng = np.random.default_rng(16)
    w = sparse_filters(rng, (32, 16, 3, 3), 7)
    b = ints(rng, 32)
    x = ints(rng, (2, 16, 10, 10), density=0.05)
    spec = Kwta.select(12, 4, boost=rng.choice([0.5, 1.0], 32).astype(np.float32))
    kern = conv2d_sparse_sparse(ConvGeometry((16, 10, 10), w.shape, pads=(1, 1, 1, 1)), w, b,
                                Epilogue.fused(4, kwta=spec, pool=2, pool_first=True))
    want = ref_kwta(ref_pool(ref_conv(x, w, b, pad=(1, 1, 1, 1)), 2), 12, spec.boost)
    np.testing.assert_array_equal(run(kern, x, want.shape), want)


# ---------------------------------------------------------------------------------------------------------
# linear layers


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_dense_linear_relu_kwta(batch):
    rng = np.random.default_rng(12)
    w = ints(rng, (20, 37))
    b = ints(rng, 20)
    x = ints(rng, (batch, 37))
    kern = linear_dense(LinearGeometry(37, w.shape[0]), w, b, Epilogue.fused(2, relu=True, kwta=Kwta.select(6, 2)))
    want = ref_kwta(np.maximum(x @ w.T + b, 0), 6)
    np.testing.assert_array_equal(run(kern, x, want.shape), want)


@pytest.mark.parametrize(("isa", "tile"), [("avx512", (4, 6)), ("avx2", (2, 3))])
def test_dense_linear_register_tile_follows_the_isa(isa, tile):
    """AVX-512's 32 registers hold the 4 x 6 tile, AVX2's 16 the 2 x 3 one (portable code: both run here)."""
    rng = np.random.default_rng(14)
    w = ints(rng, (70, 37))
    b = ints(rng, 70)
    x = ints(rng, (13, 37))
    kern = linear_dense(LinearGeometry(37, 70), w, b, Epilogue.fused(2, relu=True), isa=isa)
    assert kern.info["tile"] == tile
    np.testing.assert_array_equal(run(kern, x, (13, 70)), np.maximum(x @ w.T + b, 0))


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_sparse_linear_both_paths_with_break_ties(batch):
    """batch < 16: per-sample compaction + CSC scatter; batch >= 16: batch-vectorized SpMM."""
    rng = np.random.default_rng(13)
    w = sparse_filters(rng, (21, 50), 6)
    b = ints(rng, 21)
    x = ints(rng, (batch, 50), density=0.4)
    boost = rng.choice([0.5, 1.0, 2.0], 21).astype(np.float32)
    kern = linear_sparse(LinearGeometry(50, w.shape[0]), w, b,
                         Epilogue.fused(2, kwta=Kwta.select(5, 2, ties="break", boost=boost)))
    want = ref_kwta(x @ w.T + b, 5, boost, break_ties=True)
    np.testing.assert_array_equal(run(kern, x, want.shape), want)


# ---------------------------------------------------------------------------------------------------------
# contract


def test_layer_without_kwta_has_no_boost_param():
    rng = np.random.default_rng(14)
    kern = linear_dense(LinearGeometry(8, 16), ints(rng, (16, 8)), None)
    assert len(kern.prim_func.params) == 2 + len(kern.constants)
    assert len(kern.constants) == 2


def test_plan_picks_kernel_family_from_density_and_shape():
    rng = np.random.default_rng(15)
    small, wide = ConvGeometry((1, 8, 8), (16, 1, 3, 3)), ConvGeometry((32, 8, 8), (16, 32, 3, 3))
    assert conv2d(small, ints(rng, (16, 1, 3, 3)), None).info["family"] == "conv2d_weight_sparse"
    assert conv2d(wide, ints(rng, (16, 32, 3, 3)), None).info["family"] == "conv2d_dense"
    assert conv2d(wide, sparse_filters(rng, (16, 32, 3, 3), 50), None).info["family"] == ("conv2d_weight_sparse")
    assert linear(LinearGeometry(64, 16), sparse_filters(rng, (16, 64), 6), None).info["family"] == "linear_sparse"
    assert linear(LinearGeometry(64, 16), ints(rng, (16, 64), 1, 3), None).info["family"] == "linear_dense"


@pytest.mark.parametrize("n", [8192, 8200])
def test_kwta_radix_select_when_a_pass_keeps_almost_every_key(n: int) -> None:
    """A tight cluster plus a few outliers: one radix pass keeps nearly every key, so the in-place compaction
    writes right behind where it reads (a count taken after the write once lost keys here)."""
    rng = np.random.default_rng(5)
    x = (1.0 + rng.random((2, n)) * 1e-3).astype(np.float32)
    x[:, rng.choice(n, 150, replace=False)] = rng.random((2, 150)).astype(np.float32) * 900 + 2
    kernel = kwta_global((n,), Kwta.select(2048, 2))
    np.testing.assert_array_equal(run(kernel, x, x.shape), ref_kwta(x, 2048))


@pytest.mark.parametrize("batch", [1, 3, 70])  # 70: the SpMM path of large batches (two chunks, one partial)
@pytest.mark.parametrize("kwta", [None, Kwta.select(6, 2, boost=np.linspace(0.5, 1.5, 37).astype(np.float32))])
def test_sparse_sparse_linear_scatters_only_active_inputs(batch: int, kwta: Kwta | None) -> None:
    rng = np.random.default_rng(11)
    weight = ints(rng, (37, 83), density=0.1).astype(np.float32)
    bias = ints(rng, (37,)).astype(np.float32)
    x = ints(rng, (batch, 83), density=0.08).astype(np.float32)
    x[0, 16:32] = 0  # a whole all-zero window
    expected = x @ weight.T + bias
    if kwta is not None:
        expected = ref_kwta(expected, kwta.k, kwta.boost)
    got = run(linear_scatter(LinearGeometry(83, 37), weight, bias, Epilogue.fused(2, kwta=kwta)), x, (batch, 37))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("units", "index"), [(37, np.uint16), (70_000, np.int32)])
def test_scatter_row_indices_are_16_bit_where_the_units_fit(units: int, index: type) -> None:
    """The CSC row stream is uint16 up to 65536 output units (half its cache footprint) and int32 past that;
    both give the exact sums."""
    rng = np.random.default_rng(12)
    weight = ints(rng, (units, 24), density=0.05)
    bias = ints(rng, (units,))
    x = ints(rng, (2, 24), density=0.5)
    kern = linear_scatter(LinearGeometry(24, units), weight, bias)
    assert kern.constants[1].dtype == index
    np.testing.assert_array_equal(run(kern, x, (2, units)), x @ weight.T + bias)


@pytest.mark.parametrize(("size", "index"), [(14, np.uint16), (180, np.int32)])
def test_weight_sparse_conv_tap_offsets_fit_the_block_scratch(size: int, index: type) -> None:
    """Tap offsets index the scratch of one channel block: 16-bit unless one channel's planes pass 64 K floats
    (a 180 x 180 map), and exact either way."""
    rng = np.random.default_rng(13)
    channels = 64 if size < 100 else 1
    w = sparse_filters(rng, (4, channels, 3, 3), 5)
    b = ints(rng, 4)
    x = ints(rng, (2, channels, size, size), density=0.5)
    kern = conv2d_weight_sparse(ConvGeometry((channels, size, size), w.shape), w, b)
    assert kern.constants[1].dtype == index
    np.testing.assert_array_equal(run(kern, x, (2, 4, size - 2, size - 2)), ref_conv(x, w, b))
