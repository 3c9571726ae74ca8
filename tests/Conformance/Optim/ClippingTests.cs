using Higher.Optim;

namespace Higher.Conformance.Optim;

/// <summary>Edge cases and failure twins of the gradient clipping utilities.</summary>
public sealed class ClippingTests
{
    private static Tensor WithGrad(params double[] grad)
    {
        var p = Tensor.Zeros([grad.Length], DType.Float64).WithRequiresGrad();
        p.Grad = Tensor.FromArray(grad);
        return p;
    }

    [Fact]
    public void ClipGradNorm_ScalesEveryGradient_AndReturnsTheTotalNorm()
    {
        var a = WithGrad(3, 0);
        var b = WithGrad(0, 4);
        var noGrad = Tensor.Zeros([1], DType.Float64).WithRequiresGrad();
        var total = GradClipping.ClipGradNorm([a, b, noGrad], 1.0);
        Assert.Equal(5, total.Item());
        Assert.Equal(3 / (5 + 1e-6), a.Grad!.ToDoubleArray()[0], 15);
        Assert.Equal(4 / (5 + 1e-6), b.Grad!.ToDoubleArray()[1], 15);
        Assert.Null(noGrad.Grad);
    }

    [Fact]
    public void ClipGradNorm_Infinity_UsesTheLargestMagnitude()
    {
        var a = WithGrad(-7, 2);
        Assert.Equal(7, GradClipping.ClipGradNorm([a], 100, double.PositiveInfinity).Item());
        Assert.Equal([-7.0, 2.0], a.Grad!.ToDoubleArray());
    }

    [Fact]
    public void ClipGradNorm_WithoutGradients_ReturnsZero()
    {
        Assert.Equal(0, GradClipping.ClipGradNorm([Tensor.Zeros([2]).WithRequiresGrad()], 1).Item());
    }

    [Fact]
    public void ClipGradNorm_Failures()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => GradClipping.ClipGradNorm([WithGrad(1)], 1, 0));
        var e = Assert.Throws<InvalidOperationException>(() => GradClipping.ClipGradNorm([WithGrad(1, double.PositiveInfinity)], 1, errorIfNonfinite: true));
        Assert.Contains("Infinity", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ClipGradValue_Clamps_AndRejectsANegativeBound()
    {
        var a = WithGrad(-3, 0.5, 2);
        GradClipping.ClipGradValue([a], 1);
        Assert.Equal([-1.0, 0.5, 1.0], a.Grad!.ToDoubleArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => GradClipping.ClipGradValue([a], -1));
    }
}
