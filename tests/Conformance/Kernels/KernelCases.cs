namespace Higher.Conformance.Kernels;

/// <summary>
/// Every <see cref="IBackend"/> kernel as a small case: a function of a backend and a dtype that
/// uploads deterministic inputs, runs the kernel and downloads every output as doubles. Two
/// harnesses run this one table: the conformance suite (KernelConformance, each backend against a
/// single-threaded Reference) and the device check (tools/DeviceCheck, compiled from this file).
/// Elementwise kernels are compared relative to each element; kernels that accumulate (reductions,
/// GEMM, scatter-add), whose summation order may differ, in max-norm. Non-finite values and integer
/// outputs must match exactly.
/// </summary>
internal static class KernelCases
{
    /// <summary>One kernel call on <paramref name="backend"/> in <paramref name="dtype"/>: its outputs as doubles.</summary>
    public delegate double[][] KernelCase(IBackend backend, DType dtype);

    // Kernels whose summation order may differ between backends: compared in max-norm.
    private static readonly string[] Accumulating = ["Reduce", "Gemm", "ScatterAdd", "IndexAdd", "Conv", "AvgPool", "AdaptiveAvgPool"];

    /// <summary>True for the cases of kernels that accumulate (compared in max-norm).</summary>
    public static bool Accumulates(string name) => Accumulating.Any(prefix => name.StartsWith(prefix, StringComparison.Ordinal));

    /// <summary>
    /// Runs <paramref name="run"/> on both backends; the worst error over its outputs, and which output
    /// it was. An exception of the candidate is the caller's to report.
    /// </summary>
    public static (double Worst, string Detail) Compare(KernelCase run, string name, DType dtype, IBackend reference, IBackend candidate)
    {
        ArgumentNullException.ThrowIfNull(run);
        var expected = run(reference, dtype);
        var actual = run(candidate, dtype);
        bool accumulates = Accumulates(name);
        double worst = 0;
        string detail = "";
        for (int o = 0; o < expected.Length; o++)
        {
            double error = accumulates ? Errors.MaxNormRelative(expected[o], actual[o]) : Errors.Relative(expected[o], actual[o]);
            if (error > worst || double.IsNaN(error))
            {
                worst = double.IsNaN(error) ? double.PositiveInfinity : error;
                detail = $"output {o}";
            }
        }
        return (worst, detail);
    }

    private static readonly double[] Specials = [0.0, -0.0, 1, -1, 0.5, -0.5, 1e-30, 30, -30, double.NaN, double.PositiveInfinity, double.NegativeInfinity];

    // ---- Inputs and outputs ----------------------------------------------------------------------

    private static double[] Values(int seed, int n, double lo = -2, double hi = 2)
    {
        var rng = new Random(seed);
        var v = new double[n];
        for (int i = 0; i < n; i++)
        {
            v[i] = lo + (hi - lo) * rng.NextDouble();
        }
        return v;
    }

    private static long[] Indices(int seed, int n, int size)
    {
        var rng = new Random(seed);
        var v = new long[n];
        for (int i = 0; i < n; i++)
        {
            v[i] = rng.Next(size);
        }
        return v;
    }

    private static IStorage Up(IBackend b, double[] values, DType dtype) => dtype switch
    {
        DType.Float32 => b.Upload<float>(Array.ConvertAll(values, v => (float)v), DType.Float32),
        DType.Float64 => b.Upload<double>(values, DType.Float64),
        DType.Int64 => b.Upload<long>(Array.ConvertAll(values, v => (long)v), DType.Int64),
        _ => b.Upload<bool>(Array.ConvertAll(values, v => v != 0), DType.Bool),
    };

    private static IStorage UpLong(IBackend b, long[] values) => b.Upload<long>(values, DType.Int64);

    private static double[] Down(IBackend b, IStorage s)
    {
        switch (s.DType)
        {
            case DType.Float32:
                var f = new float[s.Length];
                b.Download<float>(s, f);
                return Array.ConvertAll(f, v => (double)v);
            case DType.Float64:
                var d = new double[s.Length];
                b.Download<double>(s, d);
                return d;
            case DType.Int64:
                var l = new long[s.Length];
                b.Download<long>(s, l);
                return Array.ConvertAll(l, v => (double)v);
            default:
                var o = new bool[s.Length];
                b.Download<bool>(s, o);
                return Array.ConvertAll(o, v => v ? 1.0 : 0.0);
        }
    }

