using System.Text.Json;
using Higher.Conformance.Engine;

namespace Higher.Conformance.Conv;

/// <summary>
/// The options of the convolution, pooling and padding primitives against PyTorch (conv.json,
/// written by tools/fixtures/gen_conv_fixtures.py): padding "same" with odd and even kernels,
/// transposed convolution (output padding, dilation, groups), 1-D convolutions, max pooling with
/// indices, average and adaptive average pooling, F.pad's four modes. Each case checks the forward
/// value, the VJPs of L = ⟨y, g⟩ for a fixed g, and the second-order term ∇‖∂L/∂x‖² with respect
/// to the other operands and to g (which, for the linear pooling and padding ops, is their double
/// backward). float64 at 1e-10.
/// </summary>
public abstract class ConvPrimitiveFixtureTests : EngineTestBase
{
    public static TheoryData<string> SameCases => ConvFixture.CaseNames("conv2d_same");

    public static TheoryData<string> TransposeCases => ConvFixture.CaseNames("conv_transpose2d");

    public static TheoryData<string> Conv1dCases => ConvFixture.CaseNames("conv1d");

    public static TheoryData<string> MaxPoolCases => ConvFixture.CaseNames("max_pool2d_indices");

    public static TheoryData<string> AvgPoolCases => ConvFixture.CaseNames("avg_pool2d_second");

    public static TheoryData<string> AdaptiveCases => ConvFixture.CaseNames("adaptive_avg_pool2d");

    public static TheoryData<string> PadCases => ConvFixture.CaseNames("pad");

    private static Size2d Pair(JsonElement p, string name, Size2d fallback) =>
        p.TryGetProperty(name, out _) ? ConvFixture.Pair(p, name) : fallback;

    /// <summary>Runs <paramref name="f"/> on the case's inputs and compares the output, the VJPs and the second-order terms.</summary>
    private Tensor[] CheckCase(JsonElement c, Func<Tensor[], Tensor> f, string what)
    {
        var inputs = c.GetProperty("inputs").EnumerateArray().Select(e => Load(FixtureArray.Parse(e)).WithRequiresGrad()).ToArray();
        var y = f(inputs);
        AssertClose(ConvFixture.Array(c, "output")!, y, $"{what} output");
        var g = Load(ConvFixture.Array(c, "grad_output")!).WithRequiresGrad();
        var grads = Autograd.Grad([y], inputs, [g], createGraph: true);
        var expectedGrads = c.GetProperty("grads").EnumerateArray().Select(FixtureArray.Parse).ToArray();
        for (int i = 0; i < inputs.Length; i++)
        {
            AssertClose(expectedGrads[i], grads[i], $"{what} VJP of input {i}");
        }
        Tensor[] targets = [.. inputs[1..], g];
        var second = Autograd.Grad([(grads[0]! * grads[0]!).Sum()], targets, allowUnused: true);
        var expectedSecond = c.GetProperty("grad_sq_norm_d0_wrt").EnumerateArray().Select(FixtureArray.Parse).ToArray();
        for (int i = 0; i < targets.Length; i++)
        {
            AssertClose(expectedSecond[i], second[i] ?? Tensor.ZerosLike(targets[i]),
                $"{what} d‖dL/dx‖²/d{(i == targets.Length - 1 ? "g" : $"(input {i + 1})")}");
        }
        return inputs;
    }

