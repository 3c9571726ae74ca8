using System.Text.Json;
using Higher.Conformance.Engine;
using Higher.Nn;

namespace Higher.Conformance.Conv;

/// <summary>
/// Convolution, pooling and batch norm against PyTorch (conv.json): forward values, VJPs for a
/// fixed upstream gradient, second-order terms (the squared norm of one VJP differentiated with
/// respect to the other operands), max-pool gradients on inputs full of ties (first-max routing),
/// and BatchNorm2d's running statistics over two training steps. float64 at 1e-10.
/// </summary>
public abstract class ConvFixtureTests : EngineTestBase
{
    public static TheoryData<string> Conv2dCases => ConvFixture.CaseNames("conv2d");

    public static TheoryData<string> MaxPool2dCases => ConvFixture.CaseNames("max_pool2d");

    public static TheoryData<string> AvgPool2dCases => ConvFixture.CaseNames("avg_pool2d");

    public static TheoryData<string> BatchNorm2dCases => ConvFixture.CaseNames("batch_norm2d");

    private Tensor Load(JsonElement parent, string property) => Load(ConvFixture.Array(parent, property)!);

    private static FixtureArray Expected(JsonElement parent, string property) => ConvFixture.Array(parent, property)!;

    private static Tensor SquaredNorm(Tensor t) => (t * t).Sum();

    [Theory]
    [MemberData(nameof(Conv2dCases))]
    public void Conv2d_ForwardVjpAndSecondOrderMatchTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("conv2d", name);
        var p = c.GetProperty("params");
        var x = Load(c, "x").WithRequiresGrad();
        var w = Load(c, "weight").WithRequiresGrad();
        var b = ConvFixture.Array(c, "bias") is { } bias ? Load(bias).WithRequiresGrad() : null;
        var y = Tensor.Conv2d(x, w, b, ConvFixture.Pair(p, "stride"), ConvFixture.Pair(p, "padding"), ConvFixture.Pair(p, "dilation"),
            p.GetProperty("groups").GetInt32());
        AssertClose(Expected(c, "output"), y, $"{name} output");

        Tensor[] diff = b is null ? [x, w] : [x, w, b];
        var grads = Autograd.Grad([y], diff, [Load(c, "grad_output")], createGraph: true);
        var expectedGrads = c.GetProperty("grads");
        AssertClose(Expected(expectedGrads, "x"), grads[0], $"{name} dL/dx");
        AssertClose(Expected(expectedGrads, "weight"), grads[1], $"{name} dL/dW");
        if (b is not null)
        {
            AssertClose(Expected(expectedGrads, "bias"), grads[2], $"{name} dL/db");
        }

