namespace Higher.Conformance.Kernels;

public abstract partial class KernelConformance
{
    /// <summary>Shapes with axis sets: single and multiple groups, none, all, size-1, empty and scalar.</summary>
    public static TheoryData<int[], bool[]> ReduceCases => new()
    {
        { new[] { 5, 7 }, new[] { true, false } },
        { new[] { 5, 7 }, new[] { false, true } },
        { new[] { 5, 7 }, new[] { true, true } },
        { new[] { 5, 7 }, new[] { false, false } },
        { new[] { 2, 3, 4 }, new[] { true, false, true } },
        { new[] { 2, 3, 4 }, new[] { false, true, false } },
        { new[] { 2, 3, 4 }, new[] { true, true, false } },
        { new[] { 2, 3, 4 }, new[] { false, true, true } },
        { new[] { 2, 3, 4, 5 }, new[] { false, true, false, true } },
        { new[] { 3, 2, 4, 5 }, new[] { true, false, true, false } },
        { new[] { 3, 1, 4 }, new[] { false, true, true } },
        { new[] { 1, 1, 1 }, new[] { true, false, true } },
        { new[] { 3, 0, 2 }, new[] { false, true, false } },
        { new[] { 0, 3 }, new[] { false, true } },
        { new[] { 0, 3 }, new[] { true, false } },
        { System.Array.Empty<int>(), System.Array.Empty<bool>() },
        { new[] { 7, 300 }, new[] { false, true } },
        { new[] { 300, 19 }, new[] { true, false } },
        { new[] { 4, 130, 3 }, new[] { false, true, false } },
        { new[] { 1000003 }, new[] { true } },
        // Several groups at sizes that take the vector rows and the parallel split: batch norm's
        // statistics ([N, C, H, W] over N, H, W), a kept innermost row, three reduced groups.
        { new[] { 7, 64, 26, 26 }, new[] { true, false, true, true } },
        { new[] { 3, 40, 5, 1000 }, new[] { true, false, true, false } },
        { new[] { 5, 9, 6, 700 }, new[] { false, true, false, true } },
        { new[] { 4, 3, 5, 2, 37 }, new[] { true, false, true, false, true } },
    };

    private static double[] ReduceOracle(ReduceOp op, double[] x, int[] shape, bool[] axes)
    {
        var yDims = shape.Select((d, i) => axes[i] ? 1 : d).ToArray();
        var y = new double[Oracle.Numel(yDims)];
        Array.Fill(y, op switch { ReduceOp.Sum => 0.0, ReduceOp.Max => double.NegativeInfinity, _ => double.PositiveInfinity });
        // Sums use Kahan-Babuska compensation so the oracle is tighter than any backend.
        var comp = new double[y.Length];
        for (long i = 0; i < x.Length; i++)
        {
            var idx = Oracle.Unravel(i, shape);
            for (int d = 0; d < idx.Length; d++)
            {
                if (axes[d])
                {
                    idx[d] = 0;
                }
            }
            long o = 0;
            for (int d = 0; d < idx.Length; d++)
            {
                o = o * yDims[d] + idx[d];
            }
            switch (op)
            {
                case ReduceOp.Sum:
                    double t = y[o] + x[i];
                    comp[o] += Math.Abs(y[o]) >= Math.Abs(x[i]) ? (y[o] - t) + x[i] : (x[i] - t) + y[o];
                    y[o] = t;
                    break;
                case ReduceOp.Max:
                    y[o] = Oracle.Max(y[o], x[i]);
                    break;
                default:
                    y[o] = Oracle.Min(y[o], x[i]);
                    break;
            }
        }
        for (int o = 0; o < y.Length; o++)
        {
            y[o] += comp[o];
        }
        return y;
    }

