namespace Higher.Conformance.Kernels;

public abstract partial class KernelConformance
{
    /// <summary>A convolution case: explicit bottom/right padding, from which OH and OW follow as in PyTorch.</summary>
    protected static ConvGeometry ConvCase(int n, int c, int h, int w, int o, int kh, int kw, int sh = 1, int sw = 1,
        int padTop = 0, int padLeft = 0, int padBottom = -1, int padRight = -1, int dh = 1, int dw = 1, int groups = 1)
    {
        padBottom = padBottom < 0 ? padTop : padBottom;
        padRight = padRight < 0 ? padLeft : padRight;
        int oh = (h + padTop + padBottom - dh * (kh - 1) - 1) / sh + 1;
        int ow = (w + padLeft + padRight - dw * (kw - 1) - 1) / sw + 1;
        return new ConvGeometry(n, c, h, w, o, kh, kw, oh, ow, sh, sw, padTop, padLeft, dh, dw, groups);
    }

    /// <summary>Strides 1/2/3, padding 0/1/2, asymmetric and wider than the kernel, dilation 1/2, groups 1/2/4 and depthwise, 1×1 and 5×3 kernels, H = 1, batch 1, several image blocks.</summary>
    protected static readonly ConvGeometry[] ConvCases =
    [
        ConvCase(1, 1, 5, 5, 1, 3, 3),
        ConvCase(2, 3, 7, 6, 4, 3, 3, padTop: 1, padLeft: 1),
        ConvCase(2, 4, 9, 8, 6, 3, 3, sh: 2, sw: 2, padTop: 1, padLeft: 1),
        ConvCase(1, 2, 11, 10, 3, 5, 3, sh: 3, sw: 3, padTop: 2, padLeft: 2),
        ConvCase(2, 3, 6, 7, 2, 2, 4, padTop: 0, padLeft: 1, padBottom: 1, padRight: 2),
        ConvCase(2, 2, 9, 9, 3, 3, 3, padTop: 2, padLeft: 2, dh: 2, dw: 2),
        ConvCase(2, 4, 6, 5, 6, 3, 3, padTop: 1, padLeft: 1, groups: 2),
        ConvCase(1, 8, 10, 9, 8, 3, 3, sh: 2, sw: 1, padTop: 1, padLeft: 2, dh: 2, dw: 1, groups: 4),
        ConvCase(2, 6, 7, 7, 6, 3, 3, padTop: 1, padLeft: 1, groups: 6),
        ConvCase(2, 3, 8, 5, 6, 5, 3, sh: 1, sw: 2, padTop: 2, padLeft: 1, groups: 3),
        ConvCase(3, 5, 4, 6, 7, 1, 1),
        ConvCase(2, 4, 3, 5, 6, 1, 1, groups: 2),
        ConvCase(2, 3, 7, 6, 4, 1, 1, sh: 2, sw: 2),
        ConvCase(2, 3, 5, 5, 4, 1, 1, padTop: 1, padLeft: 1),
        ConvCase(2, 3, 1, 17, 4, 1, 5, sw: 2, padLeft: 2),
        ConvCase(1, 2, 1, 9, 3, 1, 3, dw: 3, padLeft: 0, padRight: 1),
        ConvCase(1, 3, 2, 3, 2, 3, 3, padTop: 1, padLeft: 1),
        ConvCase(7, 8, 13, 13, 16, 3, 3),
        ConvCase(20, 2, 12, 12, 3, 3, 3, padTop: 1, padLeft: 1),
        ConvCase(33, 3, 3, 3, 5, 2, 2, sh: 1, sw: 1),
        // Shapes the implicit GEMM of the Reference backend takes with its input gradient as a convolution of dy:
        // panels across image boundaries, a partial row panel, padding wider than the kernel (a crop of dy), rows
        // longer than a panel, groups of 8 channels.
        ConvCase(3, 16, 9, 9, 12, 3, 3),
        ConvCase(2, 8, 5, 6, 8, 3, 3, padTop: 3, padLeft: 4),
        ConvCase(1, 8, 4, 40, 9, 3, 3, padLeft: 1, dw: 2),
        ConvCase(2, 16, 7, 7, 24, 3, 3, padTop: 1, padLeft: 1, groups: 2),
    ];