    // ---- The cases -------------------------------------------------------------------------------

    /// <summary>Every case, named.</summary>
    public static IEnumerable<(string Name, KernelCase Run)> All()
    {
        yield return ("Upload/Download", (b, t) => [Down(b, Up(b, Values(1, 1037), t))]);
        yield return ("Allocate (zeroed)", (b, t) => [Down(b, b.Allocate(t, 1037))]);
        yield return ("Fill", (b, t) =>
        {
            var y = b.AllocateUninitialized(t, 1037);
            b.Fill(y, -3.25);
            return [Down(b, y)];
        });

        double[] castInputs = [.. Specials[..9], 2.5, -2.5, 3.75, -7.99, 1e6, 123456.789, .. Values(2, 100, -50, 50)];
        foreach (var target in new[] { DType.Float32, DType.Float64, DType.Int64, DType.Bool })
        {
            yield return ($"Cast to {target.Name()}", (b, t) =>
            {
                var y = b.Allocate(target, castInputs.Length);
                b.Cast(Up(b, castInputs, t), y);
                return [Down(b, y)];
            });
        }
        yield return ("Cast from int64 and bool", (b, t) =>
        {
            long[] ints = [0, 1, -1, 7, -123456789, 1L << 40];
            var fromInt = b.Allocate(t, ints.Length);
            b.Cast(UpLong(b, ints), fromInt);
            var fromBool = b.Allocate(t, 3);
            b.Cast(b.Upload<bool>([true, false, true], DType.Bool), fromBool);
            return [Down(b, fromInt), Down(b, fromBool)];
        });

        yield return ("StridedCopy (permuted view into an offset)", (b, t) =>
        {
            // x is [4, 5, 6]; copy its permute(2, 0, 1) view, starting one element in, into y[3..].
            var x = Up(b, Values(3, 4 * 5 * 6 + 1), t);
            var y = b.Allocate(t, 3 + 6 * 4 * 5);
            b.StridedCopy(x, 1, [1, 30, 6], y, 3, [20, 5, 1], new Shape(6, 4, 5));
            return [Down(b, y)];
        });

        foreach (var op in Enum.GetValues<UnaryOp>())
        {
            var (lo, hi, alpha, beta) = UnaryRange(op);
            yield return ($"Unary {op}", (b, t) =>
            {
                double[] x = [.. Specials, .. Values(10 + (int)op, 1037, lo, hi)];
                var y = b.AllocateUninitialized(t, x.Length);
                b.Unary(op, Up(b, x, t), y, alpha, beta);
                return [Down(b, y)];
            });
        }
        yield return ("Unary Affine (int64)", (b, _) =>
        {
            var y = b.AllocateUninitialized(DType.Int64, 100);
            b.Unary(UnaryOp.Affine, UpLong(b, Indices(4, 100, 1000)), y, 3, -7);
            return [Down(b, y)];
        });

        foreach (var op in Enum.GetValues<BinaryOp>())
        {
            yield return ($"Binary {op} (broadcast [4, 1, 5] with [3, 1])", (b, t) =>
            {
                var a = Values(20 + (int)op, 20, op == BinaryOp.Pow ? 0.1 : -2, 2);
                var c = Values(30 + (int)op, 3, -2, 2);
                if (op == BinaryOp.Div)
                {
                    c = Array.ConvertAll(c, v => v + Math.CopySign(0.5, v));
                }
                var y = b.AllocateUninitialized(t, 60);
                b.Binary(op, Up(b, a, t), new Shape(4, 1, 5), Up(b, c, t), new Shape(3, 1), y, new Shape(4, 3, 5));
                return [Down(b, y)];
            });
        }
        yield return ("ScaledAdd (100003 elements, alpha -0.01)", (b, t) =>
        {
            var y = b.AllocateUninitialized(t, 100_003);
            b.ScaledAdd(Up(b, Values(7, 100_003), t), Up(b, Values(8, 100_003), t), -0.01, y);
            return [Down(b, y)];
        });
        yield return ("Binary Mul (int64, broadcast)", (b, _) =>
        {
            var y = b.AllocateUninitialized(DType.Int64, 12);
            b.Binary(BinaryOp.Mul, UpLong(b, [1, -2, 3, 4]), new Shape(4, 1), UpLong(b, [5, 6, -7]), new Shape(3), y, new Shape(4, 3));
            return [Down(b, y)];
        });
        yield return ("Binary Add (same shape, 100003 elements)", (b, t) =>
        {
            var y = b.AllocateUninitialized(t, 100_003);
            var s = new Shape(100_003);
            b.Binary(BinaryOp.Add, Up(b, Values(5, 100_003), t), s, Up(b, Values(6, 100_003), t), s, y, s);
            return [Down(b, y)];
        });

        foreach (var op in Enum.GetValues<CompareOp>())
        {
            yield return ($"Compare {op} (broadcast)", (b, t) =>
            {
                // Small integers, so that equal pairs occur; NaN compares false (Ne true).
                double[] a = [.. Array.ConvertAll(Values(40, 19, -3, 3), Math.Round), double.NaN];
                double[] c = Array.ConvertAll(Values(41, 5, -3, 3), Math.Round);
                var y = b.Allocate(DType.Bool, 100);
                b.Compare(op, Up(b, a, t), new Shape(4, 5, 1), Up(b, c, t), new Shape(5), y, new Shape(4, 5, 5));
                return [Down(b, y)];
            });
        }

        yield return ("Where (broadcast condition and operands)", (b, t) =>
        {
            var condition = b.Upload<bool>(Array.ConvertAll(Values(50, 20), v => v > 0), DType.Bool);
            var y = b.AllocateUninitialized(t, 60);
            b.Where(condition, new Shape(4, 1, 5), Up(b, Values(51, 15), t), new Shape(3, 5), Up(b, Values(52, 12), t), new Shape(4, 3, 1), y, new Shape(4, 3, 5));
            return [Down(b, y)];
        });

        bool[][] axisSets = [[true, false, false], [false, true, false], [false, false, true], [true, false, true], [true, true, true]];
        foreach (var op in Enum.GetValues<ReduceOp>())
        {
            yield return ($"Reduce {op} over [6, 5, 4] (5 axis sets)", (b, t) =>
            {
                var x = Up(b, Values(60 + (int)op, 120), t);
                return [.. axisSets.Select(axes =>
                {
                    int kept = (axes[0] ? 1 : 6) * (axes[1] ? 1 : 5) * (axes[2] ? 1 : 4);
                    var y = b.AllocateUninitialized(t, kept);
                    b.Reduce(op, x, new Shape(6, 5, 4), axes, y);
                    return Down(b, y);
                })];
            });
        }
        foreach (var op in Enum.GetValues<ReduceOp>())
        {
            yield return ($"Reduce {op} over several groups ([7, 64, 26, 26] over 0, 2, 3; [3, 40, 5, 1000] over 0, 2)", (b, t) =>
            {
                var x = Up(b, Values(64 + (int)op, 7 * 64 * 26 * 26), t);
                var perChannel = b.AllocateUninitialized(t, 64);
                b.Reduce(op, x, new Shape(7, 64, 26, 26), [true, false, true, true], perChannel);
                var z = Up(b, Values(68 + (int)op, 3 * 40 * 5 * 1000), t);
                var keptRows = b.AllocateUninitialized(t, 40 * 1000);
                b.Reduce(op, z, new Shape(3, 40, 5, 1000), [true, false, true, false], keptRows);
                return [Down(b, perChannel), Down(b, keptRows)];
            });
        }
        yield return ("Where (contiguous condition, operands contiguous or scalar)", (b, t) =>
        {
            var condition = b.Upload<bool>(Array.ConvertAll(Values(53, 1031), v => v > 0), DType.Bool);
            var a = Up(b, Values(54, 1031), t);
            var c = Up(b, Values(55, 1031), t);
            var scalar = Up(b, [0.25], t);
            return [.. new[] { (a, c), (a, scalar), (scalar, c) }.Select(pair =>
            {
                var y = b.AllocateUninitialized(t, 1031);
                b.Where(condition, new Shape(1031), pair.Item1, new Shape(pair.Item1 == scalar ? 1 : 1031), pair.Item2,
                    new Shape(pair.Item2 == scalar ? 1 : 1031), y, new Shape(1031));
                return Down(b, y);
            })];
        });
        yield return ("Reduce Sum of [300, 1000] (rows, columns, all)", (b, t) =>
        {
            var x = Up(b, Values(70, 300_000), t);
            var rows = b.AllocateUninitialized(t, 300);
            b.Reduce(ReduceOp.Sum, x, new Shape(300, 1000), [false, true], rows);
            var cols = b.AllocateUninitialized(t, 1000);
            b.Reduce(ReduceOp.Sum, x, new Shape(300, 1000), [true, false], cols);
            var all = b.AllocateUninitialized(t, 1);
            b.Reduce(ReduceOp.Sum, x, new Shape(300, 1000), [true, true], all);
            return [Down(b, rows), Down(b, cols), Down(b, all)];
        });
        yield return ("Reduce over an empty axis (identities)", (b, t) =>
        {
            var x = b.Allocate(t, 0);
            return [.. Enum.GetValues<ReduceOp>().Select(op =>
            {
                var y = b.AllocateUninitialized(t, 3);
                b.Reduce(op, x, new Shape(3, 0), [false, true], y);
                return Down(b, y);
            })];
        });

        foreach (var op in new[] { ReduceOp.Max, ReduceOp.Min })
        {
            yield return ($"ArgReduce {op} ([6, 7, 5] along 7, ties and NaN)", (b, t) =>
            {
                var v = Array.ConvertAll(Values(80 + (int)op, 210, -4, 4), x => Math.Round(x * 2) / 2);
                v[17] = double.NaN;
                var values = b.AllocateUninitialized(t, 30);
                var indices = b.Allocate(DType.Int64, 30);
                b.ArgReduce(op, Up(b, v, t), 6, 7, 5, values, indices);
                return [Down(b, values), Down(b, indices)];
            });
        }

        foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
        {
            yield return ($"Gemm batch 3, 17x13x29, transposes ({ta}, {tb}), alpha 1.5, beta 0.5", (b, t) =>
            {
                const int M = 17, N = 13, K = 29, Batch = 3;
                var c = Up(b, Values(92, Batch * M * N), t);
                b.Gemm(ta, tb, Batch, M, N, K, 1.5, Up(b, Values(90, Batch * M * K), t), M * K, Up(b, Values(91, Batch * K * N), t), K * N, 0.5, c, M * N);
                return [Down(b, c)];
            });
        }
        yield return ("Gemm 256x256x256 and a shared B (stride 0)", (b, t) =>
        {
            var c = b.AllocateUninitialized(t, 256 * 256);
            b.Gemm(false, false, 1, 256, 256, 256, 1, Up(b, Values(93, 65536), t), 0, Up(b, Values(94, 65536), t), 0, 0, c, 0);
            var batched = b.AllocateUninitialized(t, 2 * 8 * 8);
            b.Gemm(false, true, 2, 8, 8, 8, 1, Up(b, Values(95, 128), t), 64, Up(b, Values(96, 64), t), 0, 0, batched, 64);
            return [Down(b, c), Down(b, batched)];
        });
        yield return ("Gemm with k = 0 (beta scales C)", (b, t) =>
        {
            var c = Up(b, Values(97, 12), t);
            var empty = b.Allocate(t, 0);
            b.Gemm(false, false, 1, 3, 4, 0, 1, empty, 0, empty, 0, 0.5, c, 0);
            return [Down(b, c)];
        });

        yield return ("Gather ([3, 7, 4] by [3, 9, 4])", (b, t) =>
        {
            var y = b.AllocateUninitialized(t, 3 * 9 * 4);
            b.Gather(Up(b, Values(100, 84), t), 3, 7, 4, UpLong(b, Indices(101, 108, 7)), 9, y);
            return [Down(b, y)];
        });
        yield return ("IndexSelect ([3, 7, 4] by 9 indices)", (b, t) =>
        {
            var y = b.AllocateUninitialized(t, 3 * 9 * 4);
            b.IndexSelect(Up(b, Values(102, 84), t), 3, 7, 4, UpLong(b, Indices(103, 9, 7)), 9, y);
            return [Down(b, y)];
        });
        yield return ("ScatterAdd (duplicate indices)", (b, t) =>
        {
            var d = Up(b, Values(104, 84), t);
            b.ScatterAdd(d, 3, 7, 4, UpLong(b, Indices(105, 108, 7)), 9, Up(b, Values(106, 108), t));
            return [Down(b, d)];
        });
        yield return ("ScatterAddIntoZeros (duplicate indices)", (b, t) =>
        {
            var d = Up(b, Values(110, 84), t);
            b.ScatterAddIntoZeros(d, 3, 7, 4, UpLong(b, Indices(111, 108, 7)), 9, Up(b, Values(112, 108), t));
            return [Down(b, d)];
        });
        yield return ("ScatterAddIntoZeros (max-pool backward, [64, 676] by 169)", (b, t) =>
        {
            var d = b.AllocateUninitialized(t, 64 * 676);
            b.ScatterAddIntoZeros(d, 64, 676, 1, UpLong(b, Indices(113, 64 * 169, 676)), 169, Up(b, Values(114, 64 * 169), t));
            return [Down(b, d)];
        });
        yield return ("IndexAdd (duplicate indices)", (b, t) =>
        {
            var d = Up(b, Values(107, 84), t);
            b.IndexAdd(d, 3, 7, 4, UpLong(b, Indices(108, 9, 7)), 9, Up(b, Values(109, 108), t));
            return [Down(b, d)];
        });

        foreach (var distribution in new[] { RandomDistribution.Uniform, RandomDistribution.Normal })
        {
            yield return ($"Random {distribution} (counter across 2^32)", (b, t) =>
            {
                var y = b.AllocateUninitialized(t, 10_007);
                b.Random(y, distribution, 0x1234_5678_9abc_def0, (1UL << 32) - 70, distribution == RandomDistribution.Uniform ? -3 : 0.5, 2);
                return [Down(b, y)];
            });
        }

        foreach (var (label, g) in new[] { ("groups 2, stride 2, padding 1", new ConvGeometry(3, 4, 9, 8, 6, 3, 3, 5, 4, 2, 2, 1, 1, 1, 1, 2)),
            ("Omniglot layer 2", new ConvGeometry(25, 64, 13, 13, 64, 3, 3, 11, 11, 1, 1, 0, 0, 1, 1, 1)) })
        {
            yield return ($"Conv2d and its input/weight gradients ({label})", (b, t) =>
            {
                var y = b.AllocateUninitialized(t, g.OutputLength);
                var gx = b.AllocateUninitialized(t, g.InputLength);
                var gw = b.AllocateUninitialized(t, g.WeightLength);
                b.Conv2d(g, Up(b, Values(110, (int)g.InputLength), t), Up(b, Values(111, (int)g.WeightLength), t), y);
                b.Conv2dInputGrad(g, Up(b, Values(112, (int)g.OutputLength), t), Up(b, Values(111, (int)g.WeightLength), t), gx);
                b.Conv2dWeightGrad(g, Up(b, Values(110, (int)g.InputLength), t), Up(b, Values(112, (int)g.OutputLength), t), gw);
                return [Down(b, y), Down(b, gx), Down(b, gw)];
            });
        }
        foreach (var norm in new[] { new NormGeometry(25, 64, 121, 1e-5), new NormGeometry(7, 3, 1, 1e-3) })
        {
            yield return ($"BatchNorm [N, C, S] = [{norm.Batch}, {norm.Channels}, {norm.Spatial}] and its gradients", (b, t) =>
            {
                var (y, mean, variance) = (b.AllocateUninitialized(t, norm.Length), b.AllocateUninitialized(t, norm.Channels), b.AllocateUninitialized(t, norm.Channels));
                var (gx, gw) = (b.AllocateUninitialized(t, norm.Length), b.AllocateUninitialized(t, norm.Channels));
                var x = Up(b, Values(116, (int)norm.Length), t);
                var w = Up(b, Values(117, norm.Channels), t);
                var gy = Up(b, Values(118, (int)norm.Length), t);
                b.BatchNorm(norm, x, w, Up(b, Values(119, norm.Channels), t), y, mean, variance);
                b.BatchNormInputGrad(norm, gy, x, mean, variance, w, gx);
                b.BatchNormWeightGrad(norm, gy, x, mean, variance, gw);
                return [Down(b, y), Down(b, mean), Down(b, variance), Down(b, gx), Down(b, gw)];
            });
        }
        var pool = new PoolGeometry(6, 9, 9, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1);
        yield return ("MaxPool2d 3x3, stride 2, padding 1, with indices", (b, t) =>
        {
            var y = b.AllocateUninitialized(t, pool.OutputLength);
            var indices = b.Allocate(DType.Int64, pool.OutputLength);
            b.MaxPool2d(pool, Up(b, Values(113, (int)pool.InputLength), t), y, indices);
            return [Down(b, y), Down(b, indices)];
        });
        yield return ("AvgPool2d (count_include_pad) and its adjoint", (b, t) =>
        {
            var y = b.AllocateUninitialized(t, pool.OutputLength);
            var gx = b.AllocateUninitialized(t, pool.InputLength);
            b.AvgPool2d(pool, true, 0, Up(b, Values(114, (int)pool.InputLength), t), y);
            b.AvgPool2dGrad(pool, false, 0, Up(b, Values(115, (int)pool.OutputLength), t), gx);
            return [Down(b, y), Down(b, gx)];
        });
        yield return ("AdaptiveAvgPool2d 9x9 to 4x3 and its adjoint", (b, t) =>
        {
            var y = b.AllocateUninitialized(t, 6 * 12);
            var gx = b.AllocateUninitialized(t, 6 * 81);
            b.AdaptiveAvgPool2d(6, 9, 9, 4, 3, Up(b, Values(116, 6 * 81), t), y);
            b.AdaptiveAvgPool2dGrad(6, 9, 9, 4, 3, Up(b, Values(117, 6 * 12), t), gx);
            return [Down(b, y), Down(b, gx)];
        });
    }

