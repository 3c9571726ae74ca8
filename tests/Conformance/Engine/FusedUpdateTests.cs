using Higher.Functional;
using Higher.Optim;
using Xunit;

namespace Higher.Conformance.Engine;

/// <summary>
/// The fused kernels of the small-op path give the bits of the compositions they replace, to
/// second order: the SGD update p - lr·g as one ScaledAdd, ReLU's backward as one ReluGrad kernel,
/// and x·x whose backward hands one product to both inputs.
/// </summary>
public sealed class FusedUpdateTests
{
    private static Tensor[] Grads(Tensor loss, Tensor[] wrt, bool createGraph) =>
        [.. Autograd.Grad([loss], wrt, createGraph: createGraph).Select(t => t!)];

    [Theory]
    [InlineData(DType.Float32, Reduction.Mean)]
    [InlineData(DType.Float32, Reduction.Sum)]
    [InlineData(DType.Float64, Reduction.Mean)]
    [InlineData(DType.Float64, Reduction.Sum)]
    public void MseLoss_IsOneNode_WithTheBitsOfTheComposedFormAndItsGradient(DType dtype, Reduction reduction)
    {
        // MseLoss's sum and mean are one node (scale·Σ d²): its value and first gradients are those of
        // (d·d).Sum() and .Mean(); its second derivatives agree to rounding (the graph is shorter).
        var g = new Generator(8);
        var a = Tensor.Normal([7, 3], 0, 1, dtype, g).WithRequiresGrad();
        var b = Tensor.Normal([7, 3], 0, 1, dtype, g).WithRequiresGrad();
        var fused = F.MseLoss(a.Tanh(), b, reduction);
        var d0 = a.Tanh() - b;
        var composed = reduction == Reduction.Sum ? (d0 * d0).Sum() : (d0 * d0).Mean();
        Assert.Equal("ScaledSumOfSquaresBackward", fused.GradFnName);
        Assert.Equal(composed.ToDoubleArray(), fused.ToDoubleArray());
        // Through a scale, so the incoming gradient is not 1 and the order of the products shows.
        var gf = Grads(fused * 1.7, [a, b], createGraph: true);
        var gc = Grads(composed * 1.7, [a, b], createGraph: true);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(gc[i].ToDoubleArray(), gf[i].ToDoubleArray());
        }
        var hf = Grads((gf[0] * gf[1]).Sum(), [a, b], createGraph: false);
        var hc = Grads((gc[0] * gc[1]).Sum(), [a, b], createGraph: false);
        double tol = dtype == DType.Float32 ? 1e-5 : 1e-13;
        for (int i = 0; i < 2; i++)
        {
            var (x, y) = (hc[i].ToDoubleArray(), hf[i].ToDoubleArray());
            for (int k = 0; k < x.Length; k++)
            {
                Assert.Equal(x[k], y[k], tol * (1 + Math.Abs(x[k])));
            }
        }
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void AddScaled_IsBitForBitTheComposedForm_ToSecondOrder(DType dtype)
    {
        var g = new Generator(7);
        var a = Tensor.Normal([6, 5], 0, 1, dtype, g).WithRequiresGrad();
        var b = Tensor.Normal([6, 5], 0, 1, dtype, g).WithRequiresGrad();
        foreach (double alpha in new[] { -0.01, 0.7, -3.0 })
        {
            var fused = Tensor.AddScaled(a, b, alpha);
            var composed = a + b * alpha;
            Assert.Equal(composed.ToDoubleArray(), fused.ToDoubleArray());
            var gf = Grads((fused.Tanh() * b).Sum(), [a, b], createGraph: true);
            var gc = Grads((composed.Tanh() * b).Sum(), [a, b], createGraph: true);
            for (int i = 0; i < 2; i++)
            {
                Assert.Equal(gc[i].ToDoubleArray(), gf[i].ToDoubleArray());
            }
            var hf = Grads(gf[0].Square().Sum() + gf[1].Square().Sum(), [a, b], createGraph: false);
            var hc = Grads(gc[0].Square().Sum() + gc[1].Square().Sum(), [a, b], createGraph: false);
            for (int i = 0; i < 2; i++)
            {
                Assert.Equal(hc[i].ToDoubleArray(), hf[i].ToDoubleArray());
            }
        }
    }