    [Theory]
    [MemberData(nameof(SameCases))]
    public void Conv2dSamePadding_MatchesTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("conv2d_same", name);
        var p = c.GetProperty("params");
        var dilation = ConvFixture.Pair(p, "dilation");
        int groups = p.GetProperty("groups").GetInt32();
        CheckCase(c, t => Tensor.Conv2d(t[0], t[1], t[2], padding: "same", dilation: dilation, groups: groups), name);
    }

    [Theory]
    [MemberData(nameof(TransposeCases))]
    public void ConvTranspose2d_MatchesTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("conv_transpose2d", name);
        var p = c.GetProperty("params");
        Size2d stride = ConvFixture.Pair(p, "stride"), padding = ConvFixture.Pair(p, "padding");
        Size2d outputPadding = ConvFixture.Pair(p, "output_padding"), dilation = ConvFixture.Pair(p, "dilation");
        int groups = p.GetProperty("groups").GetInt32();
        CheckCase(c, t => Tensor.ConvTranspose2d(t[0], t[1], t.Length > 2 ? t[2] : null, stride, padding, outputPadding, groups, dilation), name);
    }

    /// <summary>The layers: Nn.ConvTranspose2d (weight [in, out/groups, kh, kw], torch's fan-in bound) and Nn.AdaptiveAvgPool2d with torch's values loaded.</summary>
    [Fact]
    public void ConvTranspose2dAndAdaptiveAvgPool2dLayers_MatchTorch()
    {
        RequireDevice();
        var c = ConvFixture.Case("conv_transpose2d", "stride2_padding1_output_padding1");
        var inputs = c.GetProperty("inputs").EnumerateArray().Select(e => Load(FixtureArray.Parse(e))).ToArray();
        var layer = new global::Higher.Nn.ConvTranspose2d(2, 3, 3, stride: 2, padding: 1, outputPadding: 1);
        Assert.Equal([2, 3, 3, 3], layer.Weight.Data.Shape.ToArray());
        double bound = 1 / Math.Sqrt(3 * 3 * 3);
        Assert.All(layer.Bias!.Data.ToDoubleArray(), b => Assert.InRange(Math.Abs(b), 0, bound));
        layer.To(DType.Float64).To(Device);
        layer.Weight.Data = inputs[1];
        layer.Bias!.Data = inputs[2];
        AssertClose(ConvFixture.Array(c, "output")!, layer.Forward(inputs[0]), "Nn.ConvTranspose2d output");

        var a = ConvFixture.Case("adaptive_avg_pool2d", "7x5_to_3x2");
        var x = Load(FixtureArray.Parse(a.GetProperty("inputs")[0]));
        AssertClose(ConvFixture.Array(a, "output")!, new global::Higher.Nn.AdaptiveAvgPool2d((3, 2)).Forward(x), "Nn.AdaptiveAvgPool2d output");
    }

    [Theory]
    [MemberData(nameof(Conv1dCases))]
    public void Conv1dAndConvTranspose1d_MatchTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("conv1d", name);
        var p = c.GetProperty("params");
        int stride = p.GetProperty("stride").GetInt32(), padding = p.GetProperty("padding").GetInt32();
        int dilation = p.GetProperty("dilation").GetInt32(), groups = p.GetProperty("groups").GetInt32();
        int outputPadding = p.GetProperty("output_padding").GetInt32();
        Func<Tensor[], Tensor> f = p.GetProperty("kind").GetString() switch
        {
            "conv1d" => t => Tensor.Conv1d(t[0], t[1], t.Length > 2 ? t[2] : null, stride, padding, dilation, groups),
            "conv1d_same" => t => Tensor.Conv1d(t[0], t[1], t.Length > 2 ? t[2] : null, dilation: dilation, groups: groups, paddingMode: "same"),
            _ => t => Tensor.ConvTranspose1d(t[0], t[1], t.Length > 2 ? t[2] : null, stride, padding, outputPadding, groups, dilation),
        };
        CheckCase(c, f, name);
    }

    [Theory]
    [MemberData(nameof(MaxPoolCases))]
    public void MaxPool2dWithIndices_MatchesTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("max_pool2d_indices", name);
        var p = c.GetProperty("params");
        var kernel = ConvFixture.Pair(p, "kernel_size");
        Size2d stride = Pair(p, "stride", kernel), padding = Pair(p, "padding", 0), dilation = Pair(p, "dilation", 1);
        bool ceil = p.TryGetProperty("ceil_mode", out var ceilMode) && ceilMode.GetBoolean();
        var inputs = CheckCase(c, t => Tensor.MaxPool2d(t[0], kernel, stride, padding, dilation, ceil), name);
        var (_, indices) = Tensor.MaxPool2dWithIndices(inputs[0], kernel, stride, padding, dilation, ceil);
        var expected = ConvFixture.Array(c, "indices")!;
        Assert.Equal(DType.Int64, indices.DType);
        Assert.Equal(expected.Shape, indices.Shape.ToArray());
        Assert.Equal(expected.Integers, indices.ToInt64Array());
    }

    [Theory]
    [MemberData(nameof(AvgPoolCases))]
    public void AvgPool2d_DoubleBackwardMatchesTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("avg_pool2d_second", name);
        var p = c.GetProperty("params");
        Size2d kernel = ConvFixture.Pair(p, "kernel_size"), stride = ConvFixture.Pair(p, "stride"), padding = ConvFixture.Pair(p, "padding");
        bool ceil = p.GetProperty("ceil_mode").GetBoolean(), includePad = p.GetProperty("count_include_pad").GetBoolean();
        int? divisor = p.TryGetProperty("divisor_override", out var d) ? d.GetInt32() : null;
        CheckCase(c, t => Tensor.AvgPool2d(t[0], kernel, stride, padding, ceil, includePad, divisor), name);
    }

    [Theory]
    [MemberData(nameof(AdaptiveCases))]
    public void AdaptiveAvgPool2d_MatchesTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("adaptive_avg_pool2d", name);
        var size = ConvFixture.Pair(c.GetProperty("params"), "output_size");
        CheckCase(c, t => Tensor.AdaptiveAvgPool2d(t[0], size), name);
    }

    [Theory]
    [MemberData(nameof(PadCases))]
    public void Pad_MatchesTorch(string name)
    {
        RequireDevice();
        var c = ConvFixture.Case("pad", name);
        var p = c.GetProperty("params");
        var pads = p.GetProperty("pads").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var mode = p.GetProperty("mode").GetString() switch
        {
            "reflect" => PadMode.Reflect,
            "replicate" => PadMode.Replicate,
            "circular" => PadMode.Circular,
            _ => PadMode.Constant,
        };
        double value = p.GetProperty("value").GetDouble();
        CheckCase(c, t => F.Pad(t[0], pads, mode, value), name);
    }
}

/// <summary>The primitive-option fixtures on the managed CPU backend.</summary>
public sealed class ConvPrimitiveFixtureTestsOnReference : ConvPrimitiveFixtureTests
{
    protected override Device Device => Device.Cpu;
}

/// <summary>The primitive-option fixtures on the CUDA backend.</summary>
public sealed class ConvPrimitiveFixtureTestsOnCuda : ConvPrimitiveFixtureTests
{
    protected override Device Device => Device.Cuda(0);

    protected override string? SkipReason => SharedCuda.SkipReason;
}
