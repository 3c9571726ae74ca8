namespace Higher.Conformance.Engine;

/// <summary>
/// Behaviour of the tape and of tensors: grad mode, detaching, accumulation, derivatives of any
/// order, unused and non-leaf inputs, retained graphs, formatting, zero-size and scalar tensors,
/// seeded random draws and the creation functions.
/// </summary>
public abstract class AutogradTests : EngineTestBase
{
    private Tensor Ones(params int[] shape) => Tensor.Ones(new Shape(shape), DType.Float64, Device);

    private Tensor Zeros(params int[] shape) => Tensor.Zeros(new Shape(shape), DType.Float64, Device);

    private string DeviceSuffix => Device == Device.Cpu ? "" : $", device='{Device}'";

    private static void AssertValues(double[] expected, Tensor actual, double tolerance = 1e-12)
    {
        Numeric.AssertClose(expected, actual.ToDoubleArray(), tolerance, "values");
    }

    // ------------------------------------------------------------------ grad mode

    [Fact]
    public void NoGrad_StopsRecordingOnThisThreadOnly()
    {
        RequireDevice();
        var x = Ones(2).WithRequiresGrad();
        bool otherThreadEnabled = false, otherThreadRecorded = false;
        using (Autograd.NoGrad())
        {
            Assert.False(Autograd.IsGradEnabled);
            var y = x * 2.0;
            Assert.False(y.RequiresGrad);
            Assert.True(y.IsLeaf);
            Assert.Null(y.GradFnName);

            Exception? failure = null;
            var thread = new Thread(() =>
            {
                try
                {
                    otherThreadEnabled = Autograd.IsGradEnabled;
                    otherThreadRecorded = (x * 2.0).RequiresGrad;
                }
                catch (Exception e)
                {
                    failure = e;
                }
            });
            thread.Start();
            thread.Join();
            Assert.Null(failure);
            Assert.False(Autograd.IsGradEnabled);
        }
        Assert.True(otherThreadEnabled);
        Assert.True(otherThreadRecorded);
        Assert.True(Autograd.IsGradEnabled);
        Assert.True((x * 2.0).RequiresGrad);
    }

    [Fact]
    public void NoGrad_ScopesNestAndEnableGradReenables()
    {
        RequireDevice();
        var x = Ones(2).WithRequiresGrad();
        using (Autograd.NoGrad())
        {
            using (Autograd.NoGrad())
            {
                Assert.False(Autograd.IsGradEnabled);
                using (Autograd.EnableGrad())
                {
                    Assert.True(Autograd.IsGradEnabled);
                    Assert.Equal("AffineBackward", (x * 2.0).GradFnName);
                }
                Assert.False(Autograd.IsGradEnabled);
            }
            Assert.False(Autograd.IsGradEnabled);
        }
        Assert.True(Autograd.IsGradEnabled);
    }

    [Fact]
    public void Detach_CutsTheTapeButSharesStorageAndVersion()
    {
        RequireDevice();
        var x = F64([1, 2, 3], 3).WithRequiresGrad();
        var d = x.Detach();
        Assert.False(d.RequiresGrad);
        Assert.True(d.IsLeaf);
        Assert.Same(x.Storage, d.Storage);

        // d/dx Σ detach(x)·x = detach(x): the detached factor is a constant.
        var g = Autograd.Grad((d * x).Sum(), x);
        AssertValues([1, 2, 3], g);

        // An in-place change through the detached view is seen by x and by the tape.
        var y = (x * x).Sum();
        d.MulInPlace(2);
        AssertValues([2, 4, 6], x);
        var e = Assert.Throws<InvalidOperationException>(() => y.Backward());
        Assert.Contains("MulBackward", e.Message, StringComparison.Ordinal);
    }

    // ------------------------------------------------------------------ backward and grad

