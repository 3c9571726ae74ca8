namespace Higher.GradCheck;

/// <summary>Bugs the properties found, each pinned to its smallest reproduction.</summary>
public sealed class RegressionTests
{
    /// <summary>
    /// SliceScatterBackward computed the end of an empty slice as start - step + 1, negative for
    /// step &gt; 1, which Slice then read from the back: the double backward of an empty strided slice
    /// returned a gradient of the wrong shape. Found by CpuOpProperties.Slice (case seed 399491945965314329).
    /// </summary>
    [Fact]
    public void Slice_EmptyResultWithStep_HasASecondDerivative()
    {
        var x = Tensor.Zeros(new Shape(0, 4, 3), DType.Float64);
        GradChecker.GradGradCheck(xs => xs[0].Slice(2, -4, -5, 3), [x]);
        var y = Tensor.Zeros(new Shape(2, 3), DType.Float64);
        GradChecker.GradGradCheck(xs => xs[0].Slice(1, 3, 3, 2), [y]);
    }

    /// <summary>
    /// The losses count their non-ignored targets with a bool mask's Sum, which the engine used to
    /// reduce in int64, a dtype IBackend.Reduce does not take (the Reference backend threw
    /// NotSupportedException): CrossEntropy, NllLoss and everything built on them failed.
    /// </summary>
    [Fact]
    public void Sum_OfABoolMask_CountsTheTrueElements()
    {
        var mask = Tensor.FromArray([true, false, true, true]);
        Assert.Equal(3L, mask.Sum().Item<long>());
        Assert.Equal(DType.Int64, mask.Sum().DType);
    }

    /// <summary>
    /// MatMul of [..., m, k]·[k, n] and Linear of a rank ≠ 2 input folded the leading dimensions with
    /// Reshape(-1, k), which cannot infer -1 when k = 0 ("Cannot reshape [2, 2, 0] to [-1, 0]").
    /// Found by CpuOpProperties.MatMul (case seed 771531902883665547).
    /// </summary>
    [Fact]
    public void MatMul_WithAnEmptyInnerDimension_GivesZeros()
    {
        var a = Tensor.Zeros(new Shape(2, 2, 0), DType.Float64);
        var b = Tensor.Zeros(new Shape(0, 3), DType.Float64);
        var y = Tensor.MatMul(a, b);
        Assert.Equal(new Shape(2, 2, 3), y.Shape);
        Assert.All(y.ToDoubleArray(), v => Assert.Equal(0.0, v));
        GradChecker.GradGradCheck(xs => Tensor.MatMul(xs[0], xs[1]), [a, b]);
        var x = Tensor.Zeros(new Shape(3, 1, 0), DType.Float64);
        var w = Tensor.Zeros(new Shape(2, 0), DType.Float64);
        var bias = Tensor.FromArray([0.5, -1.0]);
        GradChecker.GradGradCheck(xs => Tensor.Linear(xs[0], xs[1], xs[2]), [x, w, bias]);
    }
}
