// Gradcheck and gradgradcheck of convolution, pooling and batch norm (float64), with geometries
// drawn from a case seed: stride, padding, dilation, groups, non-square kernels, bias or not.
// Replay a failure as in OpProperties.cs: [Property(Replay = "(..., ...)")] or a [Fact] calling
// Check(ConvGradCheckTests.Conv2dCase, new CaseSeed(...)).

using FsCheck.Xunit;

namespace Higher.GradCheck;

/// <summary>First and second derivatives of <see cref="Tensor.Conv2d"/>, the poolings and <see cref="Tensor.BatchNorm(Tensor, Tensor?, Tensor?, Tensor?, Tensor?, bool, double)"/> on <see cref="Device"/>.</summary>
[Properties(MaxTest = 15, Arbitrary = [typeof(Arbitraries)], Replay = GradCheckSeeds.Replay)]
public abstract class ConvGradCheckTests
{
    /// <summary>Device the cases are created on.</summary>
    protected abstract Device Device { get; }

    private void Check(Func<CaseGen, OpCase> build, CaseSeed seed)
    {
        var c = build(new CaseGen(seed.Value, Device));
        string name = $"{c.Describe()} on {Device} [case seed {seed.Value}]";
        GradChecker.GradCheck(c.F, c.Inputs, c.Eps, c.Atol, c.Rtol, name);
        GradChecker.GradGradCheck(c.F, c.Inputs, seed: seed.Value, eps: c.Eps, atol: c.Atol, rtol: c.Rtol, name: name);
    }

    /// <summary>A spatial size for which the (dilated) window fits the padded input, with 0 to 2 positions to spare.</summary>
    private static int FittingSize(CaseGen g, int kernel, int dilation, int padding) =>
        Math.Max(1, (dilation * (kernel - 1)) + 1 - (2 * padding) + g.Int(0, 2));

    public static OpCase Conv2dCase(CaseGen g)
    {
        int groups = g.Pick(1, 1, 2);
        int cg = g.Int(1, 2), og = g.Int(1, 2);
        int kh = g.Int(1, 3), kw = g.Int(1, 3);
        Size2d stride = (g.Int(1, 2), g.Int(1, 2)), padding = (g.Int(0, 1), g.Int(0, 1)), dilation = (g.Int(1, 2), g.Int(1, 2));
        int h = FittingSize(g, kh, dilation.Height, padding.Height), w = FittingSize(g, kw, dilation.Width, padding.Width);
        int n = g.Int(1, 2);
        bool bias = g.Chance(0.6);
        var x = g.Normal(new Shape(n, cg * groups, h, w));
        var weight = g.Normal(new Shape(og * groups, cg, kh, kw), 0.5);
        var name = $"Conv2d(kernel {kh}×{kw}, stride {stride}, padding {padding}, dilation {dilation}, groups {groups}, bias {bias})";
        return bias
            ? new OpCase(name, t => Tensor.Conv2d(t[0], t[1], t[2], stride, padding, dilation, groups), [x, weight, g.Normal(new Shape(og * groups))])
            : new OpCase(name, t => Tensor.Conv2d(t[0], t[1], null, stride, padding, dilation, groups), [x, weight]);
    }

    public static OpCase MaxPool2dCase(CaseGen g)
    {
        Size2d kernel = (g.Int(1, 3), g.Int(1, 3));
        Size2d stride = (g.Int(1, 2), g.Int(1, 2));
        Size2d padding = (g.Int(0, kernel.Height / 2), g.Int(0, kernel.Width / 2));
        Size2d dilation = (g.Int(1, 2), g.Int(1, 2));
        bool ceil = g.Chance(0.3);
        int h = FittingSize(g, kernel.Height, dilation.Height, padding.Height) + 1, w = FittingSize(g, kernel.Width, dilation.Width, padding.Width) + 1;
        // Distinct values: no ties, so the maximum is differentiable at the point.
        var x = g.Distinct(new Shape(g.Int(1, 2), g.Int(1, 2), h, w));
        return new OpCase($"MaxPool2d(kernel {kernel}, stride {stride}, padding {padding}, dilation {dilation}, ceil {ceil})",
            t => Tensor.MaxPool2d(t[0], kernel, stride, padding, dilation, ceil), [x]);
    }

