namespace Higher.Conformance.Kernels;

public abstract partial class KernelConformance
{
    /// <summary>A pooling case with PyTorch's output size, ceil mode included (a last window must start inside the input or its left padding).</summary>
    private static PoolGeometry PoolCase(int planes, int h, int w, int kh, int kw, int sh, int sw, int ph = 0, int pw = 0, int dh = 1, int dw = 1, bool ceil = false)
    {
        static int Out(int size, int k, int s, int p, int d, bool ceil)
        {
            int span = size + 2 * p - d * (k - 1) - 1;
            int o = (ceil ? (span + s - 1) / s : span / s) + 1;
            if (ceil && (o - 1) * s >= size + p)
            {
                o--;
            }
            return o;
        }
        return new PoolGeometry(planes, h, w, Out(h, kh, sh, ph, dh, ceil), Out(w, kw, sw, pw, dw, ceil), kh, kw, sh, sw, ph, pw, dh, dw);
    }

    private static readonly PoolGeometry[] MaxPoolCases =
    [
        PoolCase(3, 6, 6, 2, 2, 2, 2),
        PoolCase(2, 7, 8, 3, 3, 2, 2, ph: 1, pw: 1),
        PoolCase(2, 6, 6, 3, 3, 2, 2, ceil: true),
        PoolCase(2, 7, 5, 2, 2, 2, 2, ceil: true),
        PoolCase(2, 9, 9, 3, 3, 1, 2, ph: 1, pw: 1, dh: 2, dw: 2),
        PoolCase(4, 5, 6, 2, 3, 1, 1),
        PoolCase(2, 1, 11, 1, 3, 1, 2, pw: 1),
        PoolCase(2, 11, 10, 5, 3, 3, 3, ph: 2, pw: 1, ceil: true),
        PoolCase(1, 3, 3, 3, 3, 1, 1, ph: 1, pw: 1, dh: 2, dw: 2, ceil: true),
        PoolCase(64, 26, 26, 2, 2, 2, 2),
        PoolCase(3, 7, 9, 2, 2, 2, 2), // 2×2 at stride 2 leaving the last row and column out
        PoolCase(2, 5, 70, 2, 2, 2, 2), // rows of 35 outputs: two full vectors of 16 and a masked one
        PoolCase(3, 4, 21, 2, 2, 2, 2), // 10 outputs a row: more than one vector of 8 indices
        PoolCase(2, 3, 17, 2, 2, 2, 2),
    ];

    private static readonly PoolGeometry[] AvgPoolCases =
    [
        PoolCase(3, 6, 6, 2, 2, 2, 2),
        PoolCase(2, 7, 8, 3, 3, 2, 2, ph: 1, pw: 1),
        PoolCase(2, 6, 6, 3, 3, 2, 2, ceil: true),
        PoolCase(2, 7, 7, 3, 3, 2, 2, ph: 1, pw: 1, ceil: true),
        PoolCase(2, 8, 5, 4, 2, 3, 1, ph: 2, pw: 1, ceil: true),
        PoolCase(2, 1, 11, 1, 3, 1, 2, pw: 1),
        PoolCase(4, 5, 6, 2, 3, 1, 1),
        PoolCase(2, 10, 9, 5, 3, 3, 3, ph: 2, pw: 1, ceil: true),
    ];

    public static TheoryData<int> MaxPoolCaseIndices => [.. Enumerable.Range(0, MaxPoolCases.Length)];

    public static TheoryData<int> AvgPoolCaseIndices => [.. Enumerable.Range(0, AvgPoolCases.Length)];

    /// <summary>Small integers, so windows hold ties; NaN and -∞ sprinkled in when asked.</summary>
    private static double[] TiedValues(int seed, long n, bool specials)
    {
        var rng = new Random(seed);
        var v = new double[n];
        for (long i = 0; i < n; i++)
        {
            v[i] = rng.Next(-3, 4);
            if (specials)
            {
                int r = rng.Next(40);
                v[i] = r == 0 ? double.NaN : r == 1 ? double.NegativeInfinity : v[i];
            }
        }
        return v;
    }

