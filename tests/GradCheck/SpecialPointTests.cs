namespace Higher.GradCheck;

/// <summary>
/// Points the random properties keep away from, where finite differences mean nothing: the values
/// the engine defines there (PyTorch's conventions) and that they stay finite at every order.
/// </summary>
public sealed class SpecialPointTests
{
    private static Tensor Leaf(params double[] values) => Tensor.FromArray(values, new Shape(values.Length)).WithRequiresGrad();

    private static void AssertValues(double[] expected, Tensor actual, double tolerance = 1e-15)
    {
        var a = actual.ToDoubleArray();
        Assert.Equal(expected.Length, a.Length);
        for (int i = 0; i < a.Length; i++)
        {
            Assert.True(Math.Abs(a[i] - expected[i]) <= tolerance, $"element {i}: expected {expected[i]:R}, got {a[i]:R}");
        }
    }

    [Fact]
    public void SafeSqrt_AtZero_GradientIsZeroAndHigherDerivativesAreFinite()
    {
        var x = Leaf(0, 2.25, 0, 4);
        var y = x.SafeSqrt();
        AssertValues([0, 1.5, 0, 2], y);
        var d1 = Autograd.Grad(y.Sum(), x, createGraph: true);
        AssertValues([0, 1 / 3.0, 0, 0.25], d1);
        // d²√x/dx² = -x^(-3/2)/4; 0 at 0.
        var d2 = Autograd.Grad(d1.Sum(), x, createGraph: true);
        AssertValues([0, -1 / (4 * 3.375), 0, -1 / 32.0], d2);
        // d³√x/dx³ = 3/8·x^(-5/2).
        var d3 = Autograd.Grad(d2.Sum(), x);
        AssertValues([0, 3 / (8 * Math.Pow(2.25, 2.5)), 0, 3 / (8 * 32.0)], d3, 1e-15);
    }

    [Fact]
    public void SafeSqrt_OfAZeroSecondMoment_GivesFiniteMetaGradients()
    {
        // The Adam-like pattern: θ' = θ - g / (√(g²) + ε) with g = 0 exactly at one coordinate.
        var theta = Leaf(0, 1.5);
        var loss = (theta * theta).Sum();
        var g = Autograd.Grad(loss, theta, createGraph: true);
        var step = theta - (g / ((g * g).SafeSqrt() + 1e-8));
        var meta = Autograd.Grad(step.Sum(), theta);
        Assert.All(meta.ToDoubleArray(), v => Assert.True(double.IsFinite(v)));
    }

    [Fact]
    public void SafeSqrt_PositiveRegion_PassesGradGradCheck()
    {
        var x = Tensor.FromArray([0.01, 0.5, 3.0]);
        GradChecker.GradCheck(xs => xs[0].SafeSqrt(), [x]);
        GradChecker.GradGradCheck(xs => xs[0].SafeSqrt(), [x]);
    }

    [Fact]
    public void Kinks_UseTheConventionsOfPyTorch()
    {
        var x = Leaf(0, 0, 0);
        AssertValues([0, 0, 0], Autograd.Grad(x.Abs().Sum(), x));
        AssertValues([0, 0, 0], Autograd.Grad(x.Relu().Sum(), x));
        AssertValues([0.2, 0.2, 0.2], Autograd.Grad(x.LeakyRelu(0.2).Sum(), x));
        // Clamp passes the gradient at its bounds.
        var b = Leaf(-1, 1, 2);
        AssertValues([1, 1, 0], Autograd.Grad(b.Clamp(-1, 1).Sum(), b));
    }

    [Fact]
    public void Ties_ShareTheGradientOfAmaxAndMaximum_AndMaxAlongAnAxisPicksTheFirst()
    {
        var x = Leaf(1, 3, 3, 2);
        AssertValues([0, 0.5, 0.5, 0], Autograd.Grad(x.Amax(), x));
        AssertValues([0, 1, 0, 0], Autograd.Grad(x.Max(0).Values, x));
        var a = Leaf(1, 2);
        var b = Leaf(1, 1);
        var grads = Autograd.Grad([Tensor.Maximum(a, b).Sum()], [a, b]);
        AssertValues([0.5, 1], grads[0]!);
        AssertValues([0.5, 0], grads[1]!);
    }

    [Fact]
    public void Cast_Float32LeafThroughFloat64_GetsAFloat32Gradient()
    {
        var x = Tensor.FromArray([0.5f, -1f]).WithRequiresGrad();
        var y = x.Cast(DType.Float64).Exp().Sum();
        var g = Autograd.Grad(y, x, createGraph: true);
        Assert.Equal(DType.Float32, g.DType);
        Assert.Equal(Math.Exp(0.5), g.ToDoubleArray()[0], 6);
        var g2 = Autograd.Grad(g.Sum(), x);
        Assert.Equal(DType.Float32, g2.DType);
        Assert.Equal(Math.Exp(-1), g2.ToDoubleArray()[1], 6);
    }

    [Fact]
    public void EmptyTensors_GoThroughEveryKindOfOp()
    {
        var e = Tensor.Zeros(new Shape(2, 0, 3), DType.Float64);
        GradChecker.GradGradCheck(xs => xs[0].Exp().Sum([1]), [e]);
        GradChecker.GradGradCheck(xs => xs[0].Permute(2, 0, 1).Reshape(3, 0), [e]);
        GradChecker.GradGradCheck(xs => Tensor.Cat([xs[0], xs[0] * 2], 1), [e]);
        GradChecker.GradGradCheck(xs => Tensor.MatMul(xs[0], Tensor.Ones(new Shape(3, 2), DType.Float64)), [e]);
        GradChecker.GradGradCheck(xs => xs[0].Softmax(-1), [e]);
    }
}
