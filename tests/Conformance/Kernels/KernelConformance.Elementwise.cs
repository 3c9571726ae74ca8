namespace Higher.Conformance.Kernels;

public abstract partial class KernelConformance
{
    /// <summary>Specials every unary op sees besides its random range.</summary>
    private static readonly double[] Specials = [0.0, -0.0, 1, -1, 0.5, -0.5, 1e-30, -1e-30, 1e-8, 30, -30, 100, -100, double.NaN, double.PositiveInfinity, double.NegativeInfinity];

    public static TheoryData<UnaryOp, DType> UnaryCases()
    {
        var data = new TheoryData<UnaryOp, DType>();
        foreach (var op in Enum.GetValues<UnaryOp>())
        {
            data.Add(op, DType.Float32);
            data.Add(op, DType.Float64);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(UnaryCases))]
    public void Unary_MatchesOracle(UnaryOp op, DType dtype)
    {
        RequireBackend();
        var spec = UnarySpecs.For(op);
        // 1037 = vector blocks plus a ragged tail; specials ride at the front.
        double[] inputs = [.. Specials, .. RandomValues(100 + (int)op, 1037, spec.Lo, spec.Hi)];
        if (op == UnaryOp.Erf)
        {
            inputs = [.. inputs.Where(v => double.IsNaN(v) || Math.Abs(v) <= 4.5 || Math.Abs(v) >= 6)];
        }
        inputs = Round(inputs, dtype);
        var x = Up(inputs, dtype);
        var y = Backend.AllocateUninitialized(dtype, inputs.Length);
        Backend.Unary(op, x, y, spec.Alpha, spec.Beta);
        // Oracles compute in double from the stored inputs; float32 results are one rounding away.
        var expected = Round(inputs.Select(spec.F).ToArray(), dtype);
        double tiny = dtype == DType.Float32 ? 1e-37 : 1e-300;
        // alpha·x + beta may round twice and cancel: its error scales with the terms, not the result.
        var abs = inputs.Select(v => op == UnaryOp.Affine ? Ulps(dtype, 2) * (Math.Abs(spec.Alpha * v) + Math.Abs(spec.Beta)) : tiny).ToArray();
        AssertClose(expected, Down(y), Ulps(dtype, Math.Max(spec.Ulps, 1)), abs, $"{op} {dtype.Name()}");
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Unary_Log1p_IsAccurateNearZero(DType dtype)
    {
        RequireBackend();
        double[] inputs = Round([1e-20, -1e-20, 1e-10, -1e-10, 1e-7, 3e-5, -3e-5, 1e-3], dtype);
        var y = Backend.Allocate(dtype, inputs.Length);
        Backend.Unary(UnaryOp.Log1p, Up(inputs, dtype), y);
        AssertClose(Round(inputs.Select(Oracle.Log1p).ToArray(), dtype), Down(y), Ulps(dtype, 3));
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Unary_SigmoidAndSoftplus_DoNotOverflow(DType dtype)
    {
        RequireBackend();
        double[] inputs = [-1000, -200, 200, 1000, 89, -89];
        var s = Backend.Allocate(dtype, inputs.Length);
        Backend.Unary(UnaryOp.Sigmoid, Up(inputs, dtype), s);
        var sv = Down(s);
        Assert.All(sv, v => Assert.True(v >= 0 && v <= 1 && !double.IsNaN(v)));
        Assert.Equal(1.0, sv[3]);
        Assert.Equal(0.0, sv[0]);
        var p = Backend.Allocate(dtype, inputs.Length);
        Backend.Unary(UnaryOp.Softplus, Up(inputs, dtype), p);
        var pv = Down(p);
        Assert.Equal(1000.0, pv[3]);
        Assert.Equal(0.0, pv[0]);
        Assert.All(pv, v => Assert.True(double.IsFinite(v) && v >= 0));
    }

    [Fact]
    public void Unary_AffineOnInt64()
    {
        RequireBackend();
        long[] x = [-3, 0, 5, 1L << 40, 7, 8, 9, 10, 11, 12, 13];
        var y = Backend.Allocate(DType.Int64, x.Length);
        Backend.Unary(UnaryOp.Affine, UpLong(x), y, 3, -2);
        Assert.Equal(x.Select(v => 3 * v - 2), DownLong(y));
    }

    /// <summary>Pairs of broadcastable shapes: equal, row, column, outer, scalar, size-1, empty and odd sizes.</summary>
    public static TheoryData<int[], int[]> BroadcastShapes => new()
    {
        { new[] { 3, 4 }, new[] { 3, 4 } },
        { new[] { 37, 65 }, new[] { 37, 65 } },
        { new[] { 37, 65 }, new[] { 65 } },
        { new[] { 65 }, new[] { 37, 65 } },
        { new[] { 9, 1 }, new[] { 9, 33 } },
        { new[] { 9, 33 }, new[] { 9, 1 } },
        { new[] { 3, 1 }, new[] { 1, 4 } },
        { new[] { 2, 3, 4 }, new[] { 3, 1 } },
        { new[] { 5, 1, 7 }, new[] { 1, 6, 1 } },
        { System.Array.Empty<int>(), new[] { 2, 3 } },
        { new[] { 2, 3 }, System.Array.Empty<int>() },
        { System.Array.Empty<int>(), System.Array.Empty<int>() },
        { new[] { 1 }, new[] { 1, 1 } },
        { new[] { 0, 3 }, new[] { 3 } },
        { new[] { 4, 0 }, new[] { 4, 1 } },
        { new[] { 2, 1, 3, 1, 5 }, new[] { 2, 4, 1, 6, 5 } },
        { new[] { 100 }, new[] { 1 } },
    };

    private static double BinaryOracle(BinaryOp op, double a, double b) => op switch
    {
        BinaryOp.Add => a + b,
        BinaryOp.Sub => a - b,
        BinaryOp.Mul => a * b,
        BinaryOp.Div => a / b,
        BinaryOp.Pow => Math.Pow(a, b),
        BinaryOp.Maximum => Oracle.Max(a, b),
        BinaryOp.Minimum => Oracle.Min(a, b),
        BinaryOp.ReluGrad => b > 0 ? a : 0,
        _ => throw new ArgumentOutOfRangeException(nameof(op)),
    };

    /// <summary>y = op(a, b) by explicit broadcast indexing.</summary>
    private static double[] BroadcastOracle(int[] aShape, double[] a, int[] bShape, double[] b, Func<double, double, double> f, out int[] yShape)
    {
        yShape = Oracle.BroadcastShape(aShape, bShape);
        var y = new double[Oracle.Numel(yShape)];
        for (long i = 0; i < y.Length; i++)
        {
            var idx = Oracle.Unravel(i, yShape);
            y[i] = f(a[Oracle.BroadcastOffset(idx, aShape)], b[Oracle.BroadcastOffset(idx, bShape)]);
        }
        return y;
    }

    [Theory]
    [MemberData(nameof(BroadcastShapes))]
    public void Binary_EveryOp_MatchesBroadcastOracle(int[] aShape, int[] bShape)
    {
        RequireBackend();
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            foreach (var op in Enum.GetValues<BinaryOp>())
            {
                bool pow = op == BinaryOp.Pow;
                var a = Round(RandomValues(1 + (int)op, Oracle.Numel(aShape), pow ? 0.1 : -3, 3), dtype);
                var b = Round(RandomValues(2 + (int)op, Oracle.Numel(bShape), pow ? -2 : -3, 3), dtype);
                if (op is BinaryOp.Maximum or BinaryOp.Minimum && a.Length > 2 && b.Length > 2)
                {
                    a[1] = double.NaN;
                    b[2] = double.NaN;
                    b[0] = a[0];
                }
                var expected = Round(BroadcastOracle(aShape, a, bShape, b, (x, z) => BinaryOracle(op, x, z), out var yShape), dtype);
                var y = Backend.AllocateUninitialized(dtype, expected.Length);
                Backend.Binary(op, Up(a, dtype), new Shape(aShape), Up(b, dtype), new Shape(bShape), y, new Shape(yShape));
                AssertClose(expected, Down(y), Ulps(dtype, pow ? 4 : 1), 0, $"{op} {dtype.Name()}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Binary_MaximumMinimum_PropagateNaNFromEitherSide(DType dtype)
    {
        RequireBackend();
        double[] a = [double.NaN, 1, double.NaN, 2, -0.0, double.NegativeInfinity];
        double[] b = [1, double.NaN, double.NaN, 3, 0.0, 5];
        var s = new Shape(a.Length);
        var max = Backend.Allocate(dtype, a.Length);
        var min = Backend.Allocate(dtype, a.Length);
        Backend.Binary(BinaryOp.Maximum, Up(a, dtype), s, Up(b, dtype), s, max, s);
        Backend.Binary(BinaryOp.Minimum, Up(a, dtype), s, Up(b, dtype), s, min, s);
        AssertClose([double.NaN, double.NaN, double.NaN, 3, 0, 5], Down(max), 0);
        AssertClose([double.NaN, double.NaN, double.NaN, 2, 0, double.NegativeInfinity], Down(min), 0);
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Binary_ReluGrad_PassesAWhereBIsPositive_AndNaNInBGivesZero(DType dtype)
    {
        RequireBackend();
        double[] a = [double.NaN, double.NaN, 1, 2, 3, -4, double.PositiveInfinity, 5];
        double[] b = [1, -1, double.NaN, 0, -0.0, 1e-30, 2, double.NegativeInfinity];
        var s = new Shape(a.Length);
        var y = Backend.Allocate(dtype, a.Length);
        Backend.Binary(BinaryOp.ReluGrad, Up(a, dtype), s, Up(b, dtype), s, y, s);
        AssertClose([double.NaN, 0, 0, 0, 0, -4, double.PositiveInfinity, 0], Down(y), 0);
    }

    /// <summary>a + alpha·b with the product rounded first: the exact bits of the two-rounding formula in the dtype's own arithmetic.</summary>
    private static double[] ScaledAddOracle(double[] a, double[] b, double alpha, DType dtype) => dtype == DType.Float32
        ? a.Select((v, i) => (double)((float)v + (float)alpha * (float)b[i])).ToArray()
        : a.Select((v, i) => v + alpha * b[i]).ToArray();

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(100_003)]
    public void ScaledAdd_IsTheProductRoundedThenTheSum_BitForBit(int n)
    {
        RequireBackend();
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            foreach (double alpha in new[] { -0.01, 0.3, -2.5, 1 })
            {
                var a = Round(RandomValues(41 + n, n, -3, 3), dtype);
                var b = Round(RandomValues(43 + n, n, -3, 3), dtype);
                var y = Backend.AllocateUninitialized(dtype, n);
                Backend.ScaledAdd(Up(a, dtype), Up(b, dtype), alpha, y);
                AssertClose(ScaledAddOracle(a, b, alpha, dtype), Down(y), 0, 0, $"ScaledAdd {dtype.Name()} alpha {alpha} n {n}");
            }
        }
    }

    [Fact]
    public void ScaledAdd_InPlaceOnA_UpdatesA_AndRefusesYAliasingB()
    {
        RequireBackend();
        double[] a = [1, 2, 3, 4, 5], b = [0.5, -1, 2, 0, -3];
        var sa = Up(a, DType.Float64);
        Backend.ScaledAdd(sa, Up(b, DType.Float64), -0.5, sa);
        AssertClose(ScaledAddOracle(a, b, -0.5, DType.Float64), Down(sa), 0);
        var sb = Up(b, DType.Float64);
        var ex = Assert.ThrowsAny<ArgumentException>(() => Backend.ScaledAdd(Up(a, DType.Float64), sb, 2, sb));
        Assert.Contains("ScaledAdd", ex.Message);
        AssertClose(b, Down(sb), 0);
    }

    [Theory]
    [InlineData(BinaryOp.Add)]
    [InlineData(BinaryOp.Sub)]
    [InlineData(BinaryOp.Mul)]
    public void Binary_Int64_MatchesOracle(BinaryOp op)
    {
        RequireBackend();
        int[] aShape = [5, 9], bShape = [9];
        var a = Enumerable.Range(0, 45).Select(i => (long)(i * 7919 % 101) - 50).ToArray();
        var b = Enumerable.Range(0, 9).Select(i => (long)i - 4).ToArray();
        var expected = BroadcastOracle(aShape, a.Select(v => (double)v).ToArray(), bShape, b.Select(v => (double)v).ToArray(), (x, z) => BinaryOracle(op, x, z), out var yShape);
        var y = Backend.Allocate(DType.Int64, expected.Length);
        Backend.Binary(op, UpLong(a), new Shape(aShape), UpLong(b), new Shape(bShape), y, new Shape(yShape));
        Assert.Equal(expected.Select(v => (long)v), DownLong(y));
    }

    private static bool CompareOracle(CompareOp op, double a, double b) => op switch
    {
        CompareOp.Eq => a == b,
        CompareOp.Ne => a != b,
        CompareOp.Lt => a < b,
        CompareOp.Le => a <= b,
        CompareOp.Gt => a > b,
        CompareOp.Ge => a >= b,
        _ => throw new ArgumentOutOfRangeException(nameof(op)),
    };

    [Theory]
    [MemberData(nameof(BroadcastShapes))]
    public void Compare_EveryOp_MatchesBroadcastOracle(int[] aShape, int[] bShape)
    {
        RequireBackend();
        foreach (var dtype in new[] { DType.Float32, DType.Float64, DType.Int64 })
        {
            foreach (var op in Enum.GetValues<CompareOp>())
            {
                // Few distinct values so equality is common; NaN where floats allow it.
                var a = RandomValues(5, Oracle.Numel(aShape), -3, 3).Select(v => Math.Round(v)).ToArray();
                var b = RandomValues(6, Oracle.Numel(bShape), -3, 3).Select(v => Math.Round(v)).ToArray();
                if (dtype != DType.Int64 && a.Length > 1)
                {
                    a[1] = double.NaN;
                }
                var expected = BroadcastOracle(aShape, a, bShape, b, (x, z) => CompareOracle(op, x, z) ? 1 : 0, out var yShape);
                var y = Backend.Allocate(DType.Bool, expected.Length);
                var sa = dtype == DType.Int64 ? UpLong(a.Select(v => (long)v).ToArray()) : Up(a, dtype);
                var sb = dtype == DType.Int64 ? UpLong(b.Select(v => (long)v).ToArray()) : Up(b, dtype);
                Backend.Compare(op, sa, new Shape(aShape), sb, new Shape(bShape), y, new Shape(yShape));
                Assert.Equal(expected.Select(v => v == 1), DownBool(y));
            }
        }
    }

    [Theory]
    [MemberData(nameof(BroadcastShapes))]
    public void Where_MatchesBroadcastOracle_ForEveryDType(int[] aShape, int[] bShape)
    {
        RequireBackend();
        // The condition takes the broadcast shape's last dimension only, so all three operands broadcast.
        var yShape = Oracle.BroadcastShape(aShape, bShape);
        int[] cShape = yShape.Length == 0 ? [] : [yShape[^1]];
        var cond = RandomValues(7, Oracle.Numel(cShape), 0, 1).Select(v => v > 0.5).ToArray();
        var a = RandomValues(8, Oracle.Numel(aShape), -3, 3).Select(v => Math.Round(v)).ToArray();
        var b = RandomValues(9, Oracle.Numel(bShape), -3, 3).Select(v => Math.Round(v)).ToArray();
        var expected = new double[Oracle.Numel(yShape)];
        for (long i = 0; i < expected.Length; i++)
        {
            var idx = Oracle.Unravel(i, yShape);
            expected[i] = cond[Oracle.BroadcastOffset(idx, cShape)] ? a[Oracle.BroadcastOffset(idx, aShape)] : b[Oracle.BroadcastOffset(idx, bShape)];
        }
        var c = UpBool(cond);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var y = Backend.Allocate(dtype, expected.Length);
            Backend.Where(c, new Shape(cShape), Up(a, dtype), new Shape(aShape), Up(b, dtype), new Shape(bShape), y, new Shape(yShape));
            AssertClose(expected, Down(y), 0, 0, dtype.Name());
        }
        var ly = Backend.Allocate(DType.Int64, expected.Length);
        Backend.Where(c, new Shape(cShape), UpLong(a.Select(v => (long)v).ToArray()), new Shape(aShape), UpLong(b.Select(v => (long)v).ToArray()), new Shape(bShape), ly, new Shape(yShape));
        Assert.Equal(expected.Select(v => (long)v), DownLong(ly));
        var by = Backend.Allocate(DType.Bool, expected.Length);
        Backend.Where(c, new Shape(cShape), UpBool(a.Select(v => v > 0).ToArray()), new Shape(aShape), UpBool(b.Select(v => v > 0).ToArray()), new Shape(bShape), by, new Shape(yShape));
        Assert.Equal(expected.Select(v => v > 0), DownBool(by));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void Where_ContiguousCondition_MatchesOracle_WithScalarOrFullOperands(bool aScalar, bool bScalar)
    {
        RequireBackend();
        // 1,037 elements: vector blocks of 16 floats or 8 doubles and a ragged tail.
        const int n = 1037;
        var cond = RandomValues(17, n, 0, 1).Select(v => v > 0.4).ToArray();
        var a = RandomValues(18, aScalar ? 1 : n, -3, 3);
        var b = RandomValues(19, bScalar ? 1 : n, -3, 3);
        var expected = new double[n];
        for (int i = 0; i < n; i++)
        {
            expected[i] = cond[i] ? a[aScalar ? 0 : i] : b[bScalar ? 0 : i];
        }
        var c = UpBool(cond);
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var y = Backend.Allocate(dtype, n);
            Backend.Where(c, new Shape(n), Up(a, dtype), new Shape(a.Length), Up(b, dtype), new Shape(b.Length), y, new Shape(n));
            var rounded = dtype == DType.Float32 ? expected.Select(v => (double)(float)v).ToArray() : expected;
            AssertClose(rounded, Down(y), 0, 0, dtype.Name());
        }
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Binary_And_Unary_WorkInPlace_WhenTheOutputIsTheFirstInput(DType dtype)
    {
        // The engine's in-place updates (optimizer state, buffers) pass y == a with a's own shape.
        RequireBackend();
        var a = Round(RandomValues(81, 5 * 67), dtype);
        var b = Round(RandomValues(82, 67), dtype);
        var expected = Round(BroadcastOracle([5, 67], a, [67], b, (x, z) => x * z, out _), dtype);
        var sa = Up(a, dtype);
        Backend.Binary(BinaryOp.Mul, sa, new Shape(5, 67), Up(b, dtype), new Shape(67), sa, new Shape(5, 67));
        AssertClose(expected, Down(sa), 0, 0, "in-place mul");
        Backend.Unary(UnaryOp.Affine, sa, sa, 2, 1);
        AssertClose(Round(expected.Select(v => 2 * v + 1).ToArray(), dtype), Down(sa), Ulps(dtype, 2), Ulps(dtype, 2), "in-place affine");
    }
}
