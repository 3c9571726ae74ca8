namespace Higher.Conformance.Kernels;

public abstract partial class KernelConformance
{
    // [N, C, S]: one value per channel and sample (S = 1, the [N, C] of BatchNorm1d), a single image,
    // rows shorter and longer than a vector, many channels, and one large enough to run channels in parallel; the
    // one before has the conv net's 26×26 rows and a batch that is not a multiple of four (the fused channel sums' groups),
    // the last rows of five pairwise blocks, split at two levels, with a tail of 12.
    private static readonly NormGeometry[] NormCases =
    [
        new(2, 3, 1, 1e-5),
        new(5, 4, 1, 1e-3),
        new(1, 1, 7, 1e-5),
        new(1, 3, 33, 0),
        new(3, 2, 17, 1e-5),
        new(2, 64, 9, 1e-5),
        new(4, 5, 121, 0.1),
        new(8, 16, 300, 1e-5),
        new(6, 3, 676, 1e-5),
        new(3, 2, 1100, 1e-5),
    ];

    public static TheoryData<int> NormCaseIndices => [.. Enumerable.Range(0, NormCases.Length)];

    /// <summary>The channel's N·S values of a [N, C, S] array, in ascending order.</summary>
    private static IEnumerable<long> ChannelOffsets(NormGeometry g, int c)
    {
        for (long n = 0; n < g.Batch; n++)
        {
            for (long s = 0; s < g.Spatial; s++)
            {
                yield return ((n * g.Channels + c) * g.Spatial) + s;
            }
        }
    }

    /// <summary>
    /// The kernels' definition in double from the inputs (already rounded to the dtype): μ and σ²
    /// rounded to the dtype, r = 1/√(σ² + eps) from the rounded σ², then y, the input gradient and the
    /// weight gradient; with each element's magnitude (the sum of the absolute terms it is made of).
    /// </summary>
    private static (double[] Y, double[] Mean, double[] Var, double[] Gx, double[] Gw, double[] YMag, double[] GxMag, double[] GwMag)
        NormOracle(NormGeometry g, double[] x, double[] w, double[] b, double[] gy, DType dtype)
    {
        long len = g.Length;
        double count = g.PerChannel;
        var y = new double[len];
        var gx = new double[len];
        var yMag = new double[len];
        var gxMag = new double[len];
        var mean = new double[g.Channels];
        var variance = new double[g.Channels];
        var gw = new double[g.Channels];
        var gwMag = new double[g.Channels];
        for (int c = 0; c < g.Channels; c++)
        {
            var at = ChannelOffsets(g, c).ToArray();
            double mu = Round([at.Sum(i => x[i]) / count], dtype)[0];
            double var = Round([at.Sum(i => (x[i] - mu) * (x[i] - mu)) / count], dtype)[0];
            double r = 1 / Math.Sqrt(var + g.Eps);
            mean[c] = mu;
            variance[c] = var;
            double gbar = at.Sum(i => gy[i]) / count;
            double m = at.Sum(i => gy[i] * (x[i] - mu) * r) / count;
            gw[c] = at.Sum(i => gy[i] * (x[i] - mu) * r);
            gwMag[c] = at.Sum(i => Math.Abs(gy[i] * (x[i] - mu) * r));
            foreach (long i in at)
            {
                double xhat = (x[i] - mu) * r;
                y[i] = (xhat * w[c]) + b[c];
                yMag[i] = Math.Abs(x[i] * r * w[c]) + Math.Abs(mu * r * w[c]) + Math.Abs(b[c]);
                gx[i] = w[c] * r * (gy[i] - gbar - (xhat * m));
                gxMag[i] = Math.Abs(w[c] * r) * (Math.Abs(gy[i]) + Math.Abs(gbar) + Math.Abs(x[i] * r * m) + Math.Abs(mu * r * m));
            }
        }
        return (y, mean, variance, gx, gw, yMag, gxMag, gwMag);
    }

