using Higher.Tape;

namespace Higher.GradCheck;

/// <summary>
/// The checker must be able to fail: ops with deliberately wrong derivatives, built from the
/// engine's internals exactly as real ops attach their nodes, are caught with a useful message.
/// </summary>
public sealed class CheckerSelfTests
{
    /// <summary>exp whose backward is scaled by the factor; with detach the backward is not itself differentiable.</summary>
    private static readonly Derivative<(double Factor, bool Detach)> FaultyExpRow = new("FaultyExp", Saves.Output,
        static (Node n, in (double Factor, bool Detach) a, Tensor g) => [g * (a.Detach ? n.Output.Detach() : n.Output) * a.Factor]);

    /// <summary>y = x·Σx whose backward forgets the coupling term Σ(g·x): right on the diagonal only for a one-element x (auxiliary: Σx).</summary>
    private static readonly Derivative<NoAttr> DiagonalOnlyRow = new("DiagonalOnly", Saves.Input0,
        static (Node n, in NoAttr _, Tensor g) => [g * n.Aux(0) + g * n.Input(0)]);

    /// <summary>An op whose backward returns NaN.</summary>
    private static readonly Derivative<NoAttr> NaNRow = new("NaN", Saves.None, static (Node n, in NoAttr _, Tensor g) => [g * double.NaN]);

    private static Tensor FaultyExp(Tensor x, double factor, bool detach = false)
    {
        Tensor y;
        using (Autograd.NoGrad())
        {
            y = x.Exp();
        }
        if (Autograd.IsGradEnabled && x.RequiresGrad)
        {
            FaultyExpRow.Record(y, (factor, detach), [x]);
        }
        return y;
    }

    private static Tensor DiagonalOnly(Tensor x)
    {
        Tensor y, sum;
        using (Autograd.NoGrad())
        {
            sum = x.Sum();
            y = x * sum;
        }
        if (Autograd.IsGradEnabled && x.RequiresGrad)
        {
            DiagonalOnlyRow.Record(y, default, [x], [sum.Detach()]);
        }
        return y;
    }

    private static Tensor WithNaNGradient(Tensor x)
    {
        Tensor y;
        using (Autograd.NoGrad())
        {
            y = x * 2.0;
        }
        if (Autograd.IsGradEnabled && x.RequiresGrad)
        {
            NaNRow.Record(y, default, [x]);
        }
        return y;
    }

    private static Tensor Point(params double[] values) => Tensor.FromArray(values, new Shape(values.Length));

    [Fact]
    public void GradCheck_PassesOnTheCorrectCustomOp()
    {
        var x = Point(0.3, -1.2, 0.7);
        GradChecker.GradCheck(xs => FaultyExp(xs[0], 1.0), [x]);
        GradChecker.GradGradCheck(xs => FaultyExp(xs[0], 1.0), [x]);
    }

