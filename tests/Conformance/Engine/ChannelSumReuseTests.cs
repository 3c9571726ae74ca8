namespace Higher.Conformance.Engine;

/// <summary>
/// The channel sums a fused batch-norm backward leaves for the next bias gradient (Tensor.RememberChannelSums): a conv
/// layer with a bias before batch norm takes its bias gradient from them instead of reducing the input gradient again,
/// with the same bits, and a sum after an in-place write does not take them.
/// </summary>
public sealed class ChannelSumReuseTests
{
    [Fact]
    public void ASecondOrderMetaGradientThroughConvBiasAndBatchNorm_IsTheSameBitsWithTheSumsReused()
    {
        var gen = new Generator(31);
        var x = Tensor.Normal([6, 2, 9, 9], 0, 1, DType.Float32, gen);
        var conv = Tensor.Normal([5, 2, 3, 3], 0, 0.4, DType.Float32, gen).WithRequiresGrad();
        var bias = Tensor.Normal([5], 0, 0.3, DType.Float32, gen).WithRequiresGrad();
        var bnw = Tensor.Normal([5], 1, 0.2, DType.Float32, gen).WithRequiresGrad();
        var bnb = Tensor.Normal([5], 0, 0.2, DType.Float32, gen).WithRequiresGrad();
        var target = Tensor.Normal([6, 5, 7, 7], 0, 1, DType.Float32, gen);
        Tensor Loss(Tensor w, Tensor c, Tensor g, Tensor b)
        {
            var y = Tensor.BatchNorm(Tensor.Conv2d(x, w, c), null, null, g, b, training: true).Relu();
            return (y - target).Square().Mean();
        }
        (double[][] Grads, int Taken) Run(bool withhold)
        {
            Tensor.NoChannelSumsOnThisThread = withhold;
            Tensor.ChannelSumsTaken = 0;
            try
            {
                var (w, c, g, b) = (conv, bias, bnw, bnb);
                for (int step = 0; step < 2; step++)
                {
                    var d = Autograd.Grad([Loss(w, c, g, b)], [w, c, g, b], createGraph: true);
                    (w, c, g, b) = (w - d[0]! * 0.1, c - d[1]! * 0.1, g - d[2]! * 0.1, b - d[3]! * 0.1);
                }
                var grads = Autograd.Grad([Loss(w, c, g, b)], [conv, bias, bnw, bnb]);
                return (grads.Select(t => t!.ToDoubleArray()).ToArray(), Tensor.ChannelSumsTaken);
            }
            finally
            {
                Tensor.NoChannelSumsOnThisThread = false;
            }
        }
        var (withheld, none) = Run(true);
        var (reused, taken) = Run(false);
        Assert.Equal(0, none);
        Assert.True(taken >= 2, $"the conv bias took remembered channel sums {taken} times");
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(withheld[i], reused[i]);
        }
    }

    [Fact]
    public void RememberedSums_AreNotTaken_AfterAnInPlaceWrite_NorForAnotherReduction()
    {
        var gen = new Generator(32);
        var t = Tensor.Normal([4, 3, 5, 5], 0, 1, DType.Float64, gen);
        var wrong = Tensor.FromArray(new double[] { 1e9, 2e9, 3e9 });
        Tensor.ChannelSumsTaken = 0;
        // Another reduction (over axes 0 and 1) does not take them, and forgets them.
        t.RememberChannelSums(wrong, 4);
        var other = t.Sum([0, 1]);
        Assert.DoesNotContain(1e9, other.ToDoubleArray());
        Assert.NotEqual(wrong.ToDoubleArray(), t.Sum([0, 2, 3]).ToDoubleArray());
        // Stale after an in-place write.
        t.RememberChannelSums(wrong, 4);
        t.AddInPlace(Tensor.OnesLike(t));
        Assert.NotEqual(wrong.ToDoubleArray(), t.Sum([0, 2, 3]).ToDoubleArray());
        // A view with another leading dimension does not take them.
        t.RememberChannelSums(wrong, 4);
        Assert.NotEqual(wrong.ToDoubleArray(), t.Reshape(2, 3, 2, 25).Sum([0, 2, 3]).ToDoubleArray());
        // The matching reduction does, once.
        t.RememberChannelSums(wrong, 4);
        Assert.Equal(wrong.ToDoubleArray(), t.Sum([0, 2, 3]).ToDoubleArray());
        Assert.NotEqual(wrong.ToDoubleArray(), t.Sum([0, 2, 3]).ToDoubleArray());
        Assert.Equal(1, Tensor.ChannelSumsTaken);
    }
}