        Tensor[] wrt = b is null ? [w] : [w, b];
        var fromDx = Autograd.Grad([SquaredNorm(grads[0]!)], wrt, allowUnused: true, retainGraph: true);
        var expectedFromDx = c.GetProperty("grad_sq_norm_dx_wrt");
        AssertClose(Expected(expectedFromDx, "weight"), fromDx[0] ?? Tensor.ZerosLike(w), $"{name} d||dL/dx||²/dW");
        if (b is not null)
        {
            AssertClose(Expected(expectedFromDx, "bias"), fromDx[1] ?? Tensor.ZerosLike(b), $"{name} d||dL/dx||²/db");
        }
        var fromDw = Autograd.Grad([SquaredNorm(grads[1]!)], [x], retainGraph: true);
        AssertClose(Expected(c.GetProperty("grad_sq_norm_dw_wrt"), "x"), fromDw[0], $"{name} d||dL/dW||²/dx");
    }

    [Theory]
    [MemberData(nameof(MaxPool2dCases))]
    public void MaxPool2d_ForwardAndFirstMaxGradientMatchTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("max_pool2d", name);
        var p = c.GetProperty("params");
        var x = Load(c, "x").WithRequiresGrad();
        var y = Tensor.MaxPool2d(x, ConvFixture.Pair(p, "kernel_size"), ConvFixture.Pair(p, "stride"),
            p.TryGetProperty("padding", out _) ? ConvFixture.Pair(p, "padding") : 0,
            p.TryGetProperty("dilation", out _) ? ConvFixture.Pair(p, "dilation") : 1,
            p.TryGetProperty("ceil_mode", out var ceil) && ceil.GetBoolean());
        AssertClose(Expected(c, "output"), y, $"{name} output");
        var gx = Autograd.Grad(y, x, Load(c, "grad_output"));
        AssertClose(Expected(c, "grad_x"), gx, $"{name} dL/dx");
    }

    [Theory]
    [MemberData(nameof(AvgPool2dCases))]
    public void AvgPool2d_ForwardAndGradientMatchTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("avg_pool2d", name);
        var p = c.GetProperty("params");
        var x = Load(c, "x").WithRequiresGrad();
        var y = Tensor.AvgPool2d(x, ConvFixture.Pair(p, "kernel_size"), ConvFixture.Pair(p, "stride"),
            p.TryGetProperty("padding", out _) ? ConvFixture.Pair(p, "padding") : 0,
            p.TryGetProperty("ceil_mode", out var ceil) && ceil.GetBoolean(),
            !p.TryGetProperty("count_include_pad", out var include) || include.GetBoolean(),
            p.TryGetProperty("divisor_override", out var divisor) ? divisor.GetInt32() : null);
        AssertClose(Expected(c, "output"), y, $"{name} output");
        var gx = Autograd.Grad(y, x, Load(c, "grad_output"));
        AssertClose(Expected(c, "grad_x"), gx, $"{name} dL/dx");
    }

    [Theory]
    [MemberData(nameof(BatchNorm2dCases))]
    public void BatchNorm2d_TrainingStepsRunningStatsAndEvaluationMatchTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("batch_norm2d", name);
        var p = c.GetProperty("params");
        var momentum = p.GetProperty("momentum");
        var bn = new BatchNorm2d(p.GetProperty("num_features").GetInt32(), p.GetProperty("eps").GetDouble(),
            momentum.ValueKind == JsonValueKind.Null ? null : momentum.GetDouble(),
            p.GetProperty("affine").GetBoolean(), p.GetProperty("track_running_stats").GetBoolean());
        bn.To(DType.Float64).To(Device);
        if (bn.Weight is not null)
        {
            bn.Weight.Data = Load(c, "weight");
            bn.Bias!.Data = Load(c, "bias");
        }

        Tensor[]? lastGrads = null;
        int step = 0;
        foreach (var s in c.GetProperty("train_steps").EnumerateArray())
        {
            lastGrads = RunStep(bn, s, $"{name} training step {++step}");
        }
        if (ConvFixture.Array(c, "grad_sq_norm_dx_wrt_weight") is { } expectedSecond)
        {
            var second = Autograd.Grad([SquaredNorm(lastGrads![0])], [bn.Weight!.Data], retainGraph: true);
            AssertClose(expectedSecond, second[0], $"{name} d||dL/dx||²/dγ (step 2)");
        }

        var buffers = c.GetProperty("buffers_after_training");
        if (buffers.ValueKind == JsonValueKind.Null)
        {
            Assert.Null(bn.RunningMean.Value);
            Assert.Null(bn.RunningVar.Value);
            Assert.Null(bn.NumBatchesTracked.Value);
        }
        else
        {
            AssertClose(Expected(buffers, "running_mean"), bn.RunningMean.Value, $"{name} running_mean");
            AssertClose(Expected(buffers, "running_var"), bn.RunningVar.Value, $"{name} running_var");
            Assert.Equal(buffers.GetProperty("num_batches_tracked").GetInt64(), bn.NumBatchesTracked.Value!.ToInt64Array()[0]);
            Assert.Equal(DType.Int64, bn.NumBatchesTracked.Value.DType);
        }

        bn.Eval();
        var meanBefore = bn.RunningMean.Value;
        RunStep(bn, c.GetProperty("eval_step"), $"{name} evaluation step");
        Assert.Same(meanBefore, bn.RunningMean.Value);
    }

    /// <summary>One forward of <paramref name="bn"/> on the step's input; checks the output and the VJPs, returns them (with graphs).</summary>
    private Tensor[] RunStep(BatchNorm2d bn, JsonElement s, string what)
    {
        var x = Load(s, "x").WithRequiresGrad();
        var y = bn.Forward(x);
        AssertClose(Expected(s, "output"), y, $"{what} output");
        Tensor[] diff = bn.Weight is null ? [x] : [x, bn.Weight.Data, bn.Bias!.Data];
        var grads = Autograd.Grad([y], diff, [Load(s, "grad_output")], createGraph: true);
        var expected = s.GetProperty("grads");
        AssertClose(Expected(expected, "x"), grads[0], $"{what} dL/dx");
        if (bn.Weight is not null)
        {
            AssertClose(Expected(expected, "weight"), grads[1], $"{what} dL/dγ");
            AssertClose(Expected(expected, "bias"), grads[2], $"{what} dL/dβ");
        }
        return grads.Select(g => g!).ToArray();
    }
}

/// <summary>The convolution fixtures on the managed CPU backend.</summary>
public sealed class ConvFixtureTestsOnReference : ConvFixtureTests
{
    protected override Device Device => Device.Cpu;
}