    [Theory]
    [InlineData(2.0)]
    [InlineData(1.01)]
    [InlineData(0.995)]
    public void GradCheck_FailsOnABackwardOffByAFactor(double factor)
    {
        var x = Tensor.FromArray([0.3, -1.2, 0.7, 0.1, 1.1, -0.4], new Shape(2, 3));
        var e = Assert.Throws<GradCheckException>(() => GradChecker.GradCheck(xs => FaultyExp(xs[0], factor), [x], name: "faulty exp"));
        Assert.Contains("GradCheck failed for faulty exp", e.Message, StringComparison.Ordinal);
        Assert.Contains("x0 [2, 3] float64", e.Message, StringComparison.Ordinal);
        Assert.Contains("analytical = ", e.Message, StringComparison.Ordinal);
        Assert.Contains("numerical = ", e.Message, StringComparison.Ordinal);
        Assert.Contains("6 of 36 Jacobian entries", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GradCheck_ReportsTheWorstElement()
    {
        // exp'(x) = e^x: the largest absolute error of a 2x-wrong backward is at the largest x (index [1, 1]).
        var x = Tensor.FromArray([0.3, -1.2, 0.7, 0.1, 1.1, -0.4], new Shape(2, 3));
        var e = Assert.Throws<GradCheckException>(() => GradChecker.GradCheck(xs => FaultyExp(xs[0], 2.0), [x]));
        Assert.Contains("d y0[1, 1] / d x0[1, 1]", e.Message, StringComparison.Ordinal);
        Assert.Contains("analytical = 6.0083", e.Message, StringComparison.Ordinal);
        // The default name is the source text of the function.
        Assert.Contains("FaultyExp(xs[0], 2.0)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GradCheck_FailsOnAMissingOffDiagonalTerm()
    {
        var x = Point(0.5, -0.25, 1.5);
        var e = Assert.Throws<GradCheckException>(() => GradChecker.GradCheck(xs => DiagonalOnly(xs[0]), [x]));
        // The diagonal is right (∂y_i/∂x_i = Σx + x_i), the six off-diagonal entries (x_i) are missing.
        Assert.Contains("6 of 9 Jacobian entries", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GradCheck_FailsOnANaNGradient()
    {
        var e = Assert.Throws<GradCheckException>(() => GradChecker.GradCheck(xs => WithNaNGradient(xs[0]), [Point(1, 2)]));
        Assert.Contains("analytical = NaN", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GradGradCheck_FailsWhenTheBackwardIsNotDifferentiable()
    {
        // First derivatives are right, but the backward uses y detached, so its own derivative
        // (the second derivative, e^x) is lost: only gradgradcheck can see that.
        var x = Point(0.3, -1.2, 0.7);
        GradChecker.GradCheck(xs => FaultyExp(xs[0], 1.0, detach: true), [x]);
        var e = Assert.Throws<GradCheckException>(() => GradChecker.GradGradCheck(xs => FaultyExp(xs[0], 1.0, detach: true), [x], name: "detached exp"));
        Assert.Contains("GradGradCheck failed for detached exp", e.Message, StringComparison.Ordinal);
        Assert.Contains("/ d x0[", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GradGradCheck_FailsOnASecondDerivativeOffByAFactor()
    {
        var x = Point(0.3, -1.2);
        Assert.Throws<GradCheckException>(() => GradChecker.GradGradCheck(xs => FaultyExp(xs[0], 1.01), [x]));
    }

    [Fact]
    public void GradCheck_RejectsFloat32Inputs()
    {
        var x = Tensor.FromArray([1f, 2f]);
        var e = Assert.Throws<ArgumentException>(() => GradChecker.GradCheck(xs => xs[0].Exp(), [x]));
        Assert.Contains("float64", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GradCheck_HandlesInputsTheOutputDoesNotDependOn()
    {
        var x = Point(1, 2);
        var unused = Point(3);
        GradChecker.GradCheck(xs => xs[0].Exp(), [x, unused]);
        GradChecker.GradGradCheck(xs => xs[0].Exp(), [x, unused]);
    }

    [Fact]
    public void GradCheck_ChecksEveryOutputOfAManyOutputFunction()
    {
        var x = Point(0.3, -1.2);
        GradChecker.GradCheckMany(xs => [xs[0].Exp(), xs[0].Sin()], [x]);
        var e = Assert.Throws<GradCheckException>(() => GradChecker.GradCheckMany(xs => [xs[0].Sin(), FaultyExp(xs[0], 1.5)], [x]));
        Assert.Contains("d y1[", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GradCheck_OfEmptyTensorsIsTriviallyTrue()
    {
        var x = Tensor.Zeros(new Shape(0, 3), DType.Float64);
        GradChecker.GradCheck(xs => xs[0].Exp().Sum(0), [x]);
        GradChecker.GradGradCheck(xs => xs[0].Exp().Sum(0), [x]);
    }

    [Fact]
    public void GradCheck_FailsWhenTheComputationLeavesTheTape()
    {
        // Reading the values to the host and back makes a constant: no gradient, though y depends on x.
        var x = Point(0.5, -1.5);
        GradChecker.GradCheck(xs => Tensor.FromArray(xs[0].ToDoubleArray()).Sign(), [x]);
        var e = Assert.Throws<GradCheckException>(() => GradChecker.GradCheck(xs => Tensor.FromArray(xs[0].ToDoubleArray()) * 3.0, [x]));
        Assert.Contains("analytical = 0, numerical = ", e.Message, StringComparison.Ordinal);
    }
}