    public static OpCase AvgPool2dCase(CaseGen g)
    {
        Size2d kernel = (g.Int(1, 3), g.Int(1, 3));
        Size2d stride = (g.Int(1, 2), g.Int(1, 2));
        Size2d padding = (g.Int(0, kernel.Height / 2), g.Int(0, kernel.Width / 2));
        bool ceil = g.Chance(0.3), includePad = g.Chance(0.5);
        int h = FittingSize(g, kernel.Height, 1, padding.Height) + 1, w = FittingSize(g, kernel.Width, 1, padding.Width) + 1;
        var x = g.Normal(new Shape(g.Int(1, 2), g.Int(1, 2), h, w));
        return new OpCase($"AvgPool2d(kernel {kernel}, stride {stride}, padding {padding}, ceil {ceil}, countIncludePad {includePad})",
            t => Tensor.AvgPool2d(t[0], kernel, stride, padding, ceil, includePad), [x]);
    }

    public static OpCase BatchNormTrainingCase(CaseGen g)
    {
        int c = g.Int(1, 3);
        var x = g.Normal(new Shape(g.Int(2, 3), c, g.Int(1, 3), g.Int(1, 3)));
        var weight = g.AwayFromZero(new Shape(c), 0.5, 1.5);
        var bias = g.Normal(new Shape(c));
        return new OpCase("BatchNorm(training)", t => Tensor.BatchNorm(t[0], null, null, t[1], t[2], training: true), [x, weight, bias]);
    }

    public static OpCase BatchNormEvaluationCase(CaseGen g)
    {
        int c = g.Int(1, 3);
        var x = g.Normal(new Shape(g.Int(1, 3), c, g.Int(1, 3), g.Int(1, 3)));
        var mean = g.Normal(new Shape(c));
        var variance = g.Uniform(new Shape(c), 0.5, 2);
        return new OpCase("BatchNorm(evaluation, running statistics differentiated too)",
            t => Tensor.BatchNorm(t[0], t[1], t[2], t[3], t[4], training: false), [x, mean, variance, g.Normal(new Shape(c)), g.Normal(new Shape(c))]);
    }

    [Property]
    public void Conv2d(CaseSeed seed) => Check(Conv2dCase, seed);

    [Property]
    public void MaxPool2d(CaseSeed seed) => Check(MaxPool2dCase, seed);

    [Property]
    public void AvgPool2d(CaseSeed seed) => Check(AvgPool2dCase, seed);

    [Property]
    public void BatchNormTraining(CaseSeed seed) => Check(BatchNormTrainingCase, seed);

    [Property]
    public void BatchNormEvaluation(CaseSeed seed) => Check(BatchNormEvaluationCase, seed);

    /// <summary>A conv net's composition (conv, batch norm, ReLU, max pool, linear) checked to second order as one function.</summary>
    [Property(MaxTest = 3)]
    public void ConvBlock(CaseSeed seed) => Check(g =>
    {
        var x = g.Distinct(new Shape(2, 1, 5, 5), 0.3);
        var w = g.Normal(new Shape(2, 1, 2, 2), 0.7);
        var b = g.Normal(new Shape(2), 0.1);
        var gamma = g.AwayFromZero(new Shape(2), 0.5, 1.5);
        var beta = g.Normal(new Shape(2), 0.1);
        return new OpCase("Conv2d → BatchNorm → Tanh → MaxPool2d(2) → sum of squares",
            t => Tensor.MaxPool2d(Tensor.BatchNorm(Tensor.Conv2d(t[0], t[1], t[2]), null, null, t[3], t[4], training: true).Tanh(), 2).Square().Sum(),
            [x, w, b, gamma, beta]);
    }, seed);
}

/// <summary>The convolution gradchecks on the CPU.</summary>
public sealed class CpuConvGradCheckTests : ConvGradCheckTests
{
    protected override Device Device => Device.Cpu;
}