    public static TheoryData<int> ConvCaseIndices => [.. Enumerable.Range(0, ConvCases.Length)];

    /// <summary>
    /// y, gradX and gradW of the trilinear form T(x, W, dy) of <see cref="ConvGeometry"/>, each term taken
    /// straight from the formula, plus the same sums over absolute values (the scale of their rounding errors).
    /// </summary>
    protected static (double[] Y, double[] GradX, double[] GradW, double[] YAbs, double[] GradXAbs, double[] GradWAbs) ConvOracle(
        ConvGeometry g, double[] x, double[] w, double[] dy)
    {
        var y = new double[g.OutputLength];
        var gx = new double[g.InputLength];
        var gw = new double[g.WeightLength];
        var ya = new double[y.Length];
        var gxa = new double[gx.Length];
        var gwa = new double[gw.Length];
        int cg = g.InChannels / g.Groups, og = g.OutChannels / g.Groups;
        for (int n = 0; n < g.Batch; n++)
        {
            for (int o = 0; o < g.OutChannels; o++)
            {
                int group = o / og;
                for (int i = 0; i < g.OutHeight; i++)
                {
                    for (int j = 0; j < g.OutWidth; j++)
                    {
                        long yi = ((long)(n * g.OutChannels + o) * g.OutHeight + i) * g.OutWidth + j;
                        for (int c = 0; c < cg; c++)
                        {
                            for (int p = 0; p < g.KernelHeight; p++)
                            {
                                for (int q = 0; q < g.KernelWidth; q++)
                                {
                                    int hh = i * g.StrideHeight + p * g.DilationHeight - g.PadTop;
                                    int ww = j * g.StrideWidth + q * g.DilationWidth - g.PadLeft;
                                    if (hh < 0 || hh >= g.InHeight || ww < 0 || ww >= g.InWidth)
                                    {
                                        continue;
                                    }
                                    long xi = ((long)(n * g.InChannels + group * cg + c) * g.InHeight + hh) * g.InWidth + ww;
                                    long wi = ((long)(o * cg + c) * g.KernelHeight + p) * g.KernelWidth + q;
                                    y[yi] += w[wi] * x[xi];
                                    gx[xi] += w[wi] * dy[yi];
                                    gw[wi] += dy[yi] * x[xi];
                                    ya[yi] += Math.Abs(w[wi] * x[xi]);
                                    gxa[xi] += Math.Abs(w[wi] * dy[yi]);
                                    gwa[wi] += Math.Abs(dy[yi] * x[xi]);
                                }
                            }
                        }
                    }
                }
            }
        }
        return (y, gx, gw, ya, gxa, gwa);
    }

    protected static double[] Tolerance(double[] magnitude, long terms, DType dtype) =>
        Array.ConvertAll(magnitude, m => (terms + 2) * Ulps(dtype, 1) * m);

