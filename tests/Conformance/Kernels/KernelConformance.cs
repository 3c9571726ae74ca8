namespace Higher.Conformance.Kernels;

/// <summary>
/// Every <see cref="IBackend"/> kernel against the scalar oracles of <see cref="Oracle"/>, for
/// both float dtypes, through Upload/Download only, so any backend binds by overriding
/// <see cref="Backend"/>. Bindings that cannot run (no device) report skipped with the reason.
/// </summary>
public abstract partial class KernelConformance
{
    /// <summary>The backend under test.</summary>
    protected abstract IBackend Backend { get; }

    /// <summary>Why this binding cannot run here (e.g. no GPU); null runs the tests.</summary>
    protected virtual string? SkipReason => null;

    /// <summary>
    /// The same backend limited to one thread, if it has such a knob: results must be bitwise equal
    /// to <see cref="Backend"/>'s. Null skips the thread-count comparisons (determinism is still checked).
    /// </summary>
    protected virtual IBackend? SerialBackend => null;

    /// <summary>Skips the calling test when the binding cannot run.</summary>
    protected void RequireBackend()
    {
        if (SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    public static TheoryData<DType> FloatTypes => new() { DType.Float32, DType.Float64 };

    /// <summary>Rounds values to what a storage of <paramref name="dtype"/> holds.</summary>
    protected static double[] Round(double[] values, DType dtype) =>
        dtype == DType.Float32 ? Array.ConvertAll(values, v => (double)(float)v) : (double[])values.Clone();

    /// <summary>Uploads values as Float32 or Float64.</summary>
    protected IStorage Up(double[] values, DType dtype) => dtype == DType.Float32
        ? Backend.Upload<float>(Array.ConvertAll(values, v => (float)v), DType.Float32)
        : Backend.Upload<double>(values, DType.Float64);

    protected IStorage UpLong(long[] values) => Backend.Upload<long>(values, DType.Int64);

    protected IStorage UpBool(bool[] values) => Backend.Upload<bool>(values, DType.Bool);

    /// <summary>Downloads a Float32/Float64 storage as doubles.</summary>
    protected double[] Down(IStorage storage)
    {
        if (storage.DType == DType.Float32)
        {
            var f = new float[storage.Length];
            Backend.Download<float>(storage, f);
            return Array.ConvertAll(f, v => (double)v);
        }
        var d = new double[storage.Length];
        Backend.Download<double>(storage, d);
        return d;
    }

    protected long[] DownLong(IStorage storage)
    {
        var v = new long[storage.Length];
        Backend.Download<long>(storage, v);
        return v;
    }

    protected bool[] DownBool(IStorage storage)
    {
        var v = new bool[storage.Length];
        Backend.Download<bool>(storage, v);
        return v;
    }

    /// <summary>Deterministic uniform values in [lo, hi).</summary>
    protected static double[] RandomValues(int seed, long n, double lo = -2, double hi = 2)
    {
        var rng = new Random(seed);
        var v = new double[n];
        for (long i = 0; i < n; i++)
        {
            v[i] = lo + (hi - lo) * rng.NextDouble();
        }
        return v;
    }

    /// <summary>Relative tolerance of one rounding of <paramref name="dtype"/>, times a few ulps.</summary>
    protected static double Ulps(DType dtype, double ulps) => ulps * (dtype == DType.Float32 ? 5.96e-8 : 1.11e-16);

    /// <summary>
    /// Asserts |actual - expected| ≤ rel·|expected| + abs element by element, with NaN equal to NaN and
    /// infinities equal by sign, naming the first bad index.
    /// </summary>
    protected static void AssertClose(double[] expected, double[] actual, double rel, double abs = 0, string what = "") =>
        AssertClose(expected, actual, rel, Enumerable.Repeat(abs, expected.Length).ToArray(), what);

    /// <summary>As <see cref="AssertClose(double[], double[], double, double, string)"/> with a per-element absolute tolerance.</summary>
    protected static void AssertClose(double[] expected, double[] actual, double rel, double[] abs, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (double.IsNaN(e) || double.IsNaN(a))
            {
                Assert.True(double.IsNaN(e) && double.IsNaN(a), $"{what}[{i}]: expected {e:R}, got {a:R}");
                continue;
            }
            if (double.IsInfinity(e) || double.IsInfinity(a))
            {
                Assert.True(e == a, $"{what}[{i}]: expected {e:R}, got {a:R}");
                continue;
            }
            double tol = rel * Math.Abs(e) + abs[i];
            Assert.True(Math.Abs(a - e) <= tol, $"{what}[{i}]: expected {e:R}, got {a:R} (|diff| {Math.Abs(a - e):R} > tol {tol:R})");
        }
    }

    /// <summary>Asserts bitwise equality of two downloads (NaN payloads included).</summary>
    protected static void AssertBitwise(double[] expected, double[] actual, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.DoubleToInt64Bits(expected[i]) == BitConverter.DoubleToInt64Bits(actual[i]),
                $"{what}[{i}]: {expected[i]:R} vs {actual[i]:R}");
        }
    }
}