    [Fact]
    public void Backward_AccumulatesIntoGradAcrossCalls()
    {
        RequireDevice();
        var x = F64([1, -2, 3], 3).WithRequiresGrad();
        Assert.Null(x.Grad);
        var h = x * x;
        h.Sum().Backward();
        AssertValues([2, -4, 6], x.Grad!);
        Assert.False(x.Grad!.RequiresGrad);
        Assert.Null(h.Grad);

        (x * 3.0).Sum().Backward();
        AssertValues([5, -1, 9], x.Grad!);

        x.Grad = null;
        x.Exp().Sum().Backward();
        AssertValues([Math.Exp(1), Math.Exp(-2), Math.Exp(3)], x.Grad!);
    }

    [Fact]
    public void Backward_WithGradientForANonScalarOutput()
    {
        RequireDevice();
        var x = F64([1, 2], 2).WithRequiresGrad();
        var y = x * x;
        y.Backward(F64([10, -1], 2));
        AssertValues([20, -4], x.Grad!);
    }

    [Fact]
    public void Backward_WithCreateGraphLeavesADifferentiableGrad()
    {
        RequireDevice();
        var x = F64([0.5, -1.5], 2).WithRequiresGrad();
        x.Pow(3).Sum().Backward(createGraph: true);
        var g = x.Grad!;
        Assert.True(g.RequiresGrad);
        AssertValues([0.75, 6.75], g);
        var gg = Autograd.Grad(g.Sum(), x);
        AssertValues([3, -9], gg);
    }

    [Fact]
    public void CreateGraph_GivesThirdAndFourthDerivativesOfXToTheFourth()
    {
        RequireDevice();
        double[] xs = [-1.3, 0.4, 2.0];
        var x = F64(xs, 3).WithRequiresGrad();
        var d1 = Autograd.Grad(x.Pow(4).Sum(), x, createGraph: true);
        var d2 = Autograd.Grad(d1.Sum(), x, createGraph: true);
        var d3 = Autograd.Grad(d2.Sum(), x, createGraph: true);
        var d4 = Autograd.Grad(d3.Sum(), x, createGraph: true);
        AssertValues(xs.Select(v => 4 * v * v * v).ToArray(), d1);
        AssertValues(xs.Select(v => 12 * v * v).ToArray(), d2);
        AssertValues(xs.Select(v => 24 * v).ToArray(), d3);
        AssertValues([24, 24, 24], d4);
        Assert.True(d3.RequiresGrad);
    }

    [Fact]
    public void CreateGraph_GivesFourDerivativesOfAProductChain()
    {
        RequireDevice();
        var x = Scalar64(1.7).WithRequiresGrad();
        var d = x * x * x * x;
        double[] expected = [4 * Math.Pow(1.7, 3), 12 * 1.7 * 1.7, 24 * 1.7, 24];
        foreach (double e in expected)
        {
            d = Autograd.Grad(d, x, createGraph: true);
            Assert.Equal(e, d.Item(), 1e-12);
        }
    }

    [Fact]
    public void CreateGraph_GivesDerivativesOfSineByClosedForm()
    {
        RequireDevice();
        double[] xs = [-2.1, 0.3, 1.2];
        var x = F64(xs, 3).WithRequiresGrad();
        Func<double, double>[] closed = [Math.Cos, v => -Math.Sin(v), v => -Math.Cos(v), Math.Sin];
        var d = x.Sin();
        foreach (var f in closed)
        {
            d = Autograd.Grad(d.Sum(), x, createGraph: true);
            AssertValues(xs.Select(f).ToArray(), d);
        }
    }

