using Higher.Conformance.Engine;
using Higher.Nn;

namespace Higher.Conformance.Conv;

/// <summary>
/// A <see cref="Sequential"/> runs a ReLU directly followed by max pooling as the pooling then the ReLU. These tests
/// hold it to the order the user wrote: the same bits as ReLU then <see cref="Tensor.MaxPool2d"/> applied by hand, in
/// the output, the first-order gradients and the second-order ones. The inputs are coarse values that tie, with
/// -0, +0, ±∞ and NaN among them, windows that overlap, are dilated, padded or cut short by ceil mode, and windows
/// whose values are all negative or zero, where the two orders pick different positions.
/// </summary>
public abstract class ReluPoolOrderTests : EngineTestBase
{
    public static TheoryData<int, int, int, int, bool> Windows => new()
    {
        { 2, 2, 0, 1, false },
        { 3, 1, 1, 1, false },
        { 3, 2, 1, 1, true },
        { 2, 1, 0, 2, false },
        { 3, 3, 0, 1, true },
    };

    private Tensor Input(DType dtype, bool withNaN, int seed)
    {
        var g = new Generator((ulong)seed);
        // Halves in [-2, 2]: many ties, many exact zeros, and windows that hold no positive value.
        var values = Tensor.Normal([2, 3, 7, 8], 0, 1, DType.Float64, g).ToDoubleArray().Select(v => Math.Round(v * 2) / 2).ToArray();
        values[5] = -0.0;
        values[6] = 0.0;
        values[17] = -0.0;
        values[40] = double.PositiveInfinity;
        values[41] = double.PositiveInfinity;
        values[90] = double.NegativeInfinity;
        for (int i = 112; i < 136; i++)
        {
            // A whole row band of one plane at or below zero.
            values[i] = -Math.Abs(values[i]);
        }
        if (withNaN)
        {
            values[60] = double.NaN;
            values[200] = double.NaN;
        }
        return Tensor.FromArray(values, new Shape(2, 3, 7, 8), Device).To(dtype);
    }

    private static void AssertSameBits(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.Shape, actual.Shape);
        var e = expected.ToDoubleArray();
        var a = actual.ToDoubleArray();
        for (int i = 0; i < e.Length; i++)
        {
            Assert.True(BitConverter.DoubleToInt64Bits(e[i]) == BitConverter.DoubleToInt64Bits(a[i]), $"{what}[{i}]: {a[i]:R}, expected {e[i]:R}");
        }
    }

    /// <summary>y, ∂⟨v, y⟩/∂x, and the second-order ∂⟨u, ∂⟨v, y⟩/∂x⟩/∂v, for y from <paramref name="forward"/>.</summary>
    private static Tensor[] Derivatives(Func<Tensor, Tensor> forward, Tensor x0, Tensor v0, Tensor u)
    {
        var x = x0.Detach().WithRequiresGrad();
        var v = v0.Detach().WithRequiresGrad();
        var y = forward(x);
        var gx = Autograd.Grad([(y * v).Sum()], [x], createGraph: true)[0]!;
        var gv = Autograd.Grad([(gx * u).Sum()], [v])[0]!;
        return [y, gx, gv];
    }

    [Theory]
    [MemberData(nameof(Windows))]
    public void SequentialReluThenPool_HasTheBitsOfTheWrittenOrder(int kernel, int stride, int padding, int dilation, bool ceil)
    {
        RequireDevice();
        foreach (var dtype in new[] { DType.Float64, DType.Float32 })
        {
            foreach (bool withNaN in new[] { false, true })
            {
                var x = Input(dtype, withNaN, 3 + kernel + stride);
                var net = new Sequential(new Relu(), new MaxPool2d(kernel, stride, padding, dilation, ceil));
                var written = Tensor.MaxPool2d(x.Relu(), kernel, stride, padding, dilation, ceil);
                var g = new Generator(9);
                var v = Tensor.Normal(written.Shape, 0, 1, dtype, g, Device);
                var u = Tensor.Normal(x.Shape, 0, 1, dtype, g, Device);
                var expected = Derivatives(h => Tensor.MaxPool2d(h.Relu(), kernel, stride, padding, dilation, ceil), x, v, u);
                var actual = Derivatives(net.Forward, x, v, u);
                string what = $"{dtype}, NaN {withNaN}, window {kernel}/{stride}/{padding}/{dilation}/{ceil}";
                // The Sequential took the reordered path: its output is the ReLU's.
                Assert.Equal("ReluBackward", actual[0].GradFnName);
                Assert.Equal("MaxPool2dBackward", expected[0].GradFnName);
                AssertSameBits(expected[0], actual[0], $"{what}: y");
                AssertSameBits(expected[1], actual[1], $"{what}: dx");
                AssertSameBits(expected[2], actual[2], $"{what}: d(dx·u)/dv");
            }
        }
    }

    [Fact]
    public void TheConvNetBlock_HasTheBitsOfTheWrittenOrder_ToTheSecondOrderInItsWeights()
    {
        RequireDevice();
        var g = new Generator(21);
        var conv = new Conv2d(2, 4, 3, generator: g);
        var bn = new BatchNorm2d(4, momentum: 1);
        var head = new Linear(4 * 3 * 3, 3, generator: g);
        foreach (var m in new Module[] { conv, bn, head })
        {
            m.To(DType.Float64).To(Device);
        }
        var x = Tensor.Normal([5, 2, 8, 8], 0, 1, DType.Float64, g, Device);
        var net = new Sequential(conv, bn, new Relu(), new MaxPool2d(2), new Flatten(), head);
        Tensor Written(Tensor h) => head.Forward(Tensor.MaxPool2d(bn.Forward(conv.Forward(h)).Relu(), 2).Flatten(1));
        var parameters = net.Parameters().ToArray();

        Tensor[] SecondOrder(Func<Tensor, Tensor> forward)
        {
            var loss = forward(x).Square().Sum();
            var grads = Autograd.Grad([loss], parameters, createGraph: true);
            var norm = grads.Select(gr => gr!.Square().Sum()).Aggregate((a, b) => a + b);
            return [loss, .. grads!, .. Autograd.Grad([norm], parameters)!];
        }

        var expected = SecondOrder(Written);
        var actual = SecondOrder(net.Forward);
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            AssertSameBits(expected[i], actual[i], $"result {i}");
        }
    }
}

/// <summary>The ReLU-and-pool order tests on the managed CPU backend.</summary>
public sealed class ReluPoolOrderTestsOnReference : ReluPoolOrderTests
{
    protected override Device Device => Device.Cpu;
}
