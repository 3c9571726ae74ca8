// Gradcheck and gradgradcheck of convolution, pooling and batch norm (float64), with geometries
// drawn from a case seed: stride, padding, dilation, groups, non-square kernels, bias or not.
// Replay a failure as in OpProperties.cs: [Property(Replay = "(..., ...)")] or a [Fact] calling
// Check(ConvCatalog.Conv2d, new CaseSeed(...)).

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

    [Property]
    public void Conv2d(CaseSeed seed) => Check(ConvCatalog.Conv2d, seed);

    [Property]
    public void MaxPool2d(CaseSeed seed) => Check(ConvCatalog.MaxPool2d, seed);

    [Property]
    public void AvgPool2d(CaseSeed seed) => Check(ConvCatalog.AvgPool2d, seed);

    [Property]
    public void Conv2dSame(CaseSeed seed) => Check(ConvCatalog.Conv2dSame, seed);

    [Property]
    public void ConvTranspose2d(CaseSeed seed) => Check(ConvCatalog.ConvTranspose2d, seed);

    [Property]
    public void Conv1dAndTranspose(CaseSeed seed) => Check(ConvCatalog.Conv1dAndTranspose, seed);

    [Property]
    public void AvgPool2dDivisorOverride(CaseSeed seed) => Check(ConvCatalog.AvgPool2dDivisorOverride, seed);

    [Property]
    public void AdaptiveAvgPool2d(CaseSeed seed) => Check(ConvCatalog.AdaptiveAvgPool2d, seed);

    [Property]
    public void Pad(CaseSeed seed) => Check(ConvCatalog.Pad, seed);

    [Property]
    public void BatchNormTraining(CaseSeed seed) => Check(ConvCatalog.BatchNormTraining, seed);

    [Property]
    public void BatchNormEvaluation(CaseSeed seed) => Check(ConvCatalog.BatchNormEvaluation, seed);

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