    [Fact]
    public void GradFnName_NamesTheRecordedOp()
    {
        RequireDevice();
        var x = F64([1, 4, 2, 3], 2, 2).WithRequiresGrad();
        Assert.True(x.IsLeaf);
        Assert.Null(x.GradFnName);
        Assert.Equal("AmaxBackward", x.Amax().GradFnName);
        Assert.Equal("AminBackward", x.Amin().GradFnName);
        Assert.Equal("MaxBackward", x.Max(0, keepDim: true).Values.GradFnName);
        Assert.Equal("MinBackward", x.Min(0, keepDim: true).Values.GradFnName);
        Assert.Equal("MatMulBackward", x.MatMul(x).GradFnName);
        Assert.Equal("SumBackward", x.Sum().GradFnName);
    }

    [Fact]
    public void Grad_WithoutCreateGraphReturnsConstants()
    {
        RequireDevice();
        var x = F64([1, 2], 2).WithRequiresGrad();
        var g = Autograd.Grad(x.Pow(3).Sum(), x);
        Assert.False(g.RequiresGrad);
        Assert.True(g.IsLeaf);
    }

    [Fact]
    public void Grad_AllowUnusedReturnsNullForUnusedInputs()
    {
        RequireDevice();
        var x = F64([1, 2], 2).WithRequiresGrad();
        var unused = Ones(3).WithRequiresGrad();
        var grads = Autograd.Grad([(x * x).Sum()], [x, unused], allowUnused: true);
        AssertValues([2, 4], grads[0]!);
        Assert.Null(grads[1]);
    }

    [Fact]
    public void Grad_WithRespectToANonLeaf()
    {
        RequireDevice();
        var x = F64([1, -2], 2).WithRequiresGrad();
        var h = x * 3.0;
        Assert.False(h.IsLeaf);
        var y = (h * h).Sum();
        var grads = Autograd.Grad([y], [h, x]);
        AssertValues([6, -12], grads[0]!);
        AssertValues([18, -36], grads[1]!);
    }

    [Fact]
    public void Grad_SumsOverSeveralOutputsWithTheirGradOutputs()
    {
        RequireDevice();
        var x = F64([1, 2], 2).WithRequiresGrad();
        var a = x * x;
        var b = x.Sum();
        var g = Autograd.Grad([a, b], [x], [F64([1, 10], 2), null])[0]!;
        AssertValues([2 + 1, 40 + 1], g);
    }

    [Fact]
    public void RetainGraph_AllowsASecondBackward()
    {
        RequireDevice();
        var x = F64([0, 1], 2).WithRequiresGrad();
        var y = x.Exp().Sum();
        y.Backward(retainGraph: true);
        y.Backward();
        AssertValues([2, 2 * Math.E], x.Grad!);

        var z = (x * x).Sum();
        var g1 = Autograd.Grad([z], [x], retainGraph: true)[0]!;
        var g2 = Autograd.Grad([z], [x])[0]!;
        AssertValues(g1.ToDoubleArray(), g2);
    }

    [Fact]
    public void SharedSubgraph_AccumulatesGradientsFromEveryPath()
    {
        RequireDevice();
        var x = F64([0.5, 2], 2).WithRequiresGrad();
        var h = x.Exp();
        var y = (h * h + h * x).Sum();
        var g = Autograd.Grad(y, x);
        // d/dx (e^{2x} + x e^x) = 2e^{2x} + e^x + x e^x.
        AssertValues(new[] { 0.5, 2.0 }.Select(v => 2 * Math.Exp(2 * v) + Math.Exp(v) + v * Math.Exp(v)).ToArray(), g);
    }