    /// <summary>The max of each window over its in-bounds taps in (p, q) order: the first NaN if any, else the first maximal element.</summary>
    private static (double[] Y, long[] Index) MaxPoolOracle(PoolGeometry g, double[] x)
    {
        var y = new double[g.OutputLength];
        var idx = new long[g.OutputLength];
        for (int pl = 0; pl < g.Planes; pl++)
        {
            for (int i = 0; i < g.OutHeight; i++)
            {
                for (int j = 0; j < g.OutWidth; j++)
                {
                    var taps = new List<long>();
                    for (int p = 0; p < g.KernelHeight; p++)
                    {
                        for (int q = 0; q < g.KernelWidth; q++)
                        {
                            int h = i * g.StrideHeight + p * g.DilationHeight - g.PadTop;
                            int w = j * g.StrideWidth + q * g.DilationWidth - g.PadLeft;
                            if (h >= 0 && h < g.InHeight && w >= 0 && w < g.InWidth)
                            {
                                taps.Add((long)h * g.InWidth + w);
                            }
                        }
                    }
                    Assert.NotEmpty(taps);
                    long plane = (long)pl * g.InHeight * g.InWidth;
                    long best = taps.FirstOrDefault(t => double.IsNaN(x[plane + t]), -1);
                    if (best < 0)
                    {
                        double max = taps.Max(t => x[plane + t]);
                        best = taps.First(t => x[plane + t] == max);
                    }
                    long o = ((long)pl * g.OutHeight + i) * g.OutWidth + j;
                    y[o] = x[plane + best];
                    idx[o] = best;
                }
            }
        }
        return (y, idx);
    }