    /// <summary>Input range and parameters per unary op (the conformance suite's, trimmed).</summary>
    private static (double Lo, double Hi, double Alpha, double Beta) UnaryRange(UnaryOp op)
    {
        var spec = UnarySpecs.For(op);
        return (spec.Lo, spec.Hi, spec.Alpha, spec.Beta);
    }
}

/// <summary>The error measures of the checks.</summary>
internal static class Errors
{
    /// <summary>
    /// max_i |c_i - r_i| / max(max_i |r_i|, tiny): the max-norm relative error of the engine's
    /// conformance tests. Non-finite reference values must be matched exactly (NaN by NaN) and
    /// are left out of both maxima; a non-finite candidate against a finite reference gives +∞.
    /// </summary>
    public static double MaxNormRelative(double[] reference, double[] candidate)
    {
        if (reference.Length != candidate.Length)
        {
            return double.PositiveInfinity;
        }
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double r = reference[i], c = candidate[i];
            if (!double.IsFinite(r))
            {
                if (!(double.IsNaN(r) ? double.IsNaN(c) : r == c))
                {
                    return double.PositiveInfinity;
                }
                continue;
            }
            if (!double.IsFinite(c))
            {
                return double.PositiveInfinity;
            }
            maxDiff = Math.Max(maxDiff, Math.Abs(c - r));
            maxRef = Math.Max(maxRef, Math.Abs(r));
        }
        return maxDiff / Math.Max(maxRef, 1e-300);
    }

    /// <summary>
    /// max_i |c_i - r_i| / max(|r_i|, tiny): the relative error of the worst element. Non-finite
    /// values must match exactly (NaN by NaN, infinities by sign).
    /// </summary>
    public static double Relative(double[] reference, double[] candidate) => Worst(reference, candidate, 1e-300);

    /// <summary>
    /// max_i |c_i - r_i| / max(1, |r_i|): the elementwise measure of GradCheck's cross-backend
    /// properties (relative for large values, absolute below 1). Non-finite values must match exactly.
    /// </summary>
    public static double Elementwise(double[] reference, double[] candidate) => Worst(reference, candidate, 1);

    /// <summary>max_i |c_i - r_i| / max(floor, |r_i|); non-finite values must match exactly, lengths too.</summary>
    private static double Worst(double[] reference, double[] candidate, double floor)
    {
        if (reference.Length != candidate.Length)
        {
            return double.PositiveInfinity;
        }
        double worst = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            double r = reference[i], c = candidate[i];
            if (r.Equals(c))
            {
                continue;
            }
            if (!double.IsFinite(r) || !double.IsFinite(c))
            {
                return double.PositiveInfinity;
            }
            worst = Math.Max(worst, Math.Abs(c - r) / Math.Max(floor, Math.Abs(r)));
        }
        return worst;
    }
}