    [Fact]
    public void Grad_RepeatedAndNonLeafTargets_AndTargetsOfTheLastPassDoNotCarryOver()
    {
        // The engine's target maps live in the thread's scratch during a pass: a repeated target gets
        // its gradient in every position, and the next pass on the thread knows only its own targets.
        RequireDevice();
        var x = Ones(3).WithRequiresGrad();
        var w = Ones(3).WithRequiresGrad();
        var h = x * 3.0;
        var loss = (h * w).Sum();
        var grads = Autograd.Grad([loss], [x, h, x, w], retainGraph: true);
        AssertValues([3, 3, 3], grads[0]!);
        AssertValues([1, 1, 1], grads[1]!);
        AssertValues([3, 3, 3], grads[2]!);
        AssertValues([3, 3, 3], grads[3]!);

        var other = Ones(3).WithRequiresGrad();
        var second = Autograd.Grad([loss], [other, w], allowUnused: true, retainGraph: true);
        Assert.Null(second[0]);
        AssertValues([3, 3, 3], second[1]!);
        var e = Assert.Throws<InvalidOperationException>(() => Autograd.Grad([loss], [other], retainGraph: true));
        Assert.Contains("was not used", e.Message, StringComparison.Ordinal);

        loss.Backward();
        AssertValues([3, 3, 3], x.Grad!);
        AssertValues([3, 3, 3], w.Grad!);
        Assert.Null(other.Grad);
    }

    // ------------------------------------------------------------------ formatting and Item

    [Fact]
    public void ToString_FormatsLikePyTorch()
    {
        RequireDevice();
        Assert.Equal("tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], dtype=float64" + DeviceSuffix + ")", F64([1, 2, 3, 4], 2, 2).ToString());
        Assert.Equal("tensor([0.5000, -1.2500, 3.0000]" + DeviceSuffix + ", requires_grad=True)", F32([0.5f, -1.25f, 3f], 3).WithRequiresGrad().ToString());
        Assert.Equal("tensor(2.5000, dtype=float64" + DeviceSuffix + ")", Scalar64(2.5).ToString());
        Assert.Equal("tensor([1, -2, 3], dtype=int64" + DeviceSuffix + ")", I64([1, -2, 3], 3).ToString());
        Assert.Equal("tensor([True, False], dtype=bool" + DeviceSuffix + ")", Tensor.FromArray([true, false], null, Device).ToString());
        Assert.Equal("tensor([[[0.0000, 1.0000],\n         [2.0000, 3.0000]],\n\n        [[4.0000, 5.0000],\n         [6.0000, 7.0000]]], dtype=float64" + DeviceSuffix + ")",
            F64([0, 1, 2, 3, 4, 5, 6, 7], 2, 2, 2).ToString());
        Assert.Equal("tensor([], dtype=float64" + DeviceSuffix + ")", Zeros(0).ToString());
        var y = F64([1, 2], 2).WithRequiresGrad() * 2.0;
        Assert.Equal("tensor([2.0000, 4.0000], dtype=float64" + DeviceSuffix + ", grad_fn=<AffineBackward>)", y.ToString());
        Assert.Equal("tensor(<[1001], 1001 elements>, dtype=float64" + DeviceSuffix + ")", Zeros(1001).ToString());
    }

    [Fact]
    public void Item_ReturnsTheOnlyElement()
    {
        RequireDevice();
        Assert.Equal(3.25, Scalar64(3.25).Item());
        Assert.Equal(-7.5, F64([-7.5], 1, 1).Item());
        Assert.Equal(5L, I64([5], 1).Item<long>());
        Assert.Equal(0.5f, Tensor.Scalar(0.5, DType.Float32, Device).Item<float>());
        Assert.Equal(6.0, F64([1, 2, 3], 3).Sum().Item());
        // Every dtype, read without a cast: a float32 value that is not a double's rounding, int64 beyond float's
        // 24 bits, and both bools.
        Assert.Equal((double)0.1f, Tensor.Scalar(0.1, DType.Float32, Device).Item());
        Assert.Equal(16777217.0, I64([16777217], 1).Item());
        Assert.Equal(1.0, (F64([2], 1) > 1).Item());
        Assert.Equal(0.0, (F64([0], 1) > 1).Item());
    }

    // ------------------------------------------------------------------ zero-size and scalar tensors