    [Theory]
    [MemberData(nameof(ConvCaseIndices))]
    public void Conv2d_AndItsGradients_MatchOracle(int index)
    {
        RequireBackend();
        var g = ConvCases[index];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = Round(RandomValues(100 + index, g.InputLength), dtype);
            var w = Round(RandomValues(200 + index, g.WeightLength), dtype);
            var dy = Round(RandomValues(300 + index, g.OutputLength), dtype);
            var (y, gx, gw, ya, gxa, gwa) = ConvOracle(g, x, w, dy);
            int cg = g.InChannels / g.Groups, og = g.OutChannels / g.Groups;
            long taps = (long)g.KernelHeight * g.KernelWidth;

            // Outputs start as NaN: every element must be written.
            var sy = Up(Enumerable.Repeat(double.NaN, (int)g.OutputLength).ToArray(), dtype);
            Backend.Conv2d(g, Up(x, dtype), Up(w, dtype), sy);
            AssertClose(y, Down(sy), 0, Tolerance(ya, cg * taps, dtype), $"conv2d {dtype.Name()} {g}");

            var sgx = Up(Enumerable.Repeat(double.NaN, (int)g.InputLength).ToArray(), dtype);
            Backend.Conv2dInputGrad(g, Up(dy, dtype), Up(w, dtype), sgx);
            AssertClose(gx, Down(sgx), 0, Tolerance(gxa, og * taps, dtype), $"conv2d input grad {dtype.Name()} {g}");

            var sgw = Up(Enumerable.Repeat(double.NaN, (int)g.WeightLength).ToArray(), dtype);
            Backend.Conv2dWeightGrad(g, Up(x, dtype), Up(dy, dtype), sgw);
            AssertClose(gw, Down(sgw), 0, Tolerance(gwa, (long)g.Batch * g.OutHeight * g.OutWidth, dtype), $"conv2d weight grad {dtype.Name()} {g}");
        }
    }

    [Theory]
    [MemberData(nameof(ConvCaseIndices))]
    public void Conv2dBias_IsTheConvolutionFollowedByTheBiasAdd_BitForBit(int index)
    {
        RequireBackend();
        var g = ConvCases[index];
        var full = new Shape(g.Batch, g.OutChannels, g.OutHeight * g.OutWidth);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = Up(Round(RandomValues(700 + index, g.InputLength), dtype), dtype);
            var w = Up(Round(RandomValues(710 + index, g.WeightLength), dtype), dtype);
            var bias = Round(RandomValues(720 + index, g.OutChannels), dtype);
            bias[0] = -0.0;
            var b = Up(bias, dtype);
            var expected = Up(Enumerable.Repeat(double.NaN, (int)g.OutputLength).ToArray(), dtype);
            Backend.Conv2d(g, x, w, expected);
            Backend.Binary(BinaryOp.Add, expected, full, b, new Shape(1, g.OutChannels, 1), expected, full);
            // Every element must be written (the output starts as NaN).
            var fused = Up(Enumerable.Repeat(double.NaN, (int)g.OutputLength).ToArray(), dtype);
            Backend.Conv2dBias(g, x, w, b, fused);
            AssertBitwise(Down(expected), Down(fused), $"conv2d with bias {dtype.Name()} {g}");
        }
    }

    [Theory]
    [MemberData(nameof(ConvCaseIndices))]
    public void Conv2d_GradientsAreAdjoints_OfTheForward(int index)
    {
        RequireBackend();
        // <Conv(x, W), dy> = <x, ConvInputGrad(dy, W)> = <W, ConvWeightGrad(x, dy)> = T(x, W, dy).
        var g = ConvCases[index];
        var dtype = DType.Float64;
        var x = RandomValues(400 + index, g.InputLength);
        var w = RandomValues(500 + index, g.WeightLength);
        var dy = RandomValues(600 + index, g.OutputLength);
        var sy = Backend.Allocate(dtype, g.OutputLength);
        var sgx = Backend.Allocate(dtype, g.InputLength);
        var sgw = Backend.Allocate(dtype, g.WeightLength);
        Backend.Conv2d(g, Up(x, dtype), Up(w, dtype), sy);
        Backend.Conv2dInputGrad(g, Up(dy, dtype), Up(w, dtype), sgx);
        Backend.Conv2dWeightGrad(g, Up(x, dtype), Up(dy, dtype), sgw);
        double viaY = Dot(Down(sy), dy), viaX = Dot(x, Down(sgx)), viaW = Dot(w, Down(sgw));
        var (_, _, _, ya, _, _) = ConvOracle(g, x, w, dy);
        // Σ|dy|·Σ|W·x| bounds every term; each side rounds at most (terms + 2) times per element.
        double scale = Dot(dy.Select(Math.Abs).ToArray(), ya);
        long terms = (long)g.InChannels * g.OutChannels * g.KernelHeight * g.KernelWidth + g.InputLength + g.OutputLength + g.Batch * (long)g.OutHeight * g.OutWidth;
        double tol = (terms + 2) * Ulps(dtype, 1) * scale;
        Assert.True(Math.Abs(viaY - viaX) <= tol, $"{g}: <y, dy> = {viaY:R}, <x, gradX> = {viaX:R}, tol {tol:R}");
        Assert.True(Math.Abs(viaY - viaW) <= tol, $"{g}: <y, dy> = {viaY:R}, <W, gradW> = {viaW:R}, tol {tol:R}");
        Assert.True(scale > 0, "the adjoint check needs a nonzero form");
    }

    [Fact]
    public void Conv2d_IsBitwiseIndependentOfTheThreadCount()
    {
        RequireBackend();
        if (SerialBackend is not { } serial)
        {
            Assert.Skip("This backend has no thread-count knob.");
            return;
        }
        foreach (var g in new[] { ConvCases[17], ConvCases[18], ConvCases[19], ConvCases[7], ConvCase(64, 64, 13, 13, 64, 3, 3) })
        {
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                var x = RandomValues(700, g.InputLength);
                var w = RandomValues(701, g.WeightLength);
                var dy = RandomValues(702, g.OutputLength);
                double[][] Run(IBackend b)
                {
                    IStorage U(double[] v) => dtype == DType.Float32
                        ? b.Upload<float>(Array.ConvertAll(v, e => (float)e), DType.Float32)
                        : b.Upload<double>(v, DType.Float64);
                    var y = b.Allocate(dtype, g.OutputLength);
                    var gx = b.Allocate(dtype, g.InputLength);
                    var gw = b.Allocate(dtype, g.WeightLength);
                    b.Conv2d(g, U(x), U(w), y);
                    b.Conv2dInputGrad(g, U(dy), U(w), gx);
                    b.Conv2dWeightGrad(g, U(x), U(dy), gw);
                    return [DownFrom(b, y), DownFrom(b, gx), DownFrom(b, gw)];
                }
                var parallel = Run(Backend);
                var single = Run(serial);
                for (int k = 0; k < 3; k++)
                {
                    AssertBitwise(single[k], parallel[k], $"conv output {k} {dtype.Name()} {g}");
                }
            }
        }
    }

    [Fact]
    public void Conv2d_ThrowsArgumentException_ForBadGeometryOrStorage()
    {
        RequireBackend();
        var g = ConvCase(2, 4, 5, 5, 6, 3, 3, groups: 2);
        var x = Backend.Allocate(DType.Float32, g.InputLength);
        var w = Backend.Allocate(DType.Float32, g.WeightLength);
        var y = Backend.Allocate(DType.Float32, g.OutputLength);
        var ex = Assert.Throws<ArgumentException>(() => Backend.Conv2d(g, x, w, Backend.Allocate(DType.Float32, g.OutputLength - 1)));
        Assert.Contains("Conv2d", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Backend.Conv2d(g with { Groups = 3 }, x, w, y));
        Assert.Throws<ArgumentException>(() => Backend.Conv2d(g with { StrideHeight = 0 }, x, w, y));
        Assert.Throws<ArgumentException>(() => Backend.Conv2d(g, x, Backend.Allocate(DType.Float64, g.WeightLength), y));
        Assert.Throws<ArgumentException>(() => Backend.Conv2dInputGrad(g, y, w, Backend.Allocate(DType.Float32, g.InputLength - 1)));
        Assert.Throws<ArgumentException>(() => Backend.Conv2dWeightGrad(g, x, y, Backend.Allocate(DType.Float32, g.WeightLength - 1)));
    }

    private static double Dot(double[] a, double[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double s = 0;
        for (int i = 0; i < a.Length; i++)
        {
            s += a[i] * b[i];
        }
        return s;
    }

    private static double[] DownFrom(IBackend backend, IStorage storage)
    {
        if (storage.DType == DType.Float32)
        {
            var f = new float[storage.Length];
            backend.Download<float>(storage, f);
            return Array.ConvertAll(f, v => (double)v);
        }
        var d = new double[storage.Length];
        backend.Download<double>(storage, d);
        return d;
    }
}