    [Theory]
    [MemberData(nameof(ReduceCases))]
    public void Reduce_EveryOp_MatchesOracle(int[] shape, bool[] axes)
    {
        RequireBackend();
        long n = Oracle.Numel(shape);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = Round(RandomValues(21, n, -1, 3), dtype);
            foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Max, ReduceOp.Min })
            {
                var expected = ReduceOracle(op, x, shape, axes);
                var y = Backend.AllocateUninitialized(dtype, expected.Length);
                Backend.Reduce(op, Up(x, dtype), new Shape(shape), axes, y);
                // A sum in a fixed pairwise/blocked order errs by about (c + log2 count)·eps·Σ|x|; Max/Min are exact.
                long count = expected.Length == 0 ? 0 : n / expected.Length;
                double eps = Ulps(dtype, 1);
                var sumAbs = ReduceOracle(ReduceOp.Sum, x.Select(Math.Abs).ToArray(), shape, axes);
                var abs = op == ReduceOp.Sum ? sumAbs.Select(v => v * eps * (16 + 2 * Math.Log2(count + 1))).ToArray() : new double[expected.Length];
                double rel = op == ReduceOp.Sum ? eps : 0;
                AssertClose(Round(expected, dtype), Down(y), rel, abs, $"{op} {dtype.Name()} [{string.Join(",", shape)}]");
            }
        }
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Reduce_Sum_OfLongVector_IsAccurate(DType dtype)
    {
        RequireBackend();
        // Pairwise or float64 accumulation keeps this within a few ulps; a naive float32 loop would not.
        const int N = 1 << 22;
        var x = new double[N];
        Array.Fill(x, dtype == DType.Float32 ? 0.1f : 0.1);
        double exact = (dtype == DType.Float32 ? (double)0.1f : 0.1) * N;
        var y = Backend.Allocate(dtype, 1);
        Backend.Reduce(ReduceOp.Sum, Up(x, dtype), new Shape(N), [true], y);
        Assert.True(Math.Abs(Down(y)[0] - exact) <= exact * Ulps(dtype, 16), $"sum {Down(y)[0]:R}, exact {exact:R}");
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Reduce_MaxMin_PropagateNaN(DType dtype)
    {
        RequireBackend();
        // NaN in the middle of a vector block, at the tail, and in one column only.
        var x = RandomValues(31, 3 * 37, -5, 5);
        x[20] = double.NaN;
        x[37 + 36] = double.NaN;
        var shape = new Shape(3, 37);
        foreach (var op in new[] { ReduceOp.Max, ReduceOp.Min })
        {
            var rows = Backend.Allocate(dtype, 3);
            Backend.Reduce(op, Up(x, dtype), shape, [false, true], rows);
            var r = Down(rows);
            Assert.True(double.IsNaN(r[0]) && double.IsNaN(r[1]) && !double.IsNaN(r[2]), $"{op} rows: {string.Join(", ", r)}");
            var cols = Backend.Allocate(dtype, 37);
            Backend.Reduce(op, Up(x, dtype), shape, [true, false], cols);
            var c = Down(cols);
            for (int j = 0; j < 37; j++)
            {
                Assert.Equal(j is 20 or 36, double.IsNaN(c[j]));
            }
        }
    }

    public static TheoryData<int, int, int> ArgShapes => new()
    {
        { 1, 1, 1 }, { 1, 37, 1 }, { 4, 5, 1 }, { 1, 6, 7 }, { 3, 9, 5 }, { 2, 1, 3 }, { 0, 4, 2 }, { 2, 70, 33 },
    };

    [Theory]
    [MemberData(nameof(ArgShapes))]
    public void ArgReduce_ReturnsFirstExtremeAndItsValue(int outer, int size, int inner)
    {
        RequireBackend();
        // Rounded values make ties common: the first index must win.
        var x = RandomValues(41, (long)outer * size * inner, -3, 3).Select(v => Math.Round(v)).ToArray();
        foreach (var dtype in new[] { DType.Float32, DType.Float64, DType.Int64 })
        {
            foreach (var op in new[] { ReduceOp.Max, ReduceOp.Min })
            {
                var ev = new double[outer * inner];
                var ei = new long[outer * inner];
                for (int o = 0; o < outer; o++)
                {
                    for (int i = 0; i < inner; i++)
                    {
                        int best = 0;
                        for (int s = 1; s < size; s++)
                        {
                            double v = x[(o * size + s) * inner + i], b = x[(o * size + best) * inner + i];
                            if (op == ReduceOp.Max ? v > b : v < b)
                            {
                                best = s;
                            }
                        }
                        ev[o * inner + i] = x[(o * size + best) * inner + i];
                        ei[o * inner + i] = best;
                    }
                }
                var idx = Backend.Allocate(DType.Int64, ev.Length);
                if (dtype == DType.Int64)
                {
                    var vals = Backend.Allocate(DType.Int64, ev.Length);
                    Backend.ArgReduce(op, UpLong(x.Select(v => (long)v).ToArray()), outer, size, inner, vals, idx);
                    Assert.Equal(ev.Select(v => (long)v), DownLong(vals));
                }
                else
                {
                    var vals = Backend.Allocate(dtype, ev.Length);
                    Backend.ArgReduce(op, Up(x, dtype), outer, size, inner, vals, idx);
                    AssertClose(ev, Down(vals), 0, 0, $"{op} {dtype.Name()} values");
                }
                Assert.Equal(ei, DownLong(idx));
            }
        }
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void ArgReduce_NaNIsTheExtreme_FirstNaNWins(DType dtype)
    {
        RequireBackend();
        double[] x = [1, double.NaN, 7, double.NaN, -7, /* second row */ 2, 9, -9, 3, 0];
        foreach (var op in new[] { ReduceOp.Max, ReduceOp.Min })
        {
            var vals = Backend.Allocate(dtype, 2);
            var idx = Backend.Allocate(DType.Int64, 2);
            Backend.ArgReduce(op, Up(x, dtype), 2, 5, 1, vals, idx);
            var v = Down(vals);
            Assert.True(double.IsNaN(v[0]));
            Assert.Equal(op == ReduceOp.Max ? 9.0 : -9.0, v[1]);
            Assert.Equal(op == ReduceOp.Max ? new long[] { 1, 1 } : [1, 2], DownLong(idx));
        }
    }
}
