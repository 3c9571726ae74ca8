namespace Higher.Conformance.Kernels;

public abstract partial class KernelConformance
{
    [Theory]
    [InlineData(DType.Float32, RandomDistribution.Uniform)]
    [InlineData(DType.Float64, RandomDistribution.Uniform)]
    [InlineData(DType.Float32, RandomDistribution.Normal)]
    [InlineData(DType.Float64, RandomDistribution.Normal)]
    public void Random_DrawsPhiloxSpecElementByElement(DType dtype, RandomDistribution distribution)
    {
        RequireBackend();
        const ulong Seed = 0x1234_5678_9abc_def0, Offset = (1UL << 32) - 70;
        const int N = 100_003;
        double a = distribution == RandomDistribution.Uniform ? -3 : 0.5;
        double b = distribution == RandomDistribution.Uniform ? 5 : 2;
        var y = Backend.AllocateUninitialized(dtype, N);
        Backend.Random(y, distribution, Seed, Offset, a, b);
        var expected = new double[N];
        for (int i = 0; i < N; i++)
        {
            ulong counter = Offset + (ulong)i;
            expected[i] = distribution == RandomDistribution.Uniform
                ? a + (b - a) * Philox.Uniform(Seed, counter)
                : a + b * Philox.Normal(Seed, counter);
        }
        // Backends may evaluate log/cos on the device: a few ulps of the double result, then one rounding.
        AssertClose(Round(expected, dtype), Down(y), dtype == DType.Float32 ? Ulps(dtype, 1) : 1e-14, Ulps(dtype, 2));
    }

    /// <summary>
    /// Uniform draws stay below high even when rounding to the dtype would carry them up to it: with
    /// high one ulp above low, about half the unclamped draws would round to high.
    /// </summary>
    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Random_UniformNeverReachesHigh(DType dtype)
    {
        RequireBackend();
        double low = 1;
        double high = dtype == DType.Float32 ? MathF.BitIncrement(1f) : Math.BitIncrement(1.0);
        var y = Backend.AllocateUninitialized(dtype, 4096);
        Backend.Random(y, RandomDistribution.Uniform, 11, 0, low, high);
        var values = Down(y);
        Assert.All(values, v => Assert.True(v >= low && v < high, $"draw {v:R} is outside [{low:R}, {high:R})"));
        Assert.Contains(values, v => v == low);
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Random_OffsetsCompose_AndSeedsDiffer(DType dtype)
    {
        RequireBackend();
        var whole = Backend.AllocateUninitialized(dtype, 64);
        Backend.Random(whole, RandomDistribution.Uniform, 7, 100, 0, 1);
        var tail = Backend.AllocateUninitialized(dtype, 32);
        Backend.Random(tail, RandomDistribution.Uniform, 7, 132, 0, 1);
        AssertBitwise(Down(whole)[32..], Down(tail));
        var other = Backend.AllocateUninitialized(dtype, 64);
        Backend.Random(other, RandomDistribution.Uniform, 8, 100, 0, 1);
        Assert.NotEqual(Down(whole), Down(other));
        Assert.All(Down(whole), v => Assert.InRange(v, 0, 1));
    }

    [Fact]
    public void Results_AreBitwiseReproducible_AndIndependentOfThreadCount()
    {
        RequireBackend();
        var backends = SerialBackend is { } serial ? new[] { Backend, serial } : [Backend];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = RandomValues(71, 600 * 700);
            var b = RandomValues(72, 700 * 300);
            double[]? firstGemm = null, firstRows = null, firstCols = null, firstAll = null, firstExp = null, firstRand = null;
            foreach (var be in backends)
            {
                for (int rep = 0; rep < 2; rep++)
                {
                    var sx = be.Upload<double>(x, DType.Float64);
                    var sb = be.Upload<double>(b, DType.Float64);
                    var fx = be.AllocateUninitialized(dtype, x.Length);
                    var fb = be.AllocateUninitialized(dtype, b.Length);
                    be.Cast(sx, fx);
                    be.Cast(sb, fb);
                    var c = be.AllocateUninitialized(dtype, 600 * 300);
                    be.Gemm(false, false, 1, 600, 300, 700, 1, fx, 0, fb, 0, 0, c, 0);
                    var rows = be.AllocateUninitialized(dtype, 600);
                    be.Reduce(ReduceOp.Sum, fx, new Shape(600, 700), [false, true], rows);
                    var cols = be.AllocateUninitialized(dtype, 700);
                    be.Reduce(ReduceOp.Sum, fx, new Shape(600, 700), [true, false], cols);
                    var all = be.AllocateUninitialized(dtype, 1);
                    be.Reduce(ReduceOp.Sum, fx, new Shape(x.Length), [true], all);
                    var ex = be.AllocateUninitialized(dtype, x.Length);
                    be.Unary(UnaryOp.Exp, fx, ex);
                    var rnd = be.AllocateUninitialized(dtype, 200_000);
                    be.Random(rnd, RandomDistribution.Normal, 3, 0, 0, 1);
                    Check(ref firstGemm, Download(be, c), "gemm");
                    Check(ref firstRows, Download(be, rows), "row sums");
                    Check(ref firstCols, Download(be, cols), "column sums");
                    Check(ref firstAll, Download(be, all), "total");
                    Check(ref firstExp, Download(be, ex), "exp");
                    Check(ref firstRand, Download(be, rnd), "random");
                }
            }
        }

        static void Check(ref double[]? first, double[] now, string what)
        {
            if (first is null)
            {
                first = now;
                return;
            }
            AssertBitwise(first, now, what);
        }

        static double[] Download(IBackend be, IStorage s)
        {
            var d = be.Allocate(DType.Float64, s.Length);
            be.Cast(s, d);
            var v = new double[s.Length];
            be.Download<double>(d, v);
            return v;
        }
    }
}