    [Fact]
    public void ZeroSizeTensors_FlowThroughOps()
    {
        RequireDevice();
        var z = Zeros(0, 3);
        Assert.Equal([0, 3], (z + Ones(3)).Shape.ToArray());
        Assert.Equal(0.0, z.Sum().Item());
        AssertValues([0, 0, 0], z.Sum(0));
        Assert.Equal([0], z.Sum(1).Shape.ToArray());
        Assert.True(double.IsNaN(z.Mean().Item()));
        Assert.Equal([0, 2], Tensor.MatMul(z, Ones(3, 2)).Shape.ToArray());
        AssertValues(new double[6], Tensor.MatMul(Zeros(2, 0), Zeros(0, 3)));
        Assert.Equal([2, 3], Tensor.Cat([z, Ones(2, 3)], 0).Shape.ToArray());
        Assert.Equal([0, 4], Zeros(0, 4).Softmax(1).Shape.ToArray());
        Assert.Equal([3, 0], z.T.Shape.ToArray());
        Assert.Equal([0], z.Reshape(-1).Shape.ToArray());
    }

    [Fact]
    public void ZeroSizeTensors_HaveZeroSizeGradients()
    {
        RequireDevice();
        var x = Zeros(0, 3).WithRequiresGrad();
        var w = Ones(3).WithRequiresGrad();
        var y = (x * w).Exp().Sum();
        Assert.Equal(0.0, y.Item());
        var grads = Autograd.Grad([y], [x, w]);
        Assert.Equal([0, 3], grads[0]!.Shape.ToArray());
        AssertValues([0, 0, 0], grads[1]!);
    }

    [Fact]
    public void ScalarTensors_FlowThroughOpsAndGradients()
    {
        RequireDevice();
        var s = Scalar64(3).WithRequiresGrad();
        var cube = s * s * s;
        Assert.Equal(0, cube.Rank);
        Assert.Equal(27.0, cube.Item());
        Assert.Equal(27.0, Autograd.Grad(cube, s).Item(), 1e-12);

        var v = F64([1, 2], 2);
        var y = (s * v).Sum();
        var g = Autograd.Grad(y, s);
        Assert.Equal(0, g.Rank);
        Assert.Equal(3.0, g.Item(), 1e-12);

        Assert.Equal([1], s.Reshape(1).Shape.ToArray());
        Assert.Equal(0, s.Reshape(1).Reshape().Rank);
        Assert.Equal(0, s.Sum().Rank);
        Assert.Equal(3.0, s.Exp().Log().Item(), 1e-12);
    }

    [Fact]
    public void Sum_OfMasksAndIntegersIsAnInt64Count()
    {
        RequireDevice();
        var mask = F64([1, -2, 3, 0], 4) > 0;
        var count = mask.Sum();
        Assert.Equal(DType.Int64, count.DType);
        Assert.Equal(2L, count.Item<long>());
        var sums = I64([1, 2, 3, -4, 5, 6], 2, 3).Sum(1);
        Assert.Equal(DType.Int64, sums.DType);
        Assert.Equal([6L, 7], sums.ToInt64Array());
    }

    // ------------------------------------------------------------------ random draws and creation