    /// <summary>A few roundings of each term in float32 (sums in double); in float64, one per summed term as well.</summary>
    private static double[] NormTolerance(double[] magnitude, NormGeometry g, DType dtype) =>
        Array.ConvertAll(magnitude, m => Ulps(dtype, dtype == DType.Float32 ? 16 : g.PerChannel + 16) * m);

    [Theory]
    [MemberData(nameof(NormCaseIndices))]
    public void BatchNorm_AndItsGradients_MatchOracle(int index)
    {
        RequireBackend();
        var g = NormCases[index];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            // Off-centre inputs (the mean is not small beside the spread), one channel's weight 0.
            var x = Round(RandomValues(900 + index, g.Length, 1, 4), dtype);
            var w = Round(RandomValues(910 + index, g.Channels, 0.5, 1.5), dtype);
            w[^1] = 0;
            var b = Round(RandomValues(920 + index, g.Channels), dtype);
            var gy = Round(RandomValues(930 + index, g.Length), dtype);
            var (y, mean, variance, gx, gw, yMag, gxMag, gwMag) = NormOracle(g, x, w, b, gy, dtype);
            // Outputs start as NaN: every element must be written.
            IStorage Nans(long n) => Up(Enumerable.Repeat(double.NaN, (int)n).ToArray(), dtype);

            var (sy, sm, sv) = (Nans(g.Length), Nans(g.Channels), Nans(g.Channels));
            Backend.BatchNorm(g, Up(x, dtype), Up(w, dtype), Up(b, dtype), sy, sm, sv);
            string what = $"{dtype.Name()} {g}";
            AssertClose(mean, Down(sm), Ulps(dtype, dtype == DType.Float32 ? 2 : g.PerChannel + 2), 0, $"batch-norm mean {what}");
            AssertClose(variance, Down(sv), Ulps(dtype, dtype == DType.Float32 ? 2 : g.PerChannel + 2), 0, $"batch-norm variance {what}");
            AssertClose(y, Down(sy), 0, NormTolerance(yMag, g, dtype), $"batch norm {what}");

            // The gradients read the statistics the forward stored.
            var sgx = Nans(g.Length);
            Backend.BatchNormInputGrad(g, Up(gy, dtype), Up(x, dtype), sm, sv, Up(w, dtype), sgx);
            AssertClose(gx, Down(sgx), 0, NormTolerance(gxMag, g, dtype), $"batch-norm input grad {what}");

            var sgw = Nans(g.Channels);
            Backend.BatchNormWeightGrad(g, Up(gy, dtype), Up(x, dtype), sm, sv, sgw);
            AssertClose(gw, Down(sgw), 0, NormTolerance(gwMag, g, dtype), $"batch-norm weight grad {what}");
        }
    }

    [Fact]
    public void BatchNormStatistics_OfFloat32DataFarFromZero_AndAnOutlierFirst_MatchTheTwoPassDefinition()
    {
        RequireBackend();
        // Values near 3000 with a spread of a few float32 ulps (σ² about 1e-7, below the square of
        // half an ulp of the mean, so σ² about the rounded mean differs from σ² about the exact one);
        // sums of squares about zero would lose all of σ². The last channel's first value (the
        // kernel's shift) is an outlier one unit away.
        var g = new NormGeometry(6, 3, 50, 1e-5);
        var x = RandomValues(977, g.Length, 0, 1e-3).Select(v => 3000 + v).ToArray();
        x[2 * g.Spatial] = 3001;
        x = Round(x, DType.Float32);
        var w = Round(RandomValues(978, g.Channels, 0.5, 1.5), DType.Float32);
        var b = Round(RandomValues(979, g.Channels), DType.Float32);
        var (_, mean, variance, _, _, _, _, _) = NormOracle(g, x, w, b, new double[g.Length], DType.Float32);
        var (sy, sm, sv) = (Up(new double[g.Length], DType.Float32), Up(new double[g.Channels], DType.Float32), Up(new double[g.Channels], DType.Float32));
        Backend.BatchNorm(g, Up(x, DType.Float32), Up(w, DType.Float32), Up(b, DType.Float32), sy, sm, sv);
        AssertClose(mean, Down(sm), Ulps(DType.Float32, 2), 0, "batch-norm mean far from zero");
        AssertClose(variance, Down(sv), Ulps(DType.Float32, 2), 0, "batch-norm variance far from zero");
    }

    /// <summary>
    /// The double backward's definition in double, term by term as PyTorch's batchnorm_double_backward
    /// writes it, from the forward's stored (rounded) μ and σ²: gradX, gradWeight and their magnitudes.
    /// </summary>
    private static (double[] Dx, double[] Dw, double[] DxMag, double[] DwMag) NormDoubleBackwardOracle(
        NormGeometry g, double[] x, double[] w, double[] gy, double[] h, double[] mean, double[] variance)
    {
        double count = g.PerChannel;
        var dx = new double[g.Length];
        var dxMag = new double[g.Length];
        var dw = new double[g.Channels];
        var dwMag = new double[g.Channels];
        for (int c = 0; c < g.Channels; c++)
        {
            var at = ChannelOffsets(g, c).ToArray();
            double mu = mean[c], r = 1 / Math.Sqrt(variance[c] + g.Eps);
            double gbar = at.Sum(i => gy[i]) / count, hbar = at.Sum(i => h[i]) / count;
            double m = at.Sum(i => gy[i] * (x[i] - mu) * r) / count;
            double a = at.Sum(i => h[i] * (x[i] - mu) * r) / count;
            double sv = at.Sum(i => h[i] * (gy[i] - gbar)) / count;
            double k = w[c] * r * r;
            foreach (long i in at)
            {
                double xhat = (x[i] - mu) * r;
                dx[i] = k * ((xhat * ((3 * m * a) - sv)) - (a * (gy[i] - gbar)) - (m * (h[i] - hbar)));
                dxMag[i] = Math.Abs(k) * ((Math.Abs(x[i] * r) + Math.Abs(mu * r)) * (Math.Abs(3 * m * a) + Math.Abs(sv))
                    + (Math.Abs(a) * (Math.Abs(gy[i]) + Math.Abs(gbar))) + (Math.Abs(m) * (Math.Abs(h[i]) + Math.Abs(hbar))));
            }
            dw[c] = at.Sum(i => h[i] * r * (gy[i] - gbar - ((x[i] - mu) * r * m)));
            dwMag[c] = at.Sum(i => Math.Abs(h[i] * r) * (Math.Abs(gy[i]) + Math.Abs(gbar) + (Math.Abs(x[i] - mu) * r * Math.Abs(m))));
        }
        return (dx, dw, dxMag, dwMag);
    }

    [Theory]
    [MemberData(nameof(NormCaseIndices))]
    public void BatchNormInputGradBackward_MatchesTheDoubleBackwardFormula(int index)
    {
        RequireBackend();
        var g = NormCases[index];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = Round(RandomValues(940 + index, g.Length, 1, 4), dtype);
            var w = Round(RandomValues(950 + index, g.Channels, 0.5, 1.5), dtype);
            var gy = Round(RandomValues(960 + index, g.Length), dtype);
            var h = Round(RandomValues(970 + index, g.Length), dtype);
            var (_, mean, variance, _, _, _, _, _) = NormOracle(g, x, w, new double[g.Channels], gy, dtype);
            var (dx, dw, dxMag, dwMag) = NormDoubleBackwardOracle(g, x, w, gy, h, mean, variance);
            IStorage Nans(long n) => Up(Enumerable.Repeat(double.NaN, (int)n).ToArray(), dtype);
            var (sdx, sdw) = (Nans(g.Length), Nans(g.Channels));
            Backend.BatchNormInputGradBackward(g, Up(gy, dtype), Up(x, dtype), Up(mean, dtype), Up(variance, dtype), Up(w, dtype), Up(h, dtype), sdx, sdw);
            string what = $"{dtype.Name()} {g}";
            AssertClose(dx, Down(sdx), 0, NormTolerance(dxMag, g, dtype), $"batch-norm double backward dx {what}");
            AssertClose(dw, Down(sdw), 0, NormTolerance(dwMag, g, dtype), $"batch-norm double backward dw {what}");
        }
    }

    [Theory]
    [MemberData(nameof(NormCaseIndices))]
    public void BatchNormBackward_HasTheBitsOfTheKernelsItStandsFor(int index)
    {
        RequireBackend();
        var g = NormCases[index];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var (sx, sw, sy, sm, sv) = NormForward(g, 1900 + index, dtype, zeroFirstWeight: true);
            var sgy = Up(Round(RandomValues(1930 + index, g.Length), dtype), dtype);
            IStorage Nans(long n) => NanStorage(n, dtype);
            var (gx, gw) = (Nans(g.Length), Nans(g.Channels));
            Backend.BatchNormInputGrad(g, sgy, sx, sm, sv, sw, gx);
            Backend.BatchNormWeightGrad(g, sgy, sx, sm, sv, gw);
            string what = $"{dtype.Name()} {g}";
            foreach (var (withWeight, withNormalized) in new[] { (true, true), (true, false), (false, true), (false, false) })
            {
                var (fx, fw, fn) = (Nans(g.Length), withWeight ? Nans(g.Channels) : null, withNormalized ? Nans(g.Length) : null);
                Backend.BatchNormBackward(g, sgy, sx, sm, sv, sw, fx, fw, fn);
                string which = $"{what} (weight {withWeight}, normalized {withNormalized})";
                AssertBitwise(Down(gx), Down(fx), $"fused batch-norm input grad {which}");
                if (fw is not null)
                {
                    AssertBitwise(Down(gw), Down(fw), $"fused batch-norm weight grad {which}");
                }
                if (fn is not null)
                {
                    // w·x̂ is the forward's output with a zero bias, bit for bit.
                    AssertBitwise(Down(sy), Down(fn), $"fused batch-norm w·x̂ {which}");
                }
            }
            // Added into a destination: the destination plus the written value, as a separate Add gives it.
            var start = Round(RandomValues(1990 + index, g.Length), dtype);
            foreach (var (accX, accN) in new[] { (true, false), (false, true), (true, true) })
            {
                var (ax, an) = (Up(start, dtype), Up(start, dtype));
                var flags = (accX ? NormAccumulate.GradX : NormAccumulate.None) | (accN ? NormAccumulate.Second : NormAccumulate.None);
                Backend.BatchNormBackward(g, sgy, sx, sm, sv, sw, ax, null, an, flags);
                var (qx, qn) = (Up(start, dtype), Up(start, dtype));
                ComposedKernels.BatchNormBackward(Backend, g, sgy, sx, sm, sv, sw, qx, null, qn, flags);
                AssertBitwise(Down(accX ? Added(start, gx, dtype) : gx), Down(ax), $"accumulated batch-norm input grad {what} ({flags})");
                AssertBitwise(Down(accN ? Added(start, sy, dtype) : sy), Down(an), $"accumulated batch-norm w·x̂ {what} ({flags})");
                AssertBitwise(Down(ax), Down(qx), $"composed accumulated batch-norm input grad {what} ({flags})");
                AssertBitwise(Down(an), Down(qn), $"composed accumulated batch-norm w·x̂ {what} ({flags})");
            }
            // The interface's default (what a backend without a fused kernel runs) gives the same bits.
            var (cx, cw, cn) = (Nans(g.Length), Nans(g.Channels), Nans(g.Length));
            ComposedKernels.BatchNormBackward(Backend, g, sgy, sx, sm, sv, sw, cx, cw, cn);
            AssertBitwise(Down(gx), Down(cx), $"composed batch-norm input grad {what}");
            AssertBitwise(Down(gw), Down(cw), $"composed batch-norm weight grad {what}");
            AssertBitwise(Down(sy), Down(cn), $"composed batch-norm w·x̂ {what}");
        }
    }

    [Theory]
    [MemberData(nameof(NormCaseIndices))]
    public void BatchNormBackward_ScaledNormalizedBias_IsAddedPerChannelAfterRounding(int index)
    {
        // w·x̂ + bias_c, the bias added once w·x̂ is rounded: against the host's own rounded addition, written and added
        // into a destination, by the fused kernel and by the composed default alike; the input gradient is untouched.
        RequireBackend();
        var g = NormCases[index];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var (sx, sw, sy, sm, sv) = NormForward(g, 2300 + index, dtype, zeroFirstWeight: true);
            var sgy = Up(Round(RandomValues(2330 + index, g.Length), dtype), dtype);
            var bias = Round(RandomValues(2360 + index, g.Channels, -2, 2), dtype);
            var sb = Up(bias, dtype);
            var y = Down(sy);
            var biased = Round(Enumerable.Range(0, (int)g.Length).Select(i => y[i] + bias[(int)(i / g.Spatial % g.Channels)]).ToArray(), dtype);
            var gx = NanStorage(g.Length, dtype);
            Backend.BatchNormInputGrad(g, sgy, sx, sm, sv, sw, gx);
            var start = Round(RandomValues(2390 + index, g.Length), dtype);
            var accumulated = Round(start.Zip(biased, (a, b) => a + b).ToArray(), dtype);
            string what = $"{dtype.Name()} {g}";
            foreach (bool composed in new[] { false, true })
            {
                foreach (bool accumulate in new[] { false, true })
                {
                    var (fx, fn) = (NanStorage(g.Length, dtype), accumulate ? Up(start, dtype) : NanStorage(g.Length, dtype));
                    var flags = accumulate ? NormAccumulate.Second : NormAccumulate.None;
                    if (composed)
                    {
                        ComposedKernels.BatchNormBackward(Backend, g, sgy, sx, sm, sv, sw, fx, null, fn, flags, scaledNormalizedBias: sb);
                    }
                    else
                    {
                        Backend.BatchNormBackward(g, sgy, sx, sm, sv, sw, fx, null, fn, flags, scaledNormalizedBias: sb);
                    }
                    string which = $"{what} ({(composed ? "composed" : "fused")}, {flags})";
                    AssertBitwise(accumulate ? accumulated : biased, Down(fn), $"batch-norm w·x̂ + bias {which}");
                    AssertBitwise(Down(gx), Down(fx), $"batch-norm input grad beside a bias {which}");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(NormCaseIndices))]
    public void BatchNormBackward_ChannelSums_HaveTheBitsOfReduce(int index)
    {
        // Σ gy and Σ of gx's final contents per channel, written, or added into a destination: the sums over axes 0 and
        // 2 of [N, C, S] that Reduce gives, bit for bit, with and without the other optional outputs.
        RequireBackend();
        var g = NormCases[index];
        var shape = new Shape(g.Batch, g.Channels, g.Spatial);
        bool[] axes = [true, false, true];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var (sx, sw, _, sm, sv) = NormForward(g, 2100 + index, dtype, zeroFirstWeight: false);
            var sgy = Up(Round(RandomValues(2130 + index, g.Length), dtype), dtype);
            var start = Round(RandomValues(2160 + index, g.Length), dtype);
            IStorage Nans(long n) => NanStorage(n, dtype);
            foreach (var (accumulate, withWeight) in new[] { (false, true), (true, false), (false, false), (true, true) })
            {
                var fx = accumulate ? Up(start, dtype) : Nans(g.Length);
                var (ys, xs) = (Nans(g.Channels), Nans(g.Channels));
                Backend.BatchNormBackward(g, sgy, sx, sm, sv, sw, fx, withWeight ? Nans(g.Channels) : null, null,
                    accumulate ? NormAccumulate.GradX : NormAccumulate.None, ys, xs);
                var (ry, rx) = (Nans(g.Channels), Nans(g.Channels));
                Backend.Reduce(ReduceOp.Sum, sgy, shape, axes, ry);
                Backend.Reduce(ReduceOp.Sum, fx, shape, axes, rx);
                string what = $"{dtype.Name()} {g} (accumulate {accumulate}, weight {withWeight})";
                AssertBitwise(Down(ry), Down(ys), $"batch-norm backward's Σ gy {what}");
                AssertBitwise(Down(rx), Down(xs), $"batch-norm backward's Σ gx {what}");
                // Only the one sum asked for: the other output stays unwritten.
                var only = Nans(g.Channels);
                Backend.BatchNormBackward(g, sgy, sx, sm, sv, sw, Nans(g.Length), null, null, NormAccumulate.None, only);
                AssertBitwise(Down(ry), Down(only), $"batch-norm backward's Σ gy alone {what}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(NormCaseIndices))]
    public void BatchNormDoubleBackward_HasTheBitsOfTheKernelsItStandsFor(int index)
    {
        RequireBackend();
        var g = NormCases[index];
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var (sx, sw, _, sm, sv) = NormForward(g, 1940 + index, dtype, zeroFirstWeight: false);
            var (sgy, sh) = (Up(Round(RandomValues(1960 + index, g.Length), dtype), dtype), Up(Round(RandomValues(1970 + index, g.Length), dtype), dtype));
            IStorage Nans(long n) => NanStorage(n, dtype);
            var (ggy, gx, gw) = (Nans(g.Length), Nans(g.Length), Nans(g.Channels));
            Backend.BatchNormInputGrad(g, sh, sx, sm, sv, sw, ggy);
            Backend.BatchNormInputGradBackward(g, sgy, sx, sm, sv, sw, sh, gx, gw);
            var (fgy, fx, fw) = (Nans(g.Length), Nans(g.Length), Nans(g.Channels));
            Backend.BatchNormDoubleBackward(g, sgy, sx, sm, sv, sw, sh, fgy, fx, fw);
            string what = $"{dtype.Name()} {g}";
            AssertBitwise(Down(ggy), Down(fgy), $"fused batch-norm double backward d gy {what}");
            AssertBitwise(Down(gx), Down(fx), $"fused batch-norm double backward dx {what}");
            AssertBitwise(Down(gw), Down(fw), $"fused batch-norm double backward dw {what}");
            var start = Round(RandomValues(1980 + index, g.Length), dtype);
            foreach (var (accX, accG) in new[] { (true, false), (false, true), (true, true) })
            {
                var (agy, ax, aw) = (Up(start, dtype), Up(start, dtype), Nans(g.Channels));
                var flags = (accX ? NormAccumulate.GradX : NormAccumulate.None) | (accG ? NormAccumulate.Second : NormAccumulate.None);
                Backend.BatchNormDoubleBackward(g, sgy, sx, sm, sv, sw, sh, agy, ax, aw, flags);
                var (cgy, cx, cw) = (Up(start, dtype), Up(start, dtype), Nans(g.Channels));
                ComposedKernels.BatchNormDoubleBackward(Backend, g, sgy, sx, sm, sv, sw, sh, cgy, cx, cw, flags);
                AssertBitwise(Down(accG ? Added(start, ggy, dtype) : ggy), Down(agy), $"accumulated double backward d gy {what} ({flags})");
                AssertBitwise(Down(accX ? Added(start, gx, dtype) : gx), Down(ax), $"accumulated double backward dx {what} ({flags})");
                AssertBitwise(Down(gw), Down(aw), $"accumulated double backward dw {what} ({flags})");
                AssertBitwise(Down(agy), Down(cgy), $"composed accumulated double backward d gy {what} ({flags})");
                AssertBitwise(Down(ax), Down(cx), $"composed accumulated double backward dx {what} ({flags})");
            }
        }
    }

    /// <summary>A storage of n NaNs: an output every element of which must be written.</summary>
    private IStorage NanStorage(long n, DType dtype) => Up(Enumerable.Repeat(double.NaN, (int)n).ToArray(), dtype);

    /// <summary>
    /// x (off-centre, seed <paramref name="seed"/>) and w (seed + 10, optionally with channel 0's weight 0) as storages,
    /// and the forward with a zero bias: y = w·x̂ and the statistics the gradient kernels read.
    /// </summary>
    private (IStorage X, IStorage W, IStorage Y, IStorage Mean, IStorage Variance) NormForward(NormGeometry g, int seed, DType dtype, bool zeroFirstWeight)
    {
        var x = Round(RandomValues(seed, g.Length, 1, 4), dtype);
        var w = Round(RandomValues(seed + 10, g.Channels, 0.5, 1.5), dtype);
        if (zeroFirstWeight)
        {
            w[0] = 0;
        }
        var (sx, sw) = (Up(x, dtype), Up(w, dtype));
        var (sy, sm, sv) = (NanStorage(g.Length, dtype), NanStorage(g.Channels, dtype), NanStorage(g.Channels, dtype));
        Backend.BatchNorm(g, sx, sw, Up(new double[g.Channels], dtype), sy, sm, sv);
        return (sx, sw, sy, sm, sv);
    }

    /// <summary>start + value by the backend's own Add (the engine's separate accumulation).</summary>
    private IStorage Added(double[] start, IStorage value, DType dtype)
    {
        var y = Up(start, dtype);
        var shape = new Shape(start.Length);
        Backend.Binary(BinaryOp.Add, y, shape, value, shape, y, shape);
        return y;
    }

    [Fact]
    public void BatchNorm_RefusesBadGeometryAndOperands_NamingTheOp()
    {
        RequireBackend();
        var g = new NormGeometry(2, 3, 4, 1e-5);
        IStorage F32(long n) => Up(new double[n], DType.Float32);
        var (x, y, c) = (F32(g.Length), F32(g.Length), F32(g.Channels));
        var ex = Assert.Throws<ArgumentException>(() => Backend.BatchNorm(g with { Spatial = 0 }, x, c, c, y, c, c));
        Assert.Contains("BatchNorm", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Backend.BatchNorm(g with { Eps = -1 }, x, c, c, y, c, c));
        Assert.Contains("eps", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => Backend.BatchNorm(g, x, F32(2), c, y, c, c));
        Assert.Throws<ArgumentException>(() => Backend.BatchNorm(g, F32(g.Length - 1), c, c, y, c, c));
        Assert.Throws<ArgumentException>(() => Backend.BatchNorm(g, x, c, c, y, c, Up(new double[3], DType.Float64)));
        ex = Assert.Throws<ArgumentException>(() => Backend.BatchNormInputGrad(g, F32(5), x, c, c, c, y));
        Assert.Contains("BatchNormInputGrad", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Backend.BatchNormWeightGrad(g, x, x, c, c, F32(1)));
        Assert.Contains("BatchNormWeightGrad", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Backend.BatchNormInputGradBackward(g, x, x, c, c, c, F32(g.Length - 1), y, c));
        Assert.Contains("BatchNormInputGradBackward", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Backend.BatchNormInputGradBackward(g, x, x, c, c, c, x, y, F32(2)));
        Assert.Contains("BatchNormInputGradBackward", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Backend.BatchNormBackward(g, x, x, c, c, c, y, F32(2), null));
        Assert.Contains("BatchNormBackward", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Backend.BatchNormBackward(g, x, x, c, c, c, y, null, F32(g.Length - 1)));
        Assert.Contains("BatchNormBackward", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Backend.BatchNormBackward(g, x, x, c, c, c, y, null, null, scaledNormalizedBias: c));
        Assert.Contains("BatchNormBackward", ex.Message, StringComparison.Ordinal);
        Assert.Contains("scaledNormalizedBias", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Backend.BatchNormBackward(g, x, x, c, c, c, y, null, F32(g.Length), scaledNormalizedBias: F32(g.Channels - 1)));
        Assert.Contains("BatchNormBackward", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Backend.BatchNormDoubleBackward(g, x, x, c, c, c, x, F32(g.Length - 1), y, c));
        Assert.Contains("BatchNormDoubleBackward", ex.Message, StringComparison.Ordinal);
    }
}