    [Theory]
    [MemberData(nameof(MaxPoolCaseIndices))]
    public void MaxPool2d_MatchesOracle_WithTiesNaNAndInfinity(int index)
    {
        RequireBackend();
        var g = MaxPoolCases[index];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            foreach (bool specials in new[] { false, true })
            {
                var x = TiedValues(800 + index, g.InputLength, specials);
                var (y, idx) = MaxPoolOracle(g, x);
                var sy = Up(Enumerable.Repeat(double.NaN, (int)g.OutputLength).ToArray(), dtype);
                var si = UpLong(Enumerable.Repeat(-7L, (int)g.OutputLength).ToArray());
                Backend.MaxPool2d(g, Up(x, dtype), sy, si);
                AssertBitwise(y, Down(sy), $"max pool {dtype.Name()} {g}");
                Assert.Equal(idx, DownLong(si));
            }
        }
    }

    [Fact]
    public void MaxPool2d_NaNWins_AndTiesGiveTheFirstIndex()
    {
        RequireBackend();
        // One 2×3 plane, one 2×3 window: the first of two NaNs, and the first of tied maxima.
        var g = new PoolGeometry(2, 2, 3, 1, 1, 2, 3, 1, 1, 0, 0, 1, 1);
        var x = new double[] { 1, double.NaN, 5, double.NaN, 9, 2, /* plane 2 */ 4, 7, 1, 7, 7, -1 };
        var sy = Up(new double[2], DType.Float32);
        var si = UpLong(new long[2]);
        Backend.MaxPool2d(g, Up(x, DType.Float32), sy, si);
        var y = Down(sy);
        Assert.True(double.IsNaN(y[0]));
        Assert.Equal(7, y[1]);
        Assert.Equal([1L, 1L], DownLong(si));
    }

    /// <summary>PyTorch's divisors: with count_include_pad the window clipped to the padded bounds, measured before clipping to the input.</summary>
    private static double AvgDivisor(PoolGeometry g, int i, int j, bool countIncludePad, int divisorOverride)
    {
        int hstart = i * g.StrideHeight - g.PadTop, wstart = j * g.StrideWidth - g.PadLeft;
        int hend = Math.Min(hstart + g.KernelHeight, g.InHeight + g.PadTop), wend = Math.Min(wstart + g.KernelWidth, g.InWidth + g.PadLeft);
        int poolSize = (hend - hstart) * (wend - wstart);
        hstart = Math.Max(hstart, 0);
        wstart = Math.Max(wstart, 0);
        hend = Math.Min(hend, g.InHeight);
        wend = Math.Min(wend, g.InWidth);
        return divisorOverride > 0 ? divisorOverride : countIncludePad ? poolSize : (hend - hstart) * (wend - wstart);
    }

    /// <summary>Average pooling and its adjoint (scattered from each window), with the absolute sums for tolerances.</summary>
    private static (double[] Y, double[] GradX) AvgPoolOracle(PoolGeometry g, bool countIncludePad, int divisorOverride, double[] x, double[] dy)
    {
        var y = new double[g.OutputLength];
        var gx = new double[g.InputLength];
        for (int pl = 0; pl < g.Planes; pl++)
        {
            for (int i = 0; i < g.OutHeight; i++)
            {
                for (int j = 0; j < g.OutWidth; j++)
                {
                    double div = AvgDivisor(g, i, j, countIncludePad, divisorOverride);
                    long o = ((long)pl * g.OutHeight + i) * g.OutWidth + j;
                    double sum = 0;
                    for (int p = 0; p < g.KernelHeight; p++)
                    {
                        for (int q = 0; q < g.KernelWidth; q++)
                        {
                            int h = i * g.StrideHeight + p - g.PadTop, w = j * g.StrideWidth + q - g.PadLeft;
                            if (h >= 0 && h < g.InHeight && w >= 0 && w < g.InWidth)
                            {
                                long xi = ((long)pl * g.InHeight + h) * g.InWidth + w;
                                sum += x[xi];
                                gx[xi] += dy[o] / div;
                            }
                        }
                    }
                    y[o] = sum / div;
                }
            }
        }
        return (y, gx);
    }

    [Theory]
    [MemberData(nameof(AvgPoolCaseIndices))]
    public void AvgPool2d_AndItsAdjoint_MatchOracle(int index)
    {
        RequireBackend();
        var g = AvgPoolCases[index];
        int taps = g.KernelHeight * g.KernelWidth;
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            foreach (bool include in new[] { false, true })
            {
                foreach (int divisor in new[] { 0, 3 })
                {
                    var x = Round(RandomValues(900 + index, g.InputLength, 0.5, 2), dtype);
                    var dy = Round(RandomValues(950 + index, g.OutputLength, 0.5, 2), dtype);
                    var (y, gx) = AvgPoolOracle(g, include, divisor, x, dy);
                    string what = $"avg pool {dtype.Name()} include={include} divisor={divisor} {g}";
                    var sy = Up(Enumerable.Repeat(double.NaN, (int)g.OutputLength).ToArray(), dtype);
                    Backend.AvgPool2d(g, include, divisor, Up(x, dtype), sy);
                    // Positive terms: the sums' relative error is at most (taps + 2) roundings.
                    AssertClose(y, Down(sy), (taps + 2) * Ulps(dtype, 1), 0, what);
                    var sgx = Up(Enumerable.Repeat(double.NaN, (int)g.InputLength).ToArray(), dtype);
                    Backend.AvgPool2dGrad(g, include, divisor, Up(dy, dtype), sgx);
                    AssertClose(gx, Down(sgx), (2 * taps + 2) * Ulps(dtype, 1), 0, what + " grad");
                }
            }
        }
    }

    [Fact]
    public void AvgPool2d_Divisors_FollowPyTorch()
    {
        RequireBackend();
        // 3×3 window, stride 2, padding 1 over a 4×4 plane of ones, ceil mode: OH = OW = 3, and the last
        // window [3, 6) clipped to the padded bound 5 has 2 rows, 1 of them inside the input.
        var g = PoolCase(1, 4, 4, 3, 3, 2, 2, ph: 1, pw: 1, ceil: true);
        Assert.Equal(3, g.OutHeight);
        var ones = Up(Enumerable.Repeat(1.0, 16).ToArray(), DType.Float64);
        var y = Backend.Allocate(DType.Float64, 9);
        Backend.AvgPool2d(g, true, 0, ones, y);
        // Row windows: [-1, 2) → 3 padded / 2 inside; [1, 4) → 3 / 3; [3, 5) → 2 / 1. Sum = inside product.
        double[] padded = [3, 3, 2], inside = [2, 3, 1];
        var expected = new double[9];
        for (int i = 0; i < 3; i++)
        {
            for (int j = 0; j < 3; j++)
            {
                expected[i * 3 + j] = inside[i] * inside[j] / (padded[i] * padded[j]);
            }
        }
        AssertClose(expected, Down(y), 1e-15, 0, "count_include_pad");
        Backend.AvgPool2d(g, false, 0, ones, y);
        AssertClose(Enumerable.Repeat(1.0, 9).ToArray(), Down(y), 1e-15, 0, "exclude pad");
        Backend.AvgPool2d(g, true, 4, ones, y);
        AssertClose(Enumerable.Range(0, 9).Select(k => inside[k / 3] * inside[k % 3] / 4).ToArray(), Down(y), 1e-15, 0, "divisor override");
    }

    [Theory]
    [MemberData(nameof(AvgPoolCaseIndices))]
    public void AvgPool2dGrad_IsTheAdjoint_OfAvgPool2d(int index)
    {
        RequireBackend();
        var g = AvgPoolCases[index];
        foreach (bool include in new[] { false, true })
        {
            var x = RandomValues(1000 + index, g.InputLength);
            var dy = RandomValues(1050 + index, g.OutputLength);
            var sy = Backend.Allocate(DType.Float64, g.OutputLength);
            var sgx = Backend.Allocate(DType.Float64, g.InputLength);
            Backend.AvgPool2d(g, include, 0, Up(x, DType.Float64), sy);
            Backend.AvgPool2dGrad(g, include, 0, Up(dy, DType.Float64), sgx);
            double a = Dot(Down(sy), dy), b = Dot(x, Down(sgx));
            double scale = Dot(x.Select(Math.Abs).ToArray(), Enumerable.Repeat(1.0, x.Length).ToArray()) * dy.Max(Math.Abs);
            Assert.True(Math.Abs(a - b) <= 1e-13 * scale, $"{g} include={include}: <pool(x), dy> = {a:R}, <x, pool*(dy)> = {b:R}");
        }
    }

    public static TheoryData<int, int, int, int> AdaptiveSizes => new()
    {
        { 5, 7, 3, 2 }, { 6, 6, 1, 1 }, { 4, 4, 4, 4 }, { 3, 5, 6, 7 }, { 7, 1, 3, 1 }, { 10, 9, 4, 5 },
    };

    [Theory]
    [MemberData(nameof(AdaptiveSizes))]
    public void AdaptiveAvgPool2d_AndItsAdjoint_MatchOracle(int h, int w, int oh, int ow)
    {
        RequireBackend();
        const int planes = 3;
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = Round(RandomValues(1100 + h * w, planes * h * w, 0.5, 2), dtype);
            var dy = Round(RandomValues(1200 + oh * ow, planes * oh * ow, 0.5, 2), dtype);
            var y = new double[planes * oh * ow];
            var gx = new double[planes * h * w];
            int maxTaps = 0;
            for (int pl = 0; pl < planes; pl++)
            {
                for (int i = 0; i < oh; i++)
                {
                    int r0 = (int)Math.Floor((double)i * h / oh), r1 = (int)Math.Ceiling((double)(i + 1) * h / oh);
                    for (int j = 0; j < ow; j++)
                    {
                        int c0 = (int)Math.Floor((double)j * w / ow), c1 = (int)Math.Ceiling((double)(j + 1) * w / ow);
                        int count = (r1 - r0) * (c1 - c0);
                        maxTaps = Math.Max(maxTaps, count);
                        int o = (pl * oh + i) * ow + j;
                        for (int r = r0; r < r1; r++)
                        {
                            for (int c = c0; c < c1; c++)
                            {
                                y[o] += x[(pl * h + r) * w + c] / count;
                                gx[(pl * h + r) * w + c] += dy[o] / count;
                            }
                        }
                    }
                }
            }
            var sy = Up(Enumerable.Repeat(double.NaN, y.Length).ToArray(), dtype);
            Backend.AdaptiveAvgPool2d(planes, h, w, oh, ow, Up(x, dtype), sy);
            AssertClose(y, Down(sy), (maxTaps + 2) * Ulps(dtype, 1), 0, $"adaptive {h}x{w}->{oh}x{ow} {dtype.Name()}");
            var sgx = Up(Enumerable.Repeat(double.NaN, gx.Length).ToArray(), dtype);
            Backend.AdaptiveAvgPool2dGrad(planes, h, w, oh, ow, Up(dy, dtype), sgx);
            AssertClose(gx, Down(sgx), (oh * ow + 2) * Ulps(dtype, 1), 0, $"adaptive grad {h}x{w}->{oh}x{ow} {dtype.Name()}");
        }
    }

    [Fact]
    public void Pools_AreBitwiseIndependentOfTheThreadCount()
    {
        RequireBackend();
        if (SerialBackend is not { } serial)
        {
            Assert.Skip("This backend has no thread-count knob.");
            return;
        }
        var g = PoolCase(200, 26, 26, 3, 3, 2, 2, ph: 1, pw: 1, ceil: true);
        var x = RandomValues(1300, g.InputLength);
        var dy = RandomValues(1301, g.OutputLength);
        double[][] Run(IBackend b)
        {
            var sx = b.Upload<float>(Array.ConvertAll(x, v => (float)v), DType.Float32);
            var sdy = b.Upload<float>(Array.ConvertAll(dy, v => (float)v), DType.Float32);
            var y = b.Allocate(DType.Float32, g.OutputLength);
            var idx = b.Allocate(DType.Int64, g.OutputLength);
            var a = b.Allocate(DType.Float32, g.OutputLength);
            var ga = b.Allocate(DType.Float32, g.InputLength);
            var ad = b.Allocate(DType.Float32, g.Planes * 5 * 3);
            var gad = b.Allocate(DType.Float32, g.InputLength);
            b.MaxPool2d(g, sx, y, idx);
            b.AvgPool2d(g, true, 0, sx, a);
            b.AvgPool2dGrad(g, false, 0, sdy, ga);
            b.AdaptiveAvgPool2d(g.Planes, 26, 26, 5, 3, sx, ad);
            b.AdaptiveAvgPool2dGrad(g.Planes, 26, 26, 5, 3, ad, gad);
            var longs = new long[g.OutputLength];
            b.Download<long>(idx, longs);
            return [DownFrom(b, y), Array.ConvertAll(longs, v => (double)v), DownFrom(b, a), DownFrom(b, ga), DownFrom(b, ad), DownFrom(b, gad)];
        }
        var parallel = Run(Backend);
        var single = Run(serial);
        for (int k = 0; k < parallel.Length; k++)
        {
            AssertBitwise(single[k], parallel[k], $"pool output {k}");
        }
    }

    [Fact]
    public void Pools_ThrowArgumentException_ForBadGeometryOrStorage()
    {
        RequireBackend();
        var g = PoolCase(2, 6, 6, 2, 2, 2, 2);
        var x = Backend.Allocate(DType.Float32, g.InputLength);
        var y = Backend.Allocate(DType.Float32, g.OutputLength);
        var idx = Backend.Allocate(DType.Int64, g.OutputLength);
        var ex = Assert.Throws<ArgumentException>(() => Backend.MaxPool2d(g, x, Backend.Allocate(DType.Float32, g.OutputLength - 1), idx));
        Assert.Contains("MaxPool2d", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Backend.MaxPool2d(g, x, y, Backend.Allocate(DType.Float32, g.OutputLength)));
        Assert.Throws<ArgumentException>(() => Backend.MaxPool2d(g with { StrideWidth = 0 }, x, y, idx));
        // A window entirely in the padding has no maximum.
        Assert.Throws<ArgumentException>(() => Backend.MaxPool2d(g with { PadTop = 3, OutHeight = 1 }, x, y, idx));
        Assert.Throws<ArgumentException>(() => Backend.AvgPool2d(g, false, 0, x, Backend.Allocate(DType.Float64, g.OutputLength)));
        Assert.Throws<ArgumentException>(() => Backend.AvgPool2d(g with { DilationHeight = 2 }, false, 0, x, y));
        Assert.Throws<ArgumentException>(() => Backend.AvgPool2dGrad(g, false, 0, y, Backend.Allocate(DType.Float32, g.InputLength - 1)));
        Assert.Throws<ArgumentException>(() => Backend.AdaptiveAvgPool2d(2, 6, 6, 3, 3, x, Backend.Allocate(DType.Float32, 17)));
        Assert.Throws<ArgumentException>(() => Backend.AdaptiveAvgPool2dGrad(2, 6, 6, 3, 3, Backend.Allocate(DType.Float32, 17), x));
    }
}