    [Fact]
    public void AddScaled_WithBroadcastingOperands_TakesTheComposedForm()
    {
        var a = Tensor.FromArray(new double[] { 1, 2, 3, 4, 5, 6 }, [2, 3]);
        var b = Tensor.FromArray(new double[] { 1, -1, 2 }, [3]);
        Assert.Equal(new double[] { 0.5, 2.5, 2, 3.5, 5.5, 5 }, Tensor.AddScaled(a, b, -0.5).ToDoubleArray());
    }

    [Fact]
    public void AddScaled_DTypeMismatch_ThrowsNamingBothOperands()
    {
        var a = Tensor.Zeros([3], DType.Float32);
        var b = Tensor.Zeros([3], DType.Float64);
        var ex = Assert.Throws<ArgumentException>(() => Tensor.AddScaled(a, b, 1));
        Assert.Contains("float32", ex.Message);
        Assert.Contains("float64", ex.Message);
    }

    [Theory]
    [InlineData(DType.Float32)]
    [InlineData(DType.Float64)]
    public void ReluBackward_IsTheMaskedGradient_ToThirdOrder(DType dtype)
    {
        // y = relu(x)·w summed; its gradient wrt x is w where x > 0; the checks differentiate that
        // gradient again (through w) and once more, against the masked formula written by hand.
        var g = new Generator(11);
        var x = Tensor.Normal([4, 7], 0, 1, dtype, g).WithRequiresGrad();
        var w = Tensor.Normal([4, 7], 0, 1, dtype, g).WithRequiresGrad();
        var mask = x.Detach() > 0;
        var gx = Grads((x.Relu() * w).Sum(), [x], createGraph: true)[0];
        Assert.Equal(Tensor.Where(mask, w.Detach(), 0).ToDoubleArray(), gx.ToDoubleArray());
        var gw = Grads((gx * gx).Sum(), [w], createGraph: true)[0];
        Assert.Equal(Tensor.Where(mask, w.Detach() * 2, 0).ToDoubleArray(), gw.ToDoubleArray());
        // No gradient reaches x through the gate: d(gx)/dx is 0 almost everywhere.
        var gxx = Autograd.Grad([gx.Sum()], [x], allowUnused: true, retainGraph: true)[0];
        Assert.True(gxx is null || gxx.ToDoubleArray().All(v => v == 0));
        var gw2 = Grads(gw.Sum(), [w], createGraph: false)[0];
        Assert.Equal(Tensor.Where(mask, Tensor.OnesLike(w) * 2, 0).ToDoubleArray(), gw2.ToDoubleArray());
    }

    [Fact]
    public void SgdStep_InAnInnerLoop_MatchesTheHandWrittenUpdate_AndItsMetaGradient()
    {
        // One differentiable SGD step on w: w' = w - lr·dL/dw with L = sum((x·w)²); the meta-gradient
        // of sum(w') with respect to w is 1 - lr·d²L/dw², written out here by hand.
        var x = Tensor.FromArray(new double[] { 0.5, -1.5, 2.0 }, [3]);
        var w = Tensor.FromArray(new double[] { 0.3, 0.2, -0.4 }, [3]).WithRequiresGrad();
        const double lr = 0.1;
        var loss = (x * w).Square().Sum();
        var grad = Grads(loss, [w], createGraph: true)[0];
        var sgd = new Sgd([w], new SgdOptions { Lr = lr });
        var updated = sgd.Update(w, grad, new ParamState(), new GroupHyperParameters(sgd.ParamGroups[0]));
        var xs = x.ToDoubleArray();
        var ws = w.ToDoubleArray();
        Assert.Equal(ws.Select((v, i) => v - lr * (2 * xs[i] * xs[i] * v)).ToArray(), updated.ToDoubleArray(), new ToleranceComparer(1e-15));
        var meta = Grads(updated.Sum(), [w], createGraph: false)[0];
        Assert.Equal(xs.Select(v => 1 - lr * 2 * v * v).ToArray(), meta.ToDoubleArray(), new ToleranceComparer(1e-15));
    }

    private sealed class ToleranceComparer(double tol) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= tol * Math.Max(1, Math.Abs(a));

        public int GetHashCode(double v) => 0;
    }
}