    [Fact]
    public void Rand_IsDeterministicForASeedAndFollowsPhilox()
    {
        RequireDevice();
        var a = Tensor.Rand([1000], DType.Float64, new Generator(42), Device).ToDoubleArray();
        var b = Tensor.Rand([1000], DType.Float64, new Generator(42), Device).ToDoubleArray();
        var c = Tensor.Rand([1000], DType.Float64, new Generator(43), Device).ToDoubleArray();
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.All(a, u => Assert.InRange(u, 0.0, 1.0 - 1e-17));
        for (int i = 0; i < 16; i++)
        {
            Assert.Equal(Philox.Uniform(42, (ulong)i), a[i]);
        }

        // Successive draws from one generator continue the counter.
        var g = new Generator(42);
        _ = Tensor.Rand([1000], DType.Float64, g, Device);
        Assert.Equal(1000UL, g.Offset);
        var next = Tensor.Rand([4], DType.Float64, g, Device).ToDoubleArray();
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(Philox.Uniform(42, 1000 + (ulong)i), next[i]);
        }
    }

    [Fact]
    public void Rand_Float32AgreesWithFloat64Draws()
    {
        RequireDevice();
        var f32 = Tensor.Uniform([256], -2, 3, DType.Float32, new Generator(5), Device).ToDoubleArray();
        var f64 = Tensor.Uniform([256], -2, 3, DType.Float64, new Generator(5), Device).ToDoubleArray();
        Assert.All(f32, v => Assert.InRange(v, -2.0, 3.0));
        Numeric.AssertClose(f64, f32, 1e-6, "float32 uniform draws");
    }

    [Fact]
    public void Randn_IsDeterministicWithStandardMoments()
    {
        RequireDevice();
        const int n = 100_000;
        var a = Tensor.Randn([n], DType.Float64, new Generator(7), Device);
        var b = Tensor.Randn([n], DType.Float64, new Generator(7), Device).ToDoubleArray();
        var c = Tensor.Randn([n], DType.Float64, new Generator(8), Device).ToDoubleArray();
        var values = a.ToDoubleArray();
        Assert.Equal(values, b);
        Assert.NotEqual(values, c);
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(Philox.Normal(7, (ulong)i), values[i], 1e-14);
        }
        // Standard errors: 1/√n ≈ 0.0032 for the mean and 1/√(2n) ≈ 0.0022 for the std; allow ~6σ.
        double mean = a.Mean().Item();
        double std = a.Std().Item();
        Assert.InRange(mean, -0.02, 0.02);
        Assert.InRange(std, 0.985, 1.015);

        var shifted = Tensor.Normal([n], 3, 2, DType.Float64, new Generator(7), Device);
        Assert.InRange(shifted.Mean().Item(), 3 - 0.04, 3 + 0.04);
        Assert.InRange(shifted.Std().Item(), 2 * 0.985, 2 * 1.015);
        Numeric.AssertClose(values.Select(v => 3 + 2 * v).ToArray(), shifted.ToDoubleArray(), 1e-14, "Normal(3, 2) = 3 + 2·Randn");
    }

    [Fact]
    public void Linspace_AndArange_GiveTheExpectedValues()
    {
        RequireDevice();
        var l = Tensor.Linspace(0, 1, 5, DType.Float64, Device);
        Assert.Equal([0, 0.25, 0.5, 0.75, 1], l.ToDoubleArray());
        Assert.Equal([2.0], Tensor.Linspace(2, 5, 1, DType.Float64, Device).ToDoubleArray());
        Assert.Equal([0], Tensor.Linspace(2, 5, 0, DType.Float64, Device).Shape.ToArray());
        Assert.Equal(DType.Float32, Tensor.Linspace(0, 1, 3, device: Device).DType);

        var r = Tensor.Arange(5, device: Device);
        Assert.Equal(DType.Int64, r.DType);
        Assert.Equal([0L, 1, 2, 3, 4], r.ToInt64Array());
        Assert.Equal([0, 0.25, 0.5, 0.75], Tensor.Arange(0, 1, 0.25, DType.Float64, Device).ToDoubleArray());
        Assert.Equal([3.0, 2, 1], Tensor.Arange(3, 0, -1, DType.Float64, Device).ToDoubleArray());
        Assert.Equal([0], Tensor.Arange(1, 1, 1, DType.Float64, Device).Shape.ToArray());
        Assert.Throws<ArgumentException>(() => Tensor.Arange(0, 1, 0, DType.Float64, Device));
        Assert.Throws<ArgumentException>(() => Tensor.Arange(0, 1, -1, DType.Float64, Device));
    }
}

/// <summary>The autograd behaviour tests on the managed CPU backend.</summary>
public sealed class AutogradTestsOnReference : AutogradTests
{
    protected override Device Device => Device.Cpu;
}
