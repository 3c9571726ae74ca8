using Higher.Conformance.Engine;
using Higher.Nn;

namespace Higher.Conformance.Conv;

/// <summary>
/// Failure twins of the convolution, pooling and batch-norm ops: bad shapes and parameters throw
/// ArgumentException whose message names the operands and their shapes.
/// </summary>
public abstract class ConvErrorTests : EngineTestBase
{
    private Tensor Ones(params int[] shape) => Tensor.Ones(new Shape(shape), DType.Float64, Device);

    private static void AssertMentions(Exception e, params string[] fragments)
    {
        foreach (var f in fragments)
        {
            Assert.True(e.Message.Contains(f, StringComparison.Ordinal), $"The message should mention \"{f}\": {e.Message}");
        }
    }

    [Fact]
    public void Conv2d_ThrowsForChannelMismatch()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(2, 3, 8, 8), Ones(4, 2, 3, 3)));
        AssertMentions(e, "[2, 3, 8, 8]", "[4, 2, 3, 3]", "3 channels", "expects 2");
    }

    [Fact]
    public void Conv2d_ThrowsForKernelLargerThanPaddedInput()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 1, 4, 4), Ones(1, 1, 3, 3), dilation: 2));
        AssertMentions(e, "[1, 1, 4, 4]", "[1, 1, 3, 3]", "5×5 effective", "padded input 4×4");
        var e2 = Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 1, 2, 5), Ones(1, 1, 5, 5), padding: (1, 0)));
        AssertMentions(e2, "[1, 1, 2, 5]", "[1, 1, 5, 5]", "padded input 4×5", "padding (1, 0)");
    }

    [Fact]
    public void Conv2d_ThrowsForGroupsNotDividingChannels()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 4, 5, 5), Ones(6, 2, 3, 3), groups: 3));
        AssertMentions(e, "groups = 3", "4 input channels", "[1, 4, 5, 5]");
        var e2 = Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 4, 5, 5), Ones(3, 2, 3, 3), groups: 2));
        AssertMentions(e2, "groups = 2", "3 output channels", "[3, 2, 3, 3]");
    }

    [Fact]
    public void Conv2d_ThrowsForBadRankBiasAndParameters()
    {
        RequireDevice();
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(3, 8), Ones(4, 3, 3, 3))), "[3, 8]", "[N, C, H, W]");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 3, 8, 8), Ones(4, 3, 3))), "[4, 3, 3]", "weight");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 3, 8, 8), Ones(4, 3, 3, 3), Ones(5))), "[5]", "[4, 3, 3, 3]", "4 elements");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 3, 8, 8), Ones(4, 3, 3, 3), stride: 0)), "stride", "0");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 3, 8, 8), Ones(4, 3, 3, 3), padding: (0, -1))), "padding", "(0, -1)");
        var f32 = Tensor.Ones([4, 3, 3, 3], DType.Float32, Device);
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 3, 8, 8), f32)), "float64", "float32", "[4, 3, 3, 3]");
    }

    [Fact]
    public void Pooling_ThrowsForBadShapesAndPadding()
    {
        RequireDevice();
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.MaxPool2d(Ones(1, 1, 2, 2), 3)), "[1, 1, 2, 2]", "3×3", "padded input 2×2");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.MaxPool2d(Ones(1, 1, 6, 6), 2, padding: 2)), "padding 2", "half of the kernel size 2");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.AvgPool2d(Ones(6, 6), 2)), "[6, 6]", "[N, C, H, W]");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.AvgPool2d(Ones(1, 1, 6, 6), 2, divisorOverride: 0)), "divisorOverride");
    }

    [Fact]
    public void BatchNorm_ThrowsForBadShapes()
    {
        RequireDevice();
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.BatchNorm(Ones(4, 3, 2, 2), null, null, Ones(2), null, training: true)),
            "weight", "[2]", "3 elements", "[4, 3, 2, 2]");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.BatchNorm(Ones(1, 3, 1, 1), null, null, training: true)),
            "more than 1 value per channel", "[1, 3, 1, 1]");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.BatchNorm(Ones(4, 3, 2, 2), null, null, training: false)),
            "running mean and variance", "[4, 3, 2, 2]");
        var bn = new BatchNorm2d(3);
        bn.To(DType.Float64).To(Device);
        AssertMentions(Assert.Throws<ArgumentException>(() => bn.Forward(Ones(4, 2, 5, 5))), "BatchNorm2d(3)", "[4, 2, 5, 5]");
        AssertMentions(Assert.Throws<ArgumentException>(() => bn.Forward(Ones(4, 3, 5))), "BatchNorm2d(3)", "[4, 3, 5]");
    }

    [Fact]
    public void ConvTransposeSamePaddingAndPad_ThrowForBadOperands()
    {
        RequireDevice();
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.ConvTranspose2d(Ones(1, 3, 4, 4), Ones(2, 3, 3, 3))),
            "ConvTranspose2d", "[1, 3, 4, 4]", "3 channels", "[2, 3, 3, 3]", "expects 2");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.ConvTranspose2d(Ones(1, 2, 4, 4), Ones(2, 3, 3, 3), stride: 2, outputPadding: 2)),
            "ConvTranspose2d", "output padding 2", "stride 2");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.ConvTranspose2d(Ones(1, 2, 4, 4), Ones(2, 3, 3, 3), Ones(4))),
            "ConvTranspose2d", "[4]", "3 elements");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 1, 5, 5), Ones(1, 1, 3, 3), stride: 2, padding: "same")),
            "Conv2d", "same", "stride 2", "[1, 1, 5, 5]");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Ones(1, 1, 5, 5), Ones(1, 1, 3, 3), padding: "full")), "\"full\"", "same");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.Conv1d(Ones(1, 2, 5, 5), Ones(1, 2, 3))), "Conv1d", "[1, 2, 5, 5]", "[N, C, L]");
        AssertMentions(Assert.Throws<ArgumentException>(() => F.Pad(Ones(1, 1, 3, 3), [3, 0], PadMode.Reflect)), "Reflect", "(3, 0)", "size 3", "[1, 1, 3, 3]");
        AssertMentions(Assert.Throws<ArgumentException>(() => F.Pad(Ones(1, 1, 3, 3), [1, 0, 1])), "[1, 0, 1]", "pairs", "[1, 1, 3, 3]");
        AssertMentions(Assert.Throws<ArgumentException>(() => F.Pad(Ones(3, 3), [-4, 0])), "(-4, 0)", "crop", "[3, 3]");
        AssertMentions(Assert.Throws<ArgumentException>(() => Tensor.AdaptiveAvgPool2d(Ones(1, 2, 4, 4), (0, 2))), "AdaptiveAvgPool2d", "(0, 2)", "[1, 2, 4, 4]");
    }

    [Fact]
    public void Conv2dLayer_ThrowsForGroupsNotDividingChannels()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => new Conv2d(4, 6, 3, groups: 4));
        AssertMentions(e, "groups = 4", "in channels (4)", "out channels (6)");
    }
}

/// <summary>The convolution failure twins on the managed CPU backend.</summary>
public sealed class ConvErrorTestsOnReference : ConvErrorTests
{
    protected override Device Device => Device.Cpu;
}
