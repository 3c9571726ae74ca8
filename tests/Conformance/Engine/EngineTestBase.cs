using System.Globalization;

namespace Higher.Conformance.Engine;

/// <summary>
/// Base of the engine conformance suites: one test body, bound to a device by a sealed subclass
/// per backend (<c>...OnReference</c> for the CPU). Every tensor a test makes goes to
/// <see cref="Device"/>; a binding that cannot run here reports skipped with its reason.
/// </summary>
public abstract class EngineTestBase
{
    /// <summary>Relative tolerance for float64 results (see <see cref="Numeric.MaxNormRelativeError"/>).</summary>
    protected const double Float64Tolerance = 1e-10;

    /// <summary>Relative tolerance for float32 results.</summary>
    protected const double Float32Tolerance = 1e-5;

    /// <summary>The device whose backend the tests exercise.</summary>
    protected abstract Device Device { get; }

    /// <summary>Why this binding cannot run here (e.g. no GPU); null runs the tests.</summary>
    protected virtual string? SkipReason => null;

    /// <summary>Skips the calling test when the binding cannot run.</summary>
    protected void RequireDevice()
    {
        if (SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
    }

    /// <summary>A float64 tensor on <see cref="Device"/>.</summary>
    protected Tensor F64(double[] data, params int[] shape) => Tensor.FromArray(data, new Shape(shape), Device);

    /// <summary>A float32 tensor on <see cref="Device"/>.</summary>
    protected Tensor F32(float[] data, params int[] shape) => Tensor.FromArray(data, new Shape(shape), Device);

    /// <summary>An int64 tensor on <see cref="Device"/>.</summary>
    protected Tensor I64(long[] data, params int[] shape) => Tensor.FromArray(data, new Shape(shape), Device);

    /// <summary>A 0-d float64 tensor on <see cref="Device"/>.</summary>
    protected Tensor Scalar64(double value) => Tensor.Scalar(value, DType.Float64, Device);

    /// <summary>A fixture array uploaded to <see cref="Device"/>.</summary>
    protected Tensor Load(FixtureArray a) => a.ToTensor(Device);

    /// <summary>The tolerance for results of <paramref name="dtype"/>.</summary>
    protected static double ToleranceFor(DType dtype) => dtype == DType.Float32 ? Float32Tolerance : Float64Tolerance;

    /// <summary>Asserts shape, dtype and values (max-norm relative error ≤ tolerance of the expected dtype).</summary>
    protected static void AssertClose(FixtureArray expected, Tensor? actual, string what)
    {
        Assert.NotNull(actual);
        Assert.True(expected.Shape.AsSpan().SequenceEqual(actual.Shape.Dims),
            $"{what}: shape {actual.Shape}, expected {new Shape(expected.Shape)}.");
        Assert.True(expected.DType == actual.DType, $"{what}: dtype {actual.DType.Name()}, expected {expected.DType.Name()}.");
        Numeric.AssertClose(expected.Values, actual.ToDoubleArray(), ToleranceFor(expected.DType), what);
    }

    /// <summary>Asserts a one-element tensor against a scalar golden value.</summary>
    protected static void AssertClose(double expected, Tensor actual, DType dtype, string what)
    {
        Assert.Equal(1, actual.Numel);
        Numeric.AssertClose([expected], actual.ToDoubleArray(), ToleranceFor(dtype), what);
    }
}

/// <summary>Numeric comparison used by every engine test.</summary>
public static class Numeric
{
    /// <summary>
    /// Floor of the denominator, so an all-zero expectation is met only by zeros. The all-zero arrays
    /// of the fixtures are structural (second derivatives of piecewise-linear ops), so exact zeros are right.
    /// </summary>
    public const double Tiny = 1e-300;

    /// <summary>
    /// The max-norm relative error max_i |a_i - b_i| / max(max_i |b_i|, <see cref="Tiny"/>) of
    /// <paramref name="actual"/> (a) against <paramref name="expected"/> (b). Non-finite expected
    /// values must be matched exactly (same NaN / same infinity) and are left out of both maxima;
    /// a non-finite actual value against a finite expectation gives +∞.
    /// </summary>
    public static double MaxNormRelativeError(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual)
    {
        if (expected.Length != actual.Length)
        {
            throw new ArgumentException($"Lengths differ: expected {expected.Length}, actual {actual.Length}.");
        }
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double b = expected[i], a = actual[i];
            if (!double.IsFinite(b))
            {
                if (!(double.IsNaN(b) ? double.IsNaN(a) : a == b))
                {
                    return double.PositiveInfinity;
                }
                continue;
            }
            if (!double.IsFinite(a))
            {
                return double.PositiveInfinity;
            }
            maxDiff = Math.Max(maxDiff, Math.Abs(a - b));
            maxRef = Math.Max(maxRef, Math.Abs(b));
        }
        return maxDiff / Math.Max(maxRef, Tiny);
    }

    /// <summary>Asserts <see cref="MaxNormRelativeError"/> ≤ <paramref name="tolerance"/>, printing the worst element on failure.</summary>
    public static void AssertClose(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double tolerance, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}.");
        double error = MaxNormRelativeError(expected, actual);
        if (error <= tolerance)
        {
            return;
        }
        int worst = 0;
        double worstDiff = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = double.IsFinite(expected[i]) && double.IsFinite(actual[i]) ? Math.Abs(expected[i] - actual[i]) : double.PositiveInfinity;
            if (d > worstDiff || double.IsNaN(d))
            {
                worstDiff = d;
                worst = i;
            }
        }
        Assert.Fail(string.Create(CultureInfo.InvariantCulture,
            $"{what}: max-norm relative error {error:E3} > {tolerance:E0}; worst at flat index {worst}: actual {actual[worst]:R}, expected {expected[worst]:R}."));
    }
}
